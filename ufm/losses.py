"""Per-sample losses of logits, with their analytic gradients, in one registry.

Every loss here is a function L(z, k) of the logit vector z = W h (+ b) in R^K and the label k,
so one definition serves the layer-peeled solvers (analytic gradients) and deep training
(autograd). Gradients with respect to features and classifier follow by the chain rule:
grad_h = W^T grad_z and grad_W = grad_z h^T.

- Cross-entropy: CE(z, k) = logsumexp(z) - z_k;  grad_z = softmax(z) - e_k.
- Dot regression (Yang et al., NeurIPS 2022, eq. 8), with target c = sqrt(E_W E_H):
  DR(z, k) = (z_k - c)^2 / (2c);  grad_z = (z_k - c)/c e_k. With a fixed ETF, z_k = w*_k^T h and
  grad_h = -(1 - w*_k^T h / c) w*_k: a pull towards w*_k and no push away from other classes.
- Batch-balanced DR (`dr-balanced`): DR weighted by gamma / n^batch_{y_i} (Yang et al.'s code).

The losses of the long-tail literature (logit adjustment, LDAM, deferred re-weighting, the NC
regularizers) are in `ufm.longtail_losses`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ufm.registry import Registry

__all__ = [
    "LOSSES",
    "BatchBalancedDotRegression",
    "CrossEntropy",
    "DotRegression",
    "Loss",
    "batch_balanced_dot_regression",
    "batch_balanced_weights",
    "ce_feature_gradient_split",
    "class_mean_cross_entropy",
    "cross_entropy",
    "dot_regression",
    "get_loss",
    "register_loss",
]


def _check_logits(z: Tensor, y: Tensor) -> None:
    if z.ndim != 2:
        raise ValueError(f"logits must have shape (B, K), got {tuple(z.shape)}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels must have shape ({z.shape[0]},), got {tuple(y.shape)}")


def cross_entropy(z: Tensor, y: Tensor) -> Tensor:
    """CE(z_i, y_i) = logsumexp(z_i) - z_i[y_i] per sample; z (B, K), y (B,) -> (B,)."""
    _check_logits(z, y)
    return torch.logsumexp(z, dim=1) - z.gather(1, y[:, None]).squeeze(1)


def dot_regression(z: Tensor, y: Tensor, target: float = 1.0) -> Tensor:
    """DR(z_i, y_i) = (z_i[y_i] - c)^2 / (2c) per sample, c = `target` = sqrt(E_W E_H) > 0.

    z (B, K), y (B,) -> (B,). Yang et al. 2022, eq. 8 (with ||w*_k|| = sqrt(E_W) and
    ||h|| <= sqrt(E_H), c is the largest value z_k can take).
    """
    _check_logits(z, y)
    if not target > 0:
        raise ValueError(f"dot-regression target sqrt(E_W E_H) must be > 0, got {target!r}")
    return (z.gather(1, y[:, None]).squeeze(1) - target) ** 2 / (2.0 * target)


def class_mean_cross_entropy(zt: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """sum_k w_k CE(zt[k], k) and its gradient (K, K); row k of zt (K, K) is the logits of
    class k's mean, weights (K,) (w_k = n_k / N in the LPM's convex form, Fang et al. 2021).

    Accurate to relative rounding also when every margin is large (the loss near 0, as at the
    norms of trained networks): CE = log1p(sum_{j != k} exp(z_j - z_k)) and the target entry
    of the gradient, p_k - 1 = -sum_{j != k} p_j, are summed from the non-target terms instead
    of cancelling 1 - p_k against 1.
    """
    k = zt.shape[0]
    off = ~torch.eye(k, dtype=torch.bool, device=zt.device)
    diff = zt - zt.diagonal()[:, None]  # (K, K): z_j - z_k in row k, 0 on the diagonal
    top = diff.max(dim=1, keepdim=True).values.clamp_min(0.0)  # (K, 1): max(0, max_j z_j - z_k)
    e = torch.exp(diff - top) * off  # (K, K): non-target terms, scaled by exp(-top)
    rest = e.sum(dim=1)  # (K,)
    base = torch.exp(-top.squeeze(1))  # (K,): the target's own term, scaled
    ce = top.squeeze(1) + torch.log(base + rest)
    small = top.squeeze(1) == 0  # target is the max: log(1 + rest) without rounding 1 + rest
    ce = torch.where(small, torch.log1p(rest), ce)
    grad = e / (base + rest)[:, None]  # (K, K): p_j for j != k
    grad = grad - torch.diag_embed(grad.sum(dim=1))  # p_k - 1 = -sum_{j != k} p_j
    return (weights * ce).sum(), weights[:, None] * grad


def batch_balanced_weights(
    y: Tensor, num_classes: int, dtype: torch.dtype = torch.float32
) -> Tensor:
    """In-batch class-balanced weights gamma / n_{y_i}^batch, gamma = B / (classes present).

    The weighting of Yang et al.'s released code for DR on long-tailed data. The weights of a
    batch average to 1. y (B,) -> (B,).
    """
    # Nothing here is read on the host, which would make every training step on a GPU wait:
    # the counts come from index_add_ (CUDA's bincount reads the largest label on the host)
    # and the number of classes present stays a device tensor.
    ones = torch.ones(y.shape, dtype=torch.float64, device=y.device)
    batch_counts = torch.zeros(num_classes, dtype=torch.float64, device=y.device)
    batch_counts.index_add_(0, y, ones)  # (K,)
    present = (batch_counts > 0).sum(dtype=torch.float64)  # ()
    return (y.numel() / present / batch_counts[y]).to(dtype)


@dataclass(frozen=True)
class Loss:
    """A per-sample loss of logits: value(z, y) -> (B,), grad(z, y) -> (B, K) = dL/dz.

    `regression` marks the dot-regression family: losses of the target logit z_y alone that
    reach their minimum 0 at a finite value (z_y = target); cross-entropy only approaches its
    infimum. They also offer `target_value_and_grad`, which needs z_y only: a problem can then
    form z_y = <h_i, w_{y_i}> in O(N d) instead of all logits in O(N d K).
    """

    name: str
    regression: ClassVar[bool] = False

    def value(self, z: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def grad(self, z: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def value_and_grad(self, z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.value(z, y), self.grad(z, y)

    def minimum(self) -> float:
        """Infimum of the loss over all logits (a lower bound for any optimum)."""
        return 0.0

    def target_value_and_grad(
        self, zy: Tensor, y: Tensor, num_classes: int
    ) -> tuple[Tensor, Tensor]:
        """For `regression` losses: per-sample value and dL/dz_y from the target logits alone;
        zy (B,), y (B,) -> ((B,), (B,))."""
        raise NotImplementedError(f"loss {self.name!r} depends on every logit")


@dataclass(frozen=True)
class CrossEntropy(Loss):
    """CE(z, y) = log sum_j exp(z_j) - z_y, with dL/dz = softmax(z) - e_y; z (B, K), y (B,)."""

    name: str = "ce"

    def value(self, z: Tensor, y: Tensor) -> Tensor:
        return cross_entropy(z, y)

    def grad(self, z: Tensor, y: Tensor) -> Tensor:
        return self.value_and_grad(z, y)[1]

    def value_and_grad(self, z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """CE and softmax(z) - e_y from one exponential pass (the solvers' inner loop)."""
        _check_logits(z, y)
        shift = z.amax(dim=1, keepdim=True)  # (B, 1)
        e = torch.exp(z - shift)  # (B, K)
        total = e.sum(dim=1, keepdim=True)  # (B, 1)
        value = (shift + torch.log(total)).squeeze(1) - z.gather(1, y[:, None]).squeeze(1)
        g = e / total
        g[torch.arange(len(y), device=z.device), y] -= 1.0
        return value, g


@dataclass(frozen=True)
class DotRegression(Loss):
    """DR with target c = sqrt(E_W E_H); see `dot_regression`."""

    name: str = "dr"
    regression: ClassVar[bool] = True
    target: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.target) and self.target > 0):
            raise ValueError(
                f"dot-regression target sqrt(E_W E_H) must be > 0, got {self.target!r}"
            )

    def value(self, z: Tensor, y: Tensor) -> Tensor:
        return dot_regression(z, y, self.target)

    def grad(self, z: Tensor, y: Tensor) -> Tensor:
        g = torch.zeros_like(z)
        rows = torch.arange(len(y), device=z.device)
        g[rows, y] = (z[rows, y] - self.target) / self.target
        return g

    def target_value_and_grad(
        self, zy: Tensor, y: Tensor, num_classes: int
    ) -> tuple[Tensor, Tensor]:
        r = zy - self.target  # (B,)
        return r * r / (2.0 * self.target), r / self.target


