"""The LPM's convex form reduced by the symmetry of classes with equal counts.

Classes with the same count n_k are interchangeable: permuting them (rows and columns of Z
together) leaves f(Z) = sum_k (n_k/N) CE(z_k, k) and ||Z||_* unchanged, so averaging any optimum
over those permutations gives an optimum in the fixed-point algebra

    Z = U Q U^T + sum_a alpha_a (I_a - u_a u_a^T),

where the m groups G_a have sizes s_a, u_a = 1_{G_a} / sqrt(s_a), U = [u_1 .. u_m] (K, m),
Q (m, m) and I_a the identity on G_a. Its singular values are those of Q and |alpha_a| with
multiplicity s_a - 1, so ||Z||_* = ||Q||_* + sum_a (s_a - 1) |alpha_a|. In the coordinates
(Q, a) with a_a = sqrt(s_a - 1) alpha_a the embedding is an isometry (||Z||_F^2 = ||Q||_F^2 +
||a||^2): projected gradient steps in (Q, a) are exactly those of the K x K problem from a
symmetric point, at the cost of an m x m eigendecomposition instead of a K x K SVD. The
exponential profile of ImageNet-LT (K = 1,000, n_max = 1,280, rho = 256) has m = 529 distinct
counts, iNaturalist's size (K = 8,142, n_max = 1,000, rho = 500) has m = 999, a step profile 2.

Certificates. At a point of the algebra the gradient is in the algebra too, so the Frank-Wolfe
bound f* >= f(Z) - <G, Z> - r ||G||_op (G = grad f(Z), convexity) is computed exactly in (Q, a)
(`GroupedLPM.lower_bound`). `full_certificate` computes it on the K x K matrix itself, for any
Z: ||G||_op <= ||P G||_op + ||G - P G||_F, P the orthogonal projection onto the algebra, whose
op norm max(||G_Q||_op, max_a |g_alpha_a|) is exact; so that bound holds in float64 whether or
not the matrix is exactly symmetric. `ufm.convex` reports the larger of the two.

Hong & Ling's regularized form (`GroupedPenaltyUFM`) reduces the same way, D = diag(n_k)
commuting with the permutations, with a bias constant on each group.

Rows are classes: Zt = Z^T, row k = logits of class k's mean (as in `ufm.convex`); the algebra
is closed under transposition.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ufm.losses import class_mean_cross_entropy
from ufm.problems import SmoothOnly, Vars, _check_counts, _check_positive

__all__ = ["ClassGroups", "GroupedLPM", "GroupedPenaltyUFM", "full_certificate"]


@dataclass(frozen=True)
class ClassGroups:
    """Classes grouped by equal count: `index[k]` = group of class k, `sizes[a]` = s_a,
    `counts[a]` = the count n of group a (groups in order of first appearance)."""

    index: np.ndarray  # (K,) int64
    sizes: np.ndarray  # (m,) int64
    counts: np.ndarray  # (m,) int64

    @classmethod
    def from_counts(cls, counts: Sequence[int] | np.ndarray) -> ClassGroups:
        arr = _check_counts(counts)
        values, first, index = np.unique(arr, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # group a = a-th distinct count met
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        index = rank[index.reshape(-1)]
        return cls(index, np.bincount(index), values[order])

    @property
    def num_classes(self) -> int:
        return len(self.index)

    @property
    def num_groups(self) -> int:
        return len(self.sizes)

    def expand(self, q: Tensor, a: Tensor) -> Tensor:
        """The K x K matrix U Q U^T + sum_a alpha_a (I_a - u_a u_a^T), alpha = a/sqrt(s - 1)."""
        s = torch.as_tensor(self.sizes, dtype=q.dtype, device=q.device)
        alpha = _alpha(a, s)
        block = q / torch.sqrt(s[:, None] * s[None, :]) - torch.diag(alpha / s)  # (m, m)
        idx = torch.as_tensor(self.index, device=q.device)
        full = block[idx][:, idx]  # (K, K)
        full.diagonal().add_(alpha[idx])
        return full

    def reduce(self, full: Tensor) -> tuple[Tensor, Tensor]:
        """The coordinates (Q, a) of the orthogonal projection of `full` (K, K) on the algebra."""
        m = self.num_groups
        idx = torch.as_tensor(self.index, device=full.device)
        s = torch.as_tensor(self.sizes, dtype=full.dtype, device=full.device)
        rows = torch.zeros(m, full.shape[1], dtype=full.dtype, device=full.device)
        rows.index_add_(0, idx, full)  # (m, K)
        sums = torch.zeros(m, m, dtype=full.dtype, device=full.device)
        sums.index_add_(1, idx, rows)  # (m, m): block sums
        q = sums / torch.sqrt(s[:, None] * s[None, :])
        trace = torch.zeros(m, dtype=full.dtype, device=full.device)
        trace.index_add_(0, idx, full.diagonal())
        a = torch.where(s > 1, (trace - q.diagonal()) / torch.sqrt((s - 1).clamp_min(1)), 0.0)
        return q, a


def _alpha(a: Tensor, s: Tensor) -> Tensor:
    """alpha_a = a_a / sqrt(s_a - 1) (0 for singleton groups)."""
    return torch.where(s > 1, a / torch.sqrt((s - 1).clamp_min(1)), 0.0)


def algebra_op_norm(q: Tensor, a: Tensor, sizes: Tensor, svd: bool = False) -> float:
    """||U Q U^T + sum alpha_a (I_a - u_a u_a^T)||_op = max(||Q||_op, max_{s_a > 1} |alpha_a|);
    ||Q||_op from an SVD (svd=True) or, faster, from the top eigenvalue of Q^T Q."""
    if svd:
        top = float(torch.linalg.matrix_norm(q, ord=2))
    else:
        top = float(torch.linalg.eigvalsh(q.T @ q)[-1].clamp_min(0).sqrt())
    alpha = _alpha(a, sizes).abs()
    return max(top, float(alpha.max())) if alpha.numel() else top


def _right_spectrum(q: Tensor) -> tuple[Tensor, Tensor]:
    """(s, V): singular values and right singular vectors of Q from the eigendecomposition of
    Q^T Q (about twice as fast as an SVD on a CPU; s is accurate to eps ||Q||^2 / s)."""
    lam, v = torch.linalg.eigh(q.T @ q)
    return lam.clamp_min(0).sqrt(), v


def _shrink_spectrum(q: Tensor, s: Tensor, v: Tensor, tau: float) -> Tensor:
    """Q V diag((1 - tau/s)_+) V^T: the singular values s of Q soft-thresholded by tau."""
    kept = s > tau
    v = v[:, kept]  # only the directions that survive: at an optimum often about half
    return ((q @ v) * (1 - tau / s[kept])) @ v.T


def _threshold(values: Tensor, weights: Tensor, radius: float) -> float:
    """tau >= 0 with sum_j weights_j (values_j - tau)_+ = radius (values >= 0, weights > 0);
    requires sum_j weights_j values_j > radius."""
    v, order = torch.sort(values, descending=True)
    c = weights[order]
    cum_c = torch.cumsum(c, 0)
    tau_all = (torch.cumsum(c * v, 0) - radius) / cum_c
    last = int(torch.nonzero(v > tau_all).max())
    return float(tau_all[last])


@dataclass
class GroupedLPM(SmoothOnly):
    """The LPM's convex form (`ufm.convex.NuclearBallLPM`) in the coordinates (Q, a) of the
    algebra of classes with equal counts (module docstring); same interface."""

    counts: Sequence[int] | np.ndarray
    e_w: float = 1.0
    e_h: float = 5.0
    dtype: torch.dtype = torch.float64
    device: torch.device | str = "cpu"

    def __post_init__(self) -> None:
        self.groups = ClassGroups.from_counts(self.counts)
        self.counts = _check_counts(self.counts)
        self.e_w = _check_positive(self.e_w, "E_W")
        self.e_h = _check_positive(self.e_h, "E_H")
        self.radius = len(self.counts) * math.sqrt(self.e_w * self.e_h)
        opts = {"dtype": self.dtype, "device": self.device}
        self.sizes = torch.as_tensor(self.groups.sizes, **opts)  # (m,) s_a
        n = torch.as_tensor(self.groups.counts, **opts)
        self.weights = n / float(np.sum(self.counts))  # (m,) w_a = n_a / N, per class
        # log of the multiplicity of each non-target logit: s_b classes, s_a - 1 in the own group
        mult = self.sizes[None, :] - torch.eye(len(n), **opts)  # (m, m)
        self.log_mult = torch.where(mult > 0, mult.clamp_min(1).log(), -math.inf)
        self.root = self.sizes.sqrt()
        # constants of every evaluation, computed once (small problems are overhead-bound)
        self.root_rest = torch.sqrt(self.sizes - 1)  # (m,) sqrt(s_a - 1): a = root_rest alpha
        self.inv_root_rest = torch.where(self.sizes > 1, 1 / self.root_rest.clamp_min(1), 0.0)
        self.inv_pair = 1 / (self.root[:, None] * self.root[None, :])  # (m, m)
        self.inv_rest = torch.where(self.sizes > 1, 1 / (self.sizes - 1).clamp_min(1), 0.0)

    def with_dtype(self, dtype: torch.dtype) -> GroupedLPM:
        return dataclasses.replace(self, counts=self.counts, dtype=dtype)

    def random_start(self, seed: int) -> Vars:
        gen = torch.Generator().manual_seed(seed)
        m = self.groups.num_groups
        q = torch.randn(m, m, generator=gen, dtype=torch.float64)
        a = torch.randn(m, generator=gen, dtype=torch.float64) * (self.sizes.cpu() > 1)
        scale = 0.1 * self.radius / math.sqrt(float((q * q).sum() + (a * a).sum()))
        return tuple((v * scale).to(self.dtype).to(self.device) for v in (q, a))

    def _logits(self, x: Vars) -> tuple[Tensor, Tensor]:
        """L (m, m): logit of any class of group b != own for a class of group a; t (m,): the
        target logit. L_ab = Q_ab / sqrt(s_a s_b) - [a = b] alpha_a / s_a, t_a = L_aa + alpha_a."""
        q, a = x
        alpha = a * self.inv_root_rest
        logits = q * self.inv_pair - torch.diag(alpha / self.sizes)
        return logits, logits.diagonal() + alpha

    def value_and_grad(self, x: Vars) -> tuple[Tensor, Vars]:
        value, grad, _, _ = self._ce(*self._logits(x))
        return value, grad

    def _ce(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Vars, Tensor, Tensor]:
        """sum_a s_a w_a CE_a, its gradient in (Q, a), the mass on each group b (m, m, target
        excluded) and the target probability (m,), from the logit table of `_logits`."""
        shifted = logits + self.log_mult  # (m, m): log of the summed exp over group b
        top = torch.maximum(shifted.max(1).values, target)  # (m,)
        mass = torch.exp(shifted - top[:, None])
        p_target = torch.exp(target - top)
        rest = mass.sum(1)  # (m,): the non-target terms, scaled by exp(-top)
        total = rest + p_target
        # Where the target is the largest logit, CE = log1p(rest) without rounding 1 + rest:
        # accurate to relative rounding when every margin is large (the loss near 0).
        ce = torch.where(target >= top, torch.log1p(rest), top - target + total.log())
        mass /= total[:, None]  # (m, m): probability mass on group b (target excluded)
        p_target /= total  # (m,)
        miss = mass.sum(1)  # (m,): 1 - p_t, summed from the non-target terms
        w = self.weights
        value = (self.sizes * w * ce).sum()
        # G_Q = diag(w sqrt(s)) P diag(1/sqrt(s)) + diag(w (p_t - 1)); g_a = sqrt(s - 1) g_alpha
        g_q = (w * self.root)[:, None] * mass / self.root[None, :]
        g_q.diagonal().sub_(w * miss)
        other = mass.diagonal() * self.inv_rest  # probability of one other member
        g_a = self.root_rest * w * (-miss - other)
        return value, (g_q, g_a), mass, p_target

    def nuclear_norm(self, x: Vars) -> float:
        q, a = x
        return float(torch.linalg.svdvals(q).sum() + (self.root_rest * a.abs()).sum())

    def prox(self, x: Vars, step: float) -> Vars:
        """Projection on ||Z||_* <= r: every singular value of Z shrunk by one tau."""
        q, a = x
        lam, v = _right_spectrum(q)  # (m,), (m, m)
        multiple = self.sizes > 1
        values = torch.cat([lam, (a * self.inv_root_rest).abs()[multiple]])
        weights = torch.cat([torch.ones_like(lam), (self.sizes - 1)[multiple]])
        if float((values * weights).sum()) <= self.radius:
            return q, a
        tau = _threshold(values, weights, self.radius)
        shrunk = torch.clamp(a.abs() - tau * self.root_rest, min=0.0)
        return _shrink_spectrum(q, lam, v, tau), torch.sign(a) * shrunk

    def smoothness(self) -> float:
        return float(self.weights.max()) / 2  # Böhning: Hess CE <= (I - 1 1^T/K)/2

    def lower_bound(self, x: Vars) -> float:
        value, (g_q, g_a) = self.value_and_grad(x)
        inner = (g_q * x[0]).sum() + (g_a * x[1]).sum()
        return float(value - inner) - self.radius * algebra_op_norm(g_q, g_a, self.sizes)

    def full(self, x: Vars) -> Tensor:
        """Zt (K, K), row k = logits of class k's mean."""
        return self.groups.expand(x[0], x[1])


