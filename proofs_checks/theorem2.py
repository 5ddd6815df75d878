"""Check 3: Theorem 2 of Yang et al. (NeurIPS 2022), fixed ETF + dot regression.

With c = sqrt(E_W E_H) and DR(h, k) = (w*_k^T h - c)^2 / (2c) under ||h_{k,i}||^2 <= E_H:

- the unique minimizer is h*_{k,i} = sqrt(E_H/E_W) w*_k, value 0 (w*_k^T h <= c by
  Cauchy-Schwarz, with equality only at h*);
- grad_h DR = -(1 - w*_k^T h / c) w*_k: parallel to w*_k everywhere (pull only).

How it is checked: the accelerated solver starts from random features and stops at objective
DR_TARGET (DR >= 0, so the value is its own certificate). For feasible h,
||h - h*||^2 = ||h||^2 + E_H - 2 sqrt(E_H/E_W) w*_k^T h <= 2 sqrt(E_H/E_W) (c - w*_k^T h), and
c - w*_k^T h = sqrt(2 c DR(h)), so each sample has a certified radius that its measured distance
must respect. The gradient is compared, at random points inside and outside the ball, with
autograd and with the closed form, and its part orthogonal to w*_k must vanish.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from proofs_checks.registry import CheckResult, Measurement, Size, register
from proofs_checks.theorem1 import feasibility
from proofs_checks.tolerances import AUTOGRAD, BRACKET, DR_TARGET, DR_VALUE, FEATURE_DR
from ufm.imbalance import exponential_counts
from ufm.losses import dot_regression
from ufm.problems import FixedETFModel
from ufm.solvers import solve

__all__ = ["certified_radii", "evaluate_gradient", "evaluate_solution", "run"]

E_W, E_H = 1.0, 5.0
CASES = {  # (K, rho): DR's per-iteration cost makes K = 100 with N ~ 1.5e4 (rho = 1000) slow
    "full": (*((k, rho) for k in (2, 10) for rho in (1, 10, 100, 1000)), (100, 1), (100, 100)),
    "small": ((2, 10), (10, 100)),
}
MIN_N_MAX = 20  # samples of the largest class (at least rho)


def certified_radii(problem: FixedETFModel, h: Tensor) -> Tensor:
    """Per-sample bound on ||h_i - h*_i||: sqrt(2 sqrt(E_H/E_W) (c - w*_k^T h_i)), (N,).

    c - w*_k^T h_i = sqrt(2 c DR_i) is enlarged by its rounding error, 8 eps (||w|| ||h|| + c),
    so that the radius is an upper bound in floating point too.
    """
    c = math.sqrt(problem.e_w * problem.e_h)
    w = problem.w_star[problem.labels]  # (N, d)
    margin = (c - (w * h).sum(1)).abs()  # (N,) = sqrt(2 c DR_i)
    eps = torch.finfo(h.dtype).eps
    margin = margin + 8 * eps * (math.sqrt(problem.e_w) * torch.linalg.vector_norm(h, dim=1) + c)
    return torch.sqrt(2 * math.sqrt(problem.e_h / problem.e_w) * margin)


def evaluate_solution(problem: FixedETFModel, h: Tensor, tag: str) -> list[Measurement]:
    """Value 0 and features at h* = sqrt(E_H/E_W) w*_k, within certified radii."""
    scale = math.sqrt(problem.e_h)
    dist = torch.linalg.vector_norm(h - problem.optimal_features(), dim=1) / scale  # (N,)
    radii = certified_radii(problem, h) / scale
    return [
        feasibility(problem, h, tag),
        Measurement(f"{tag}: value (optimum 0)", problem.objective((h,)), DR_VALUE),
        Measurement(
            f"{tag}: feature error beyond certified radius", float((dist - radii).max()), BRACKET
        ),
        Measurement(f"{tag}: max ||h - h*||/sqrt(E_H)", float(dist.max()), FEATURE_DR),
    ]


def evaluate_gradient(problem: FixedETFModel, h: Tensor, tag: str) -> list[Measurement]:
    """The problem's DR gradient at h (N, d) against autograd, the closed form, and w*_k."""
    c = math.sqrt(problem.e_w * problem.e_h)
    h = h.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        value = dot_regression(h @ problem.w_star.T, problem.labels, c)
        (auto,) = torch.autograd.grad(value.sum() / problem.num_samples, h)
    _, (grad,) = problem.value_and_grad((h.detach(),))
    w = problem.w_star[problem.labels]  # (N, d) rows w*_{y_i}
    closed = -(1 - (w * h.detach()).sum(1, keepdim=True) / c) * w / problem.num_samples
    unit = w / torch.linalg.vector_norm(w, dim=1, keepdim=True)
    off_axis = grad - (grad * unit).sum(1, keepdim=True) * unit  # part orthogonal to w*_k
    norm = float(torch.linalg.vector_norm(auto))
    return [
        Measurement(f"{tag}: gradient vs autograd", _rel(grad, auto, norm), AUTOGRAD),
        Measurement(f"{tag}: gradient vs -(1 - w^T h/c) w", _rel(grad, closed, norm), AUTOGRAD),
        Measurement(
            f"{tag}: gradient off w*_k", float(torch.linalg.vector_norm(off_axis)) / norm, AUTOGRAD
        ),
    ]