LossFactory = Callable[..., Loss]
LOSSES: Registry[LossFactory] = Registry("loss")


def register_loss(name: str, factory: LossFactory) -> None:
    """Add a loss to the registry under `name` (a new name only)."""
    LOSSES.add(name, factory)


def get_loss(name: str, *, e_w: float = 1.0, e_h: float = 1.0) -> Loss:
    """The registered loss `name`; DR gets its target sqrt(e_w * e_h)."""
    return LOSSES.get(name)(target=math.sqrt(e_w * e_h))


register_loss("ce", lambda target=1.0: CrossEntropy())
register_loss("dr", lambda target=1.0: DotRegression(target=target))


def ce_feature_gradient_split(w: Tensor, h: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Pull and push parts of grad_h CE(W h, k) = -(1 - p_k) w_k + sum_{j != k} p_j w_j.

    w (K, d), h (B, d), y (B,) -> (pull, push), each (B, d), with pull + push = grad_h.
    Pull = -(1 - p_k) w_k moves h towards its class vector; push = sum_{j != k} p_j w_j moves it
    away from the others. With a simplex ETF (sum_j w_j = 0) and all non-target probabilities
    equal to q, the push is -q w_k, parallel to the pull; otherwise it has a part off w_k.
    """
    p = torch.softmax(h @ w.T, dim=1)  # (B, K)
    rows = torch.arange(len(y), device=h.device)
    p_target = p[rows, y]  # (B,)
    pull = -(1.0 - p_target)[:, None] * w[y]  # (B, d)
    p_other = p.clone()
    p_other[rows, y] = 0.0
    push = p_other @ w  # (B, d)
    return pull, push


def batch_balanced_dot_regression(z: Tensor, y: Tensor, target: float = 1.0) -> Tensor:
    """In-batch class-balanced DR: (gamma / n^batch_{y_i}) DR(z_i, y_i), gamma = B / #classes.

    z (B, K), y (B,) -> (B,). Yang et al. 2022, released code: scaling the fixed classifier
    vector w*_k and the target c by sqrt(gamma / n_k^batch) multiplies DR by gamma / n_k^batch,
    so every class present in a batch carries the same total weight. The weights depend on the
    batch's labels only, so grad_z is the DR gradient times the same weight.
    """
    _check_logits(z, y)
    return batch_balanced_weights(y, z.shape[1], dtype=z.dtype) * dot_regression(z, y, target)


@dataclass(frozen=True)
class BatchBalancedDotRegression(Loss):
    """DR weighted by gamma / n^batch_{y_i}; see `batch_balanced_dot_regression`."""

    name: str = "dr-balanced"
    regression: ClassVar[bool] = True
    target: float = 1.0

    def value(self, z: Tensor, y: Tensor) -> Tensor:
        return batch_balanced_dot_regression(z, y, self.target)

    def grad(self, z: Tensor, y: Tensor) -> Tensor:
        weights = batch_balanced_weights(y, z.shape[1], dtype=z.dtype)  # (B,)
        return weights[:, None] * DotRegression(target=self.target).grad(z, y)

    def target_value_and_grad(
        self, zy: Tensor, y: Tensor, num_classes: int
    ) -> tuple[Tensor, Tensor]:
        weights = batch_balanced_weights(y, num_classes, dtype=zy.dtype).to(zy.device)  # (B,)
        value, grad = DotRegression(target=self.target).target_value_and_grad(zy, y, num_classes)
        return weights * value, weights * grad


register_loss("dr-balanced", lambda target=1.0: BatchBalancedDotRegression(target=target))
