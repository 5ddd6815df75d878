"""Check 2: Theorem 1 of Yang et al. (NeurIPS 2022), fixed ETF + cross-entropy.

For W* = sqrt(E_W) M^T (rows w*_k) and the decoupled constraint ||h_{k,i}||^2 <= E_H,

    min_H (1/N) sum_{k,i} CE(W* h_{k,i}, k)

has, for ANY class counts n_k, the unique minimizer h*_{k,i} = sqrt(E_H/E_W) w*_k and the value
log(1 + (K-1) exp(-K sqrt(E_W E_H)/(K-1))).

How it is checked, for rho in {1, 10, 100, 1000} and K in {2, 10, 100} (exponential counts):
the accelerated solver starts from random unit-sphere features and stops on its Frank-Wolfe
certificate. Then

1. value: the closed form must lie in [lower bound, value reached] (both certified);
2. features: the problem separates over samples, so each sample has its own Frank-Wolfe gap
   g_i >= f_i(h_i) - f_i*. Around h* the Lagrangian f_i + (mu/N)(||h||^2 - E_H) is
   (2 mu/N)-strongly convex with mu = ||grad CE(W* h*)|| / (2 sqrt(E_H)) (the multiplier of
   the active ball), so for feasible h: ||h_i - h*||^2 <= N g_i / mu. Every measured distance
   must lie within its certified radius, and the radii must be small (FEATURE_CE);
3. NC1 of the features is 0 (NC1 tolerance).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from proofs_checks.registry import CheckResult, Measurement, Size, register
from proofs_checks.tolerances import BRACKET, FEATURE_CE, NC1
from ufm.imbalance import exponential_counts
from ufm.losses import get_loss
from ufm.metrics import nc1
from ufm.problems import FixedETFModel
from ufm.solvers import solve

__all__ = ["ball_multiplier", "certified_radii", "evaluate", "feasibility", "run"]

E_W, E_H = 1.0, 5.0
RATIOS = {"full": (1, 10, 100, 1000), "small": (1, 100)}
CLASSES = {"full": (2, 10, 100), "small": (2, 10)}
MIN_N_MAX = {"full": 20, "small": 5}  # samples of the largest class (at least rho)


def ball_multiplier(problem: FixedETFModel) -> float:
    """mu = ||grad_h CE(W* h*, k)|| / (2 ||h*||): the multiplier of ||h||^2 <= E_H at h*.

    The same for every class by the ETF's symmetry; computed from the loss, not from a formula.
    """
    h_star = math.sqrt(problem.e_h / problem.e_w) * problem.w_star[:1]  # (1, d)
    z = h_star @ problem.w_star.T  # (1, K)
    grad_h = get_loss("ce").grad(z, torch.zeros(1, dtype=torch.long)) @ problem.w_star  # (1, d)
    return float(torch.linalg.vector_norm(grad_h) / (2 * math.sqrt(problem.e_h)))


def certified_radii(problem: FixedETFModel, h: Tensor) -> Tensor:
    """Per-sample bound sqrt(N g_i / mu) on ||h_i - h*_i|| from the Frank-Wolfe gaps g_i, (N,).

    g_i = <grad_i, h_i> + sqrt(E_H) ||grad_i|| is enlarged by its rounding error,
    8 eps (|<grad_i, h_i>| + sqrt(E_H) ||grad_i||), so the radius is an upper bound in floating
    point too (it cancels to ~0 at the optimum).
    """
    _, (g,) = problem.value_and_grad((h,))  # (N, d), includes the 1/N of the objective
    inner = (g * h).sum(1)  # (N,)
    support = math.sqrt(problem.e_h) * torch.linalg.vector_norm(g, dim=1)  # (N,)
    eps = torch.finfo(h.dtype).eps
    gaps = (inner + support).clamp_min(0.0) + 8 * eps * (inner.abs() + support)
    return torch.sqrt(problem.num_samples * gaps / ball_multiplier(problem))


def feasibility(problem: FixedETFModel, h: Tensor, tag: str) -> Measurement:
    """max_i ||h_i||^2 / E_H - 1 (<= 0 when feasible): certificates hold at feasible points only."""
    excess = float((torch.linalg.vector_norm(h, dim=1) ** 2).max()) / problem.e_h - 1
    return Measurement(f"{tag}: infeasibility max ||h||^2/E_H - 1", max(excess, 0.0), BRACKET)


def evaluate(problem: FixedETFModel, h: Tensor, lower_bound: float, tag: str) -> list[Measurement]:
    """Compare features h (N, d) with Theorem 1 (module docstring, items 1-3)."""
    value = problem.objective((h,))
    optimum = problem.optimum()
    outside = max(0.0, lower_bound - optimum, optimum - value)
    scale = math.sqrt(problem.e_h)
    dist = torch.linalg.vector_norm(h - problem.optimal_features(), dim=1) / scale  # (N,)
    radii = certified_radii(problem, h) / scale
    return [
        feasibility(problem, h, tag),
        Measurement(f"{tag}: closed form outside [bound, value]", outside, BRACKET * max(1, value)),
        Measurement(
            f"{tag}: feature error beyond certified radius", float((dist - radii).max()), BRACKET
        ),
        Measurement(f"{tag}: max ||h - h*||/sqrt(E_H)", float(dist.max()), FEATURE_CE),
        Measurement(f"{tag}: certified radius", float(radii.max()), FEATURE_CE),
        Measurement(f"{tag}: NC1", nc1(h, problem.labels, problem.num_classes), NC1),
    ]


def _case(k: int, rho: int, size: Size, seed: int) -> tuple[list[Measurement], dict[str, object]]:
    counts = exponential_counts(k, max(rho, MIN_N_MAX[size]), rho)
    problem = FixedETFModel(counts, k + 1, loss="ce", e_w=E_W, e_h=E_H, etf_seed=seed)
    res = solve(problem, "fast", seed=seed + 1, tol=1e-13, relative=True, max_iter=2000)
    h = problem.features(res.x)
    bound = problem.lower_bound(res.x)
    ms = evaluate(problem, h, bound, f"K={k} rho={rho}")
    case = {
        "K": k,
        "rho": rho,
        "N": int(np.sum(counts)),
        "iterations": res.iterations,
        "reason": res.reason,
        "value": res.objective,
        "closed_form": problem.optimum(),
        "lower_bound": bound,
    }
    return ms, case


@register(
    "theorem1",
    statement="fixed ETF + CE: h* = sqrt(E_H/E_W) w*_k and the closed-form value, for any counts",
    source="Yang et al. 2022, Theorem 1",
)
def run(size: Size) -> CheckResult:
    ms, cases = [], []
    for i, k in enumerate(CLASSES[size]):
        for j, rho in enumerate(RATIOS[size]):
            case_ms, case = _case(k, rho, size, seed=10 * i + j)
            ms += case_ms
            cases.append(case)
    return CheckResult.from_measurements(ms, e_w=E_W, e_h=E_H, cases=cases)
