"""Convex forms of the layer-peeled models, solved to a certified precision.

**LPM** (Fang et al., PNAS 2021). By Jensen the optimum has collapsed features; with
Z = W Hbar^T (K x K, column k = logits of the mean of class k) the LPM is exactly (d >= K)

    min_Z  sum_k (n_k/N) CE(z_k, k)   s.t.  ||Z||_* <= r = K sqrt(E_W E_H),

since ||W Hbar^T||_* <= ||W||_F ||Hbar||_F and every Z of the ball factors back. For convex f on
this ball, f(Z) - f* <= <grad f(Z), Z> + r ||grad f(Z)||_op (the Frank-Wolfe gap), so every
optimum reported carries a certificate.

**Regularized UFM** (Hong & Ling 2023). With lambda = 2 sqrt(lambda_W lambda_H), D = diag(n_k)
and Y = Z D^{1/2},

    min_{Y,b}  (1/N) sum_k n_k CE(y_k / sqrt(n_k) + b, k) + lambda_b ||b||^2 + lambda ||Y||_*.

With G = grad of the smooth part h (lambda_b ||b||^2 kept exact) and R >= ||Y*||_* (from
lambda ||Y*||_* <= F(Y)), F* >= h - <G_Y, Y> - <G_b, b> - ||G_b||^2/(4 lambda_b)
+ R min(0, lambda - ||G_Y||_op). For lambda_b = 0 the bias is first minimized exactly
(Newton's method, h is convex in b) and the G_b terms vanish.

Both are solved by the accelerated proximal gradient of `ufm.solvers` (projection onto the
nuclear-norm ball / singular-value thresholding). `ufm.convex_cvxpy` states the same programs in
cvxpy, as independent cross-checks for small K.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ufm.grouped import GroupedLPM, GroupedPenaltyUFM, full_certificate
from ufm.losses import class_mean_cross_entropy
from ufm.problems import SmoothOnly, Vars, _check_counts, _check_positive
from ufm.solvers import SolveResult, accelerated_gradient

__all__ = [
    "ConvexResult",
    "NotCertifiedError",
    "NuclearBallLPM",
    "NuclearPenaltyUFM",
    "gram_factors",
    "project_nuclear_ball",
    "solve_lpm_convex",
    "solve_regularized_convex",
]


def _project_simplex_ball(s: Tensor, radius: float) -> Tensor:
    """Project s >= 0 (descending) onto {s >= 0, sum s <= radius} (Duchi et al. 2008)."""
    if float(s.sum()) <= radius:
        return s
    cumulative = torch.cumsum(s, 0)
    idx = torch.arange(1, len(s) + 1, dtype=s.dtype, device=s.device)
    tau_all = (cumulative - radius) / idx
    rho = int(torch.nonzero(s > tau_all).max())
    return torch.clamp(s - tau_all[rho], min=0.0)


def project_nuclear_ball(z: Tensor, radius: float) -> Tensor:
    """Euclidean projection of z onto {||z||_* <= radius}: project the singular values."""
    u, s, vh = torch.linalg.svd(z, full_matrices=False)
    if float(s.sum()) <= radius:
        return z
    return (u * _project_simplex_ball(s, radius)) @ vh


@dataclass
class NuclearBallLPM(SmoothOnly):
    """The LPM's convex form over Zt = Z^T (row k = logits of class k's mean), cross-entropy."""

    counts: Sequence[int] | np.ndarray
    e_w: float = 1.0
    e_h: float = 5.0
    dtype: torch.dtype = torch.float64
    device: torch.device | str = "cpu"

    def __post_init__(self) -> None:
        self.counts = _check_counts(self.counts)
        self.e_w = _check_positive(self.e_w, "E_W")
        self.e_h = _check_positive(self.e_h, "E_H")
        n = torch.as_tensor(self.counts, dtype=self.dtype, device=self.device)
        self.weights = n / n.sum()  # (K,)
        self.radius = len(self.counts) * math.sqrt(self.e_w * self.e_h)

    def random_start(self, seed: int) -> Vars:
        gen = torch.Generator().manual_seed(seed)
        k = len(self.counts)
        z = torch.randn(k, k, generator=gen, dtype=torch.float64).to(self.dtype).to(self.device)
        return (z * (0.1 * self.radius / torch.linalg.norm(z)),)

    def value_and_grad(self, x: Vars) -> tuple[Tensor, Vars]:
        value, grad = class_mean_cross_entropy(x[0], self.weights)
        return value, (grad,)

    def prox(self, x: Vars, step: float) -> Vars:
        return (project_nuclear_ball(x[0], self.radius),)

    def smoothness(self) -> float:
        return float(self.weights.max()) / 2  # Böhning: Hess CE <= (I - 1 1^T/K)/2

    def lower_bound(self, x: Vars) -> float:
        value, (g,) = self.value_and_grad(x)
        gap = (g * x[0]).sum() + self.radius * torch.linalg.matrix_norm(g, ord=2)
        return float(value - gap)

    def multiplier(self, x: Vars) -> float:
        """The KKT multiplier mu of ||Z||_* <= r at an optimum x: mu = ||grad f(Z)||_op.

        Stationarity -grad f(Z) in mu d||Z||_* with d||Z||_* = {U V^T + E : ||E||_op <= 1,
        E orthogonal to Z's singular spaces} gives ||grad f||_op = mu when Z != 0; at a
        certified point this is mu up to the distance to the optimum. Also -<grad f, Z> = mu r.
        """
        _, (g,) = self.value_and_grad(x)
        return float(torch.linalg.matrix_norm(g, ord=2))


@dataclass
class NuclearPenaltyUFM:
    """Hong & Ling's convex form over (Yt, b), Yt = D^{1/2} Z^T (row k = sqrt(n_k) z_k).

    bias=False removes the bias from the model (b stays 0): the UFM of Thrampoulidis et al.
    (NeurIPS 2022), whose lambda -> 0 limit is the SELI geometry.
    """

    counts: Sequence[int] | np.ndarray
    lam: float = 1e-3
    lambda_b: float = 0.0
    dtype: torch.dtype = torch.float64
    device: torch.device | str = "cpu"
    bias: bool = True

    def __post_init__(self) -> None:
        self.counts = _check_counts(self.counts)
        self.lam = _check_positive(self.lam, "lambda")
        if not (math.isfinite(self.lambda_b) and self.lambda_b >= 0):
            raise ValueError(f"lambda_b must be a finite number >= 0, got {self.lambda_b!r}")
        n = torch.as_tensor(self.counts, dtype=self.dtype, device=self.device)
        self.weights = n / n.sum()  # (K,)
        self.root_n = n.sqrt()  # (K,)

    def random_start(self, seed: int) -> Vars:
        gen = torch.Generator().manual_seed(seed)
        k = len(self.counts)
        y = torch.randn(k, k, generator=gen, dtype=torch.float64).to(self.dtype).to(self.device)
        return y * 0.01, torch.zeros(k, dtype=self.dtype, device=self.device)

    def logits(self, x: Vars) -> Tensor:
        """Row k: logits of class k's mean, z_k + b."""
        yt, b = x
        return yt / self.root_n[:, None] + b

    def _data(self, x: Vars) -> tuple[Tensor, Tensor, Tensor]:
        value, gz = class_mean_cross_entropy(self.logits(x), self.weights)
        return value, gz / self.root_n[:, None], gz.sum(0)

    def value_and_grad(self, x: Vars) -> tuple[Tensor, Vars]:
        value, g_y, g_b = self._data(x)
        b = x[1]
        if not self.bias:
            return value, (g_y, torch.zeros_like(b))
        value = value + self.lambda_b * (b * b).sum()
        return value, (g_y, g_b + 2 * self.lambda_b * b)

    def smooth_value(self, x: Vars) -> float:
        return float(self.value_and_grad(x)[0])

    def penalty(self, x: Vars) -> float:
        return self.lam * float(torch.linalg.svdvals(x[0]).sum())

    def objective(self, x: Vars) -> float:
        return self.smooth_value(x) + self.penalty(x)

    def prox(self, x: Vars, step: float) -> Vars:
        u, s, vh = torch.linalg.svd(x[0], full_matrices=False)
        return (u * torch.clamp(s - step * self.lam, min=0.0)) @ vh, x[1]

    def smoothness(self) -> float:
        return float((self.weights / self.root_n**2).max() / 2 + 2 * self.lambda_b + 1e-12)

    def polish_bias(self, x: Vars, iters: int = 50) -> Vars:
        """Minimise the smooth part over b exactly (Newton with a pseudo-inverse, b ⟂ 1)."""
        yt, b = x
        if not self.bias:
            return x
        for _ in range(iters):
            p = torch.softmax(self.logits((yt, b)), dim=1)  # (K, K)
            g = (self.weights[:, None] * p).sum(0) - self.weights + 2 * self.lambda_b * b
            if float(torch.linalg.norm(g)) < 1e-15:
                break
            hess = torch.diag((self.weights[:, None] * p).sum(0)) - (p.T * self.weights) @ p
            hess = hess + 2 * self.lambda_b * torch.eye(len(b), dtype=b.dtype, device=b.device)
            b = b - torch.linalg.pinv(hess, hermitian=True, rtol=1e-13) @ g
        return yt, b

    def lower_bound(self, x: Vars) -> float:
        if self.lambda_b == 0 or not self.bias:
            x = self.polish_bias(x)
        yt, b = x
        data, g_y, g_b = self._data(x)
        f = self.objective(x)
        radius = f / self.lam  # lam ||Y*||_* <= F* <= F(x)
        op = float(torch.linalg.matrix_norm(g_y, ord=2))
        bound = float(data) - float((g_y * yt).sum()) + radius * min(0.0, self.lam - op)
        if self.bias and self.lambda_b > 0:  # min over b' of <G_b, b'> + lambda_b ||b'||^2
            bound -= float((g_b * b).sum()) + float((g_b * g_b).sum()) / (4 * self.lambda_b)
        return bound


def gram_factors(
    z: np.ndarray, counts: Sequence[int] | np.ndarray | None = None, balance: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(G_W, G_H) = (beta^2 (Y Y^T)^{1/2}, D^{-1/2} (Y^T Y)^{1/2} D^{-1/2} / beta^2), Y = Z D^{1/2}.

    The classifier and class-mean Grams of logits z (K, K), column k = logits of class k's
    mean, factored in balance (`ConvexResult.grams` of a certified optimum). `counts` gives
    D = diag(n_k) (the regularized UFM, per-sample feature penalty), None gives D = I (the LPM).
    `balance` is beta, with beta^2 = sqrt(E_W / E_H) for the LPM; cosines do not depend on it.
    """
    z = np.asarray(z, dtype=np.float64)
    k = z.shape[0]
    if z.shape != (k, k):
        raise ValueError(f"z must be square (K, K), got {z.shape}")
    root_n = np.ones(k) if counts is None else np.sqrt(np.asarray(counts, dtype=np.float64))
    if root_n.shape != (k,):
        raise ValueError(f"counts must have K={k} entries, got {root_n.shape}")
    y = z * root_n[None, :]  # (K, K): column k scaled by sqrt(n_k)
    u, s, vh = np.linalg.svd(y)  # from Y itself: (Y Y^T)^{1/2} = U S U^T to full precision
    gram_w = balance**2 * (u * s) @ u.T
    gram_h = (vh.T * s) @ vh / np.outer(root_n, root_n) / balance**2
    return gram_w, gram_h


@dataclass
class ConvexResult:
    """A certified optimum: value f(Z), a lower bound on f*, and f(Z) - bound (the gap)."""

    z: Tensor  # (K, K), column k = logits of class k's mean (without bias)
    bias: Tensor | None
    value: float
    lower_bound: float
    iterations: int
    seconds: float
    history: dict[str, np.ndarray]

    @property
    def gap(self) -> float:
        return self.value - self.lower_bound

    @property
    def relative_gap(self) -> float:
        return self.gap / max(abs(self.lower_bound), 1e-300)

    def factors(
        self,
        dim: int,
        balance: float,
        seed: int = 0,
        counts: Sequence[int] | np.ndarray | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(W (K, d), Hbar (K, d)) with W Hbar^T = Z, W W^T = G_W of `grams`.

        Y = Z D^{1/2} = U S V^T, W = U S^{1/2} balance, Hbar = D^{-1/2} V S^{1/2} / balance,
        embedded in R^d by a seeded orthonormal frame; D = diag(counts) for the regularized UFM,
        D = I (counts None) for the LPM, where balance^2 = sqrt(E_W/E_H).
        """
        from ufm.etf import haar_frame

        k = self.z.shape[0]
        if dim < k:
            raise ValueError(f"factors of a K x K matrix need dim >= K={k}, got {dim}")
        y = self.z
        if counts is not None:
            root_n = torch.as_tensor(counts, dtype=self.z.dtype, device=self.z.device).sqrt()
            y = self.z * root_n  # (K, K): column k scaled by sqrt(n_k)
        u, s, vh = torch.linalg.svd(y)
        root = s.sqrt()
        hbar = vh.T * root / balance
        if counts is not None:
            hbar = hbar / root_n[:, None]
        frame = haar_frame(dim, k, seed=seed, dtype=self.z.dtype).to(self.z.device).T  # (K, d)
        return (u * root * balance) @ frame, hbar @ frame

    def grams(
        self, counts: Sequence[int] | np.ndarray | None = None, balance: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(G_W, G_H) = (W W^T, Hbar Hbar^T) (K, K) of this optimum, float64: `gram_factors`
        of Z, with D = diag(counts) for the regularized UFM, D = I (None) for the LPM."""
        return gram_factors(self.z.detach().cpu().numpy(), counts, balance)


class NotCertifiedError(RuntimeError):
    """A certified solve that stopped (max_iter, max_seconds) before its relative gap reached
    tol; carries how far it got."""

    def __init__(self, what: str, iterations: int, seconds: float, gap: float, tol: float):
        super().__init__(
            f"{what}: not certified after {iterations} iterations ({seconds:.1f} s): "
            f"relative gap {gap:.2e} > tol {tol:.1e}; raise max_iter or loosen tol"
        )
        self.iterations, self.seconds, self.relative_gap, self.tol = iterations, seconds, gap, tol


def _check_certified(
    value: float, bound: float, tol: float, iterations: int, seconds: float, what: str
) -> None:
    gap = (value - bound) / max(abs(bound), 1e-300)
    if not gap <= tol:
        raise NotCertifiedError(what, iterations, seconds, gap, tol)


def _check_certificate_dtype(dtype: torch.dtype) -> None:
    if dtype != torch.float64:
        raise ValueError(
            f"certified solves compute in float64 (a bound rounded in {dtype} is no proof); "
            f"for float32 iterations pass float32_phase=True (the default)"
        )


def _certified_solve(
    problem: NuclearBallLPM | NuclearPenaltyUFM,
    *,
    tol: float,
    max_iter: int,
    max_seconds: float | None,
    seed: int,
    what: str,
    x0: Vars | None = None,
    float32_phase: bool = True,
) -> tuple[SolveResult, float]:
    """Solve to relative certified gap `tol` from `x0` (default: the random start of `seed`);
    (result, best lower bound). Raises if not reached. With `float32_phase`, a problem that
    offers `with_dtype` is iterated in float32 until float32 stops gaining, then in float64
    (`ufm.solvers.accelerated_gradient`); every certificate is computed in float64."""
    with torch.no_grad():
        res = accelerated_gradient(
            problem,
            problem.random_start(seed) if x0 is None else x0,
            tol=tol,
            relative=True,
            max_iter=max_iter,
            max_seconds=max_seconds,
            float32_warmup=float32_phase,
        )
        bound = max(problem.lower_bound(res.x), res.lower_bound or -math.inf)
    if not res.converged:
        gap = (res.objective - bound) / max(abs(bound), 1e-300)
        raise NotCertifiedError(what, res.iterations, res.seconds, gap, tol)
    return res, bound


def solve_lpm_convex(
    counts: Sequence[int] | np.ndarray,
    e_w: float = 1.0,
    e_h: float = 5.0,
    *,
    tol: float = 1e-10,
    max_iter: int = 50_000,
    max_seconds: float | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    float32_phase: bool = True,
    grouped: bool = True,
) -> ConvexResult:
    """Certified optimum of the LPM (cross-entropy) to relative gap `tol`; raises if not reached.

    grouped=True solves in the algebra of classes with equal counts (`ufm.grouped`: an m x m
    eigendecomposition per step, m the number of distinct counts, instead of a K x K SVD); the
    lower bound is the larger of the best one met on the way (exact for points of the algebra)
    and the one computed on the full K x K matrix returned (valid at any point); grouped=False
    iterates on the K x K matrix.

    float32_phase=True (grouped): iterate in float32 while float32 gains (about half the memory
    traffic; on a GPU, float32 kernels), then in float64 from that point, keeping the momentum;
    False: float64 throughout. The point returned and its certificate are float64 either way
    (`dtype` must be float64: a lower bound rounded in float32 would not be a proof).
    """
    _check_certificate_dtype(dtype)
    if not grouped:
        problem = NuclearBallLPM(counts, e_w, e_h, dtype=dtype, device=device)
        res, bound = _certified_solve(
            problem,
            tol=tol,
            max_iter=max_iter,
            max_seconds=max_seconds,
            seed=seed,
            what="LPM convex form",
        )
        return ConvexResult(
            res.x[0].T, None, res.objective, bound, res.iterations, res.seconds, res.history
        )
    reduced = GroupedLPM(counts, e_w, e_h, dtype=dtype, device=device)

    def check(x: Vars, best: float) -> tuple[tuple[Tensor, ...], float, float]:
        zt = reduced.full(x)  # (K, K)
        value, bound = full_certificate(zt, reduced.counts, reduced.radius, reduced.groups)
        return (zt,), value, max(bound, best)  # every certificate met on the way bounds f*

    opts = dict(max_iter=max_iter, max_seconds=max_seconds, seed=seed, what="LPM convex form")
    opts["float32_phase"] = float32_phase
    (zt,), value, bound, res, its, seconds = _grouped_solve(reduced, check, tol, **opts)
    return ConvexResult(zt.T, None, value, bound, its, seconds, res.history)


def _grouped_solve(
    reduced: GroupedLPM | GroupedPenaltyUFM,
    check: Callable[[Vars, float], tuple[tuple[Tensor, ...], float, float]],
    tol: float,
    **opts: Any,
) -> tuple[tuple[Tensor, ...], float, float, SolveResult, int, float]:
    """Solve the reduced form to `tol`, then `check` (K x K point, value, bound) the full point.
    The two evaluate f with different roundings; where that leaves the full gap just above tol,
    the solve continues from its point to tol / 10 once. Returns (point, value, bound, last
    result, iterations and seconds in all); raises NotCertifiedError if tol is not met."""
    start, its, x0 = time.perf_counter(), 0, None
    phase = opts.pop("float32_phase", True)
    for target in (tol, tol / 10):
        try:  # a continuation goes on in float64: float32 has nothing left to gain there
            res, best = _certified_solve(
                reduced, tol=target, x0=x0, float32_phase=phase and x0 is None, **opts
            )
        except NotCertifiedError:
            if x0 is None:
                raise
            break  # the retry could not go further: report the first attempt's gap
        its += res.iterations
        with torch.no_grad():
            point, value, bound = check(res.x, best)
        if (value - bound) / max(abs(bound), 1e-300) <= tol:
            break
        x0 = res.x
    seconds = time.perf_counter() - start
    _check_certified(value, bound, tol, its, seconds, opts["what"])
    return point, value, bound, res, its, seconds


def solve_regularized_convex(
    counts: Sequence[int] | np.ndarray,
    lam: float,
    lambda_b: float = 0.0,
    *,
    tol: float = 1e-10,
    max_iter: int = 100_000,
    max_seconds: float | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    float32_phase: bool = True,
    bias: bool = True,
    grouped: bool = True,
) -> ConvexResult:
    """Certified optimum of Hong & Ling's convex form; z = Y D^{-1/2} and the bias are returned
    (bias=False: the model without bias, `ConvexResult.bias` is None).

    grouped=True iterates in the algebra of classes with equal counts (`ufm.grouped`) and
    certifies the K x K point it stands for; grouped=False iterates on the K x K matrix.
    `float32_phase` and `dtype` as in `solve_lpm_convex`."""
    _check_certificate_dtype(dtype)
    problem = NuclearPenaltyUFM(counts, lam, lambda_b, dtype=dtype, device=device, bias=bias)
    what = "regularized UFM convex form"
    opts = dict(tol=tol, max_iter=max_iter, max_seconds=max_seconds, seed=seed, what=what)
    opts["float32_phase"] = float32_phase
    if grouped:
        reduced = GroupedPenaltyUFM(counts, lam, lambda_b, dtype=dtype, device=device, bias=bias)

        def check(x: Vars, best: float) -> tuple[tuple[Tensor, ...], float, float]:
            full = reduced.full(reduced.polish_bias(x) if lambda_b == 0 else x)
            bound = max(problem.lower_bound(full), best)  # the best certificate met on the way
            return full, problem.objective(full), bound

        del opts["tol"]
        x, _, bound, res, its, seconds = _grouped_solve(reduced, check, tol, **opts)
    else:
        res, bound = _certified_solve(problem, **opts)
        x, its, seconds = res.x, res.iterations, res.seconds
    x = problem.polish_bias(x) if lambda_b == 0 else x
    z = (x[0] / problem.root_n[:, None]).T
    return ConvexResult(
        z,
        x[1] if bias else None,
        problem.objective(x),
        bound,
        its,
        seconds,
        res.history,
    )
