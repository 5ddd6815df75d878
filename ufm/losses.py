"""Per-sample losses of logits, with their analytic gradients, in one registry.

Every loss here is a function L(z, k) of the logit vector z = W h (+ b) in R^K and the label k,
so one definition serves the layer-peeled solvers (analytic gradients) and deep training
(autograd). Gradients with respect to features and classifier follow by the chain rule:
grad_h = W^T grad_z and grad_W = grad_z h^T.

- Cross-entropy: CE(z, k) = logsumexp(z) - z_k;  grad_z = softmax(z) - e_k.
- Dot regression (Yang et al., NeurIPS 2022, eq. 8), with target c = sqrt(E_W E_H):
  DR(z, k) = (z_k - c)^2 / (2c);  grad_z = (z_k - c)/c e_k. With a fixed ETF, z_k = w*_k^T h and
  grad_h = -(1 - w*_k^T h / c) w*_k: a pull towards w*_k and no push away from other classes.
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
    "CrossEntropy",
    "DotRegression",
    "Loss",
    "batch_balanced_weights",
    "ce_feature_gradient_split",
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
__all__ += ["BatchBalancedDotRegression", "batch_balanced_dot_regression"]


# ---------------------------------------------------------------------------------------------
# Long-tailed learning: re-balanced losses, deferred re-weighting, NC regularizers.
#
# Pure functions of a batch; `deep.objectives` wires them into training. Class counts n (K,)
# are those of the training set, never typed in.
# ---------------------------------------------------------------------------------------------


def _counts(class_counts: Tensor, like: Tensor) -> Tensor:
    counts = torch.as_tensor(class_counts, device=like.device).to(like.dtype)
    if counts.ndim != 1 or not bool((counts > 0).all()):
        raise ValueError(f"class counts must be a (K,) vector of positive numbers, got {counts}")
    return counts


def logit_adjusted_cross_entropy(
    z: Tensor, y: Tensor, class_counts: Tensor, tau: float = 1.0
) -> Tensor:
    """Logit-adjusted CE (Menon et al., ICLR 2021, eq. 10): CE(z_i + tau log pi, y_i).

    L(z, y) = -log( exp(z_y + tau log pi_y) / sum_j exp(z_j + tau log pi_j) ), pi = n / N the
    training class priors. The adjustment acts in the loss only; predictions use z itself,
    which then estimates the balanced (uniform-prior) posterior for tau = 1.
    z (B, K), y (B,), class_counts (K,) -> (B,).
    """
    _check_logits(z, y)
    counts = _counts(class_counts, z)
    if counts.shape != (z.shape[1],):
        raise ValueError(f"class counts must have shape ({z.shape[1]},), got {tuple(counts.shape)}")
    return cross_entropy(z + tau * torch.log(counts / counts.sum()), y)


def balanced_softmax_cross_entropy(z: Tensor, y: Tensor, class_counts: Tensor) -> Tensor:
    """Balanced softmax (Ren et al., NeurIPS 2020, eq. 4): -log( n_y e^{z_y} / sum_j n_j e^{z_j} ).

    Equal to `logit_adjusted_cross_entropy` with tau = 1, since log n_j and log pi_j differ by a
    constant that softmax ignores. z (B, K), y (B,), class_counts (K,) -> (B,).
    """
    return logit_adjusted_cross_entropy(z, y, class_counts, tau=1.0)


def ldam_margins(class_counts: Tensor, max_margin: float = 0.5) -> Tensor:
    """LDAM margins (Cao et al., NeurIPS 2019, eq. 13): Delta_k = C / n_k^(1/4).

    C is chosen so that the largest margin (the smallest class's) is `max_margin`:
    Delta_k = max_margin (n_min / n_k)^(1/4), as in the authors' code. (K,) -> (K,) float64.
    """
    if not max_margin > 0:
        raise ValueError(f"max_margin must be > 0, got {max_margin!r}")
    counts = _counts(class_counts, torch.empty((), dtype=torch.float64))
    return max_margin * (counts.min() / counts) ** 0.25


def ldam_loss(z: Tensor, y: Tensor, margins: Tensor, scale: float = 30.0) -> Tensor:
    """LDAM loss (Cao et al. 2019, eq. 10): CE(s (z - Delta_y e_y), y) per sample.

    The target logit is lowered by its class margin before the scaled softmax; with the
    normalised (cosine) classifier of the paper's CIFAR models, z_k in [-1, 1] and s = 30.
    z (B, K), y (B,), margins (K,) -> (B,).
    """
    _check_logits(z, y)
    if margins.shape != (z.shape[1],):
        raise ValueError(f"margins must have shape ({z.shape[1]},), got {tuple(margins.shape)}")
    shift = torch.zeros_like(z).scatter_(1, y[:, None], margins.to(z)[y][:, None])  # (B, K)
    return cross_entropy(scale * (z - shift), y)


def drw_class_weights(class_counts: Tensor, beta: float = 0.9999) -> Tensor:
    """Class-balanced weights of deferred re-weighting (Cao et al. 2019, after Cui et al. 2019).

    w_k = (1 - beta) / (1 - beta^n_k), the inverse effective number of samples, scaled so that
    sum_k w_k = K. (K,) -> (K,) float64.
    """
    if not 0 <= beta < 1:
        raise ValueError(f"beta must lie in [0, 1), got {beta!r}")
    counts = _counts(class_counts, torch.empty((), dtype=torch.float64))
    weights = (1.0 - beta) / (1.0 - beta**counts)
    return weights * (len(counts) / weights.sum())


def class_weighted_mean(values: Tensor, y: Tensor, class_weights: Tensor) -> Tensor:
    """sum_i w_{y_i} L_i / sum_i w_{y_i}: the mean of per-sample losses under class weights.

    The reduction of a class-weighted cross-entropy in the reference implementations
    (torch's `cross_entropy(weight=w)`); uniform weights give the plain mean.
    values (B,), y (B,), class_weights (K,) -> scalar.
    """
    w = class_weights.to(values)[y]  # (B,)
    return (w * values).sum() / w.sum()


def batch_class_means(h: Tensor, y: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Class means of a batch and the batch's class counts m_k.

    A class absent from the batch has m_k = 0 and a zero row. h (B, d), y (B,) -> (K, d), (K,).
    """
    counts = torch.bincount(y, minlength=num_classes).to(h.dtype)  # (K,)
    sums = torch.zeros(num_classes, h.shape[1], dtype=h.dtype, device=h.device)
    sums = sums.index_add(0, y, h)
    return sums / counts.clamp_min(1.0)[:, None], counts


def nc1_regularizer(h: Tensor, y: Tensor, centres: Tensor) -> Tensor:
    """L_NC1 of Liu et al. (AISTATS 2023): (1/K) sum_k (1/m_k) sum_{i: y_i = k} ||h_i - mu_k||^2.

    mu (K, d) are learnable class centres, m_k the number of samples of class k in the batch; a
    class absent from the batch contributes 0. h (B, d), y (B,), centres (K, d) -> scalar.
    """
    num_classes = centres.shape[0]
    dist = ((h - centres[y]) ** 2).sum(dim=1)  # (B,)
    per_class = torch.zeros(num_classes, dtype=h.dtype, device=h.device).index_add(0, y, dist)
    counts = torch.bincount(y, minlength=num_classes).to(h.dtype)  # (K,)
    return (per_class / counts.clamp_min(1.0)).sum() / num_classes


def nc2_regularizer(centres: Tensor, clip: float = 0.99999) -> Tensor:
    """L_NC2 of Liu et al. (AISTATS 2023): -(1/K) sum_k arccos( max_{j != k} cos(mu~_k, mu~_j) ).

    mu~_k = (mu_k - mean_j mu_j) / ||...||, the normalised centred centres. Minimising it
    maximises, for every class, the angle to its nearest neighbour (the simplex ETF is the
    optimum). The cosine is clipped to +-`clip`, where arccos' slope is finite.
    centres (K, d) -> scalar.
    """
    centred = centres - centres.mean(dim=0)  # (K, d)
    u = centred / centred.norm(dim=1, keepdim=True).clamp_min(torch.finfo(centres.dtype).tiny)
    cos = u @ u.T  # (K, K)
    eye = torch.eye(len(cos), dtype=torch.bool, device=cos.device)
    nearest = cos.masked_fill(eye, -2.0).amax(dim=1).clamp(-clip, clip)  # (K,)
    return -torch.arccos(nearest).mean()


def hybrid_contrastive_loss(
    h: Tensor, y: Tensor, num_classes: int, tau: float = 0.1, balanced: bool = True
) -> Tensor:
    """HyCon, the hybrid contrastive loss of AllNC (Zhang et al. 2024) for NC1, as built here.

    Two views only: the samples of the batch and the batch's class means. Features are centred
    at c, the mean of the batch's class means (held fixed), and normalised:
    u_i = (h_i - c)/||.||, v_k = (mu_k - c)/||.|| for the classes k present. Anchor i has the
    candidates A_i = {u_j, j != i} and {v_k}; its positives P_i are the same-class samples and
    its class mean v_{y_i} (never empty). With s(a) = u_i^T a / tau,

        L_i = -(1/|P_i|) sum_{p in P_i} ( s(p) - log D_i ),   L = mean_i L_i,

    D_i = sum_{a in A_i} exp s(a) or, `balanced`, sum_k (1/c_ik) sum_{a in A_i of class k} exp s(a)
    with c_ik the number of class-k candidates (the class-averaged denominator of balanced
    contrastive learning, Zhu et al. CVPR 2022), so head classes do not dominate the negatives.
    h (B, d), y (B,) -> scalar.
    """
    means, counts = batch_class_means(h, y, num_classes)
    present = torch.nonzero(counts > 0).flatten()  # (P,)
    centre = means[present].mean(dim=0).detach()  # (d,)
    u = _unit(h - centre)  # (B, d)
    views = torch.cat([u, _unit(means[present] - centre)])  # (B + P, d)
    labels = torch.cat([y, present])  # (B + P,)
    s = u @ views.T / tau  # (B, B + P)
    rows = torch.arange(len(y), device=h.device)
    is_self = torch.zeros_like(s, dtype=torch.bool)
    is_self[rows, rows] = True
    same = labels[None, :] == y[:, None]  # (B, B + P)
    if balanced:
        per_class = torch.bincount(labels, minlength=num_classes).to(s.dtype)  # (K,)
        c = per_class[labels][None, :] - same.to(s.dtype)  # (B, B + P): self excluded
        s_den = s - torch.log(c.clamp_min(1.0))
    else:
        s_den = s
    log_den = torch.logsumexp(s_den.masked_fill(is_self, -math.inf), dim=1)  # (B,)
    positive = same & ~is_self
    mean_pos = (s * positive).sum(dim=1) / positive.sum(dim=1)  # (B,)
    return (log_den - mean_pos).mean()


def peer_to_peer_loss(means: Tensor, present: Tensor, w: Tensor, tau: float = 0.1) -> Tensor:
    """P2P, the peer-to-peer loss of AllNC (Zhang et al. 2024) for NC2 and NC3, as built here.

    Each class mean and its classifier vector are peers. With cosines C_kj = cos(m_k, w_j) over
    the classes k in the batch (P of them; m the centred class means), a softmax over peers in
    both directions:

        L = (1/2P) sum_k [ CE(C_k. / tau, k) + CE(C_.k restricted to the batch's classes / tau, k) ]

    The first term pulls m_k to w_k and away from every other classifier vector; the second
    pulls w_k to m_k and away from the other classes' means. Its optimum has m_k parallel to w_k
    (self-duality) and the pairs spread as far apart as the softmax can tell (equiangularity).
    means (K, d), present (K,) bool, w (K, d) -> scalar.
    """
    idx = torch.nonzero(present).flatten()  # (P,)
    cos = _unit(means[idx]) @ _unit(w).T / tau  # (P, K)
    to_classifiers = cross_entropy(cos, idx).mean()
    to_means = cross_entropy(cos[:, idx].T, torch.arange(len(idx), device=w.device)).mean()
    return 0.5 * (to_classifiers + to_means)


def bilateral_branch_weight(epoch: int, epochs: int, power: float = 2.0) -> float:
    """Cumulative-learning weight alpha = 1 - (epoch / epochs)^power of a bilateral-branch
    network (Zhou et al., CVPR 2020: power 2), for 0-based `epoch` of `epochs`.

    alpha weighs the conventional (instance-balanced) branch and 1 - alpha the re-balancing
    branch: learning moves from the first to the second as training runs.
    """
    if epochs < 1 or not 0 <= epoch < epochs:
        raise ValueError(f"need 0 <= epoch < epochs, got epoch={epoch!r}, epochs={epochs!r}")
    return 1.0 - (epoch / epochs) ** power


def _unit(a: Tensor) -> Tensor:
    return a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12)


__all__ += [
    "balanced_softmax_cross_entropy",
    "batch_class_means",
    "bilateral_branch_weight",
    "class_weighted_mean",
    "drw_class_weights",
    "hybrid_contrastive_loss",
    "ldam_loss",
    "ldam_margins",
    "logit_adjusted_cross_entropy",
    "nc1_regularizer",
    "nc2_regularizer",
    "peer_to_peer_loss",
]