def _rel(a: Tensor, b: Tensor, norm: float) -> float:
    return float(torch.linalg.vector_norm(a - b)) / norm


def _random_points(problem: FixedETFModel, seed: int) -> Tensor:
    """Gaussian features with norms spread over [0, 2 sqrt(E_H)]: inside and outside the ball."""
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(problem.num_samples, problem.dim, generator=gen, dtype=torch.float64)
    radii = 2 * math.sqrt(problem.e_h) * torch.rand(problem.num_samples, 1, generator=gen)
    return h / torch.linalg.vector_norm(h, dim=1, keepdim=True) * radii.to(torch.float64)


def _case(k: int, rho: int, seed: int) -> tuple[list[Measurement], dict[str, object]]:
    counts = exponential_counts(k, max(rho, MIN_N_MAX), rho)
    problem = FixedETFModel(counts, k + 1, loss="dr", e_w=E_W, e_h=E_H, etf_seed=seed)
    # Near DR_TARGET the value sits at the rounding floor of float64 and can creep for thousands
    # of iterations (e.g. 2.4e-20 -> 1.5e-20 over 2e4 at K=100, rho=100): stop at 2000; what is
    # asserted is the value reached (<= DR_VALUE) and the radii it certifies.
    res = solve(problem, "fast", seed=seed + 1, tol=DR_TARGET, target=0.0, max_iter=2_000)
    tag = f"K={k} rho={rho}"
    h = problem.features(res.x)
    ms = evaluate_solution(problem, h, tag)
    ms += evaluate_gradient(problem, _random_points(problem, seed + 2), tag)
    case = {
        "K": k,
        "rho": rho,
        "N": problem.num_samples,
        "iterations": res.iterations,
        "reason": res.reason,
        "value": res.objective,
        "max_certified_radius": float(certified_radii(problem, h).max() / math.sqrt(E_H)),
    }
    return ms, case


@register(
    "theorem2",
    statement="fixed ETF + DR: same minimizer, value 0, gradient parallel to w*_k (pull only)",
    source="Yang et al. 2022, Theorem 2 and eq. 8",
)
def run(size: Size) -> CheckResult:
    ms, cases = [], []
    for i, (k, rho) in enumerate(CASES[size]):
        case_ms, case = _case(k, rho, seed=10 * i)
        ms += case_ms
        cases.append(case)
    return CheckResult.from_measurements(ms, e_w=E_W, e_h=E_H, cases=cases)