@dataclass
class GroupedPenaltyUFM:
    """Hong & Ling's convex form (`ufm.convex.NuclearPenaltyUFM`, Yt = D^{1/2} Z^T and bias b)
    in the coordinates of the algebra: (Q, a) for Yt (D commutes with permuting classes of
    equal counts) and bt_a = sqrt(s_a n_a) b_a for a bias constant on each group: sqrt(s_a)
    makes it an isometry, sqrt(n_a) a preconditioning (the curvature in b_a is about n_a times
    that in Y, so without it the bias alone would bound the step).
    Row scaling by D^{-1/2} maps (Q, a) to (diag(n^{-1/2}) Q, a / sqrt(n)): the logits are
    those of `GroupedLPM` at that point plus the bias."""

    counts: Sequence[int] | np.ndarray
    lam: float = 1e-3
    lambda_b: float = 0.0
    dtype: torch.dtype = torch.float64
    device: torch.device | str = "cpu"
    bias: bool = True

    def __post_init__(self) -> None:
        self.logit_form = GroupedLPM(self.counts, dtype=self.dtype, device=self.device)
        self.groups = self.logit_form.groups
        self.counts = self.logit_form.counts
        self.lam = _check_positive(self.lam, "lambda")
        if not (math.isfinite(self.lambda_b) and self.lambda_b >= 0):
            raise ValueError(f"lambda_b must be a finite number >= 0, got {self.lambda_b!r}")
        self.sizes, self.weights = self.logit_form.sizes, self.logit_form.weights
        n = torch.as_tensor(self.groups.counts, dtype=self.dtype, device=self.device)
        self.root_n = n.sqrt()  # (m,)
        self.bias_scale = self.logit_form.root * self.root_n  # bt = bias_scale * b

    def with_dtype(self, dtype: torch.dtype) -> GroupedPenaltyUFM:
        return dataclasses.replace(self, counts=self.counts, dtype=dtype)

    def random_start(self, seed: int) -> Vars:
        gen = torch.Generator().manual_seed(seed)
        m = self.groups.num_groups
        q = torch.randn(m, m, generator=gen, dtype=torch.float64) * 0.01
        a = torch.randn(m, generator=gen, dtype=torch.float64) * 0.01 * (self.sizes.cpu() > 1)
        return tuple(v.to(self.dtype).to(self.device) for v in (q, a, torch.zeros(m)))

    def _data(self, x: Vars) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """CE part: value, its gradients in (Q, a, bt), and the masses (P (m, m), p_target)."""
        q, a, bt = x
        logits, target = self.logit_form._logits((q / self.root_n[:, None], a / self.root_n))
        b = bt / self.bias_scale
        value, (g_q, g_a), mass, p_t = self.logit_form._ce(logits + b[None, :], target + b)
        total = mass + torch.diag(p_t)  # (m, m): mass on group b, target included
        sw = self.sizes * self.weights
        g_b = ((sw @ total) / self.root - self.root * self.weights) / self.root_n  # in bt
        return value, g_q / self.root_n[:, None], g_a / self.root_n, g_b, total, sw

    @property
    def root(self) -> Tensor:
        return self.logit_form.root  # (m,) sqrt(s_a)

    def value_and_grad(self, x: Vars) -> tuple[Tensor, Vars]:
        value, g_q, g_a, g_b, _, _ = self._data(x)
        bt = x[2]
        if not self.bias:
            return value, (g_q, g_a, torch.zeros_like(bt))
        value = value + self.lambda_b * (bt * bt / self.root_n**2).sum()
        return value, (g_q, g_a, g_b + 2 * self.lambda_b * bt / self.root_n**2)

    def smooth_value(self, x: Vars) -> float:
        return float(self.value_and_grad(x)[0])

    def penalty(self, x: Vars) -> float:
        q, a, _ = x
        nuclear = torch.linalg.svdvals(q).sum() + (self.logit_form.root_rest * a.abs()).sum()
        return self.lam * float(nuclear)

    def objective(self, x: Vars) -> float:
        return self.smooth_value(x) + self.penalty(x)

    def prox(self, x: Vars, step: float) -> Vars:
        """Singular-value soft thresholding of Yt by step * lambda; the bias is unchanged."""
        q, a, bt = x
        tau = step * self.lam
        if tau <= 0:
            return x
        s, v = _right_spectrum(q)
        shrunk = torch.clamp(a.abs() - tau * self.logit_form.root_rest, min=0.0)
        return _shrink_spectrum(q, s, v, tau), torch.sign(a) * shrunk, bt

    def smoothness(self) -> float:
        return float((self.weights / self.root_n**2).max() / 2 + 2 * self.lambda_b + 1e-12)

    def polish_bias(self, x: Vars, iters: int = 50) -> Vars:
        """Minimise the smooth part over the bias exactly (Newton, pseudo-inverse)."""
        if not self.bias:
            return x
        q, a, bt = x
        eye = torch.eye(len(bt), dtype=bt.dtype, device=bt.device)
        iso = bt / self.root_n  # sqrt(s_a) b_a: Newton in the Euclidean metric of b
        for _ in range(iters):
            _, _, _, g_b, total, sw = self._data((q, a, iso * self.root_n))
            g = g_b * self.root_n + 2 * self.lambda_b * iso
            if float(torch.linalg.norm(g)) < 1e-15:
                break
            # Hessian in bt: diag(sum_a s_a w_a P_ab / s_b) - X^T X,
            # X_ab = sqrt(s_a w_a) P_ab / sqrt(s_b)
            xm = sw.sqrt()[:, None] * total / self.root[None, :]
            hess = torch.diag((sw @ total) / self.sizes) - xm.T @ xm + 2 * self.lambda_b * eye
            iso = iso - torch.linalg.pinv(hess, hermitian=True, rtol=1e-13) @ g
        return q, a, iso * self.root_n

    def lower_bound(self, x: Vars) -> float:
        if self.lambda_b == 0 or not self.bias:
            x = self.polish_bias(x)
        q, a, bt = x
        data, g_q, g_a, g_b, _, _ = self._data(x)
        radius = self.objective(x) / self.lam  # lam ||Y*||_* <= F* <= F(x)
        op = algebra_op_norm(g_q, g_a, self.sizes)
        inner = float((g_q * q).sum() + (g_a * a).sum())
        bound = float(data) - inner + radius * min(0.0, self.lam - op)
        if self.bias and self.lambda_b > 0:
            g_iso, b_iso = g_b * self.root_n, bt / self.root_n  # the metric of b
            bound -= float((g_iso * b_iso).sum()) + float((g_iso**2).sum()) / (4 * self.lambda_b)
        return bound

    def full(self, x: Vars) -> tuple[Tensor, Tensor]:
        """(Yt (K, K), b (K,)) of the K x K form."""
        q, a, bt = x
        idx = torch.as_tensor(self.groups.index, device=q.device)
        return self.groups.expand(q, a), (bt / self.bias_scale)[idx]


def full_certificate(
    zt: Tensor, counts: Sequence[int] | np.ndarray, radius: float, groups: ClassGroups
) -> tuple[float, float]:
    """(f(Z), lower bound on f*) computed on the full Zt (K, K) in its own dtype:

        f* >= f(Z) - <G, Z> - r (||P G||_op + ||G - P G||_F),   G = grad f(Z),

    P the projection on the algebra of `groups` (exact op norm, m x m) and the Frobenius norm of
    the rest bounding its op norm; valid for any Zt."""
    n = torch.as_tensor(np.asarray(counts), dtype=zt.dtype, device=zt.device)
    value, g = class_mean_cross_entropy(zt, n / n.sum())
    inner = float((g * zt).sum())
    g_q, g_a = groups.reduce(g)
    rest = g
    rest -= groups.expand(g_q, g_a)  # in place: g is not needed any more
    sizes = torch.as_tensor(groups.sizes, dtype=zt.dtype, device=zt.device)
    op = algebra_op_norm(g_q, g_a, sizes, svd=True) + float(torch.linalg.norm(rest))
    return float(value), float(value) - inner - radius * op
