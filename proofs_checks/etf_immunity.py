"""Check 11: a fixed ETF classifier is immune to minority collapse (Yang et al., NeurIPS 2022),
while the learnable LPM on the same counts collapses (Fang et al., PNAS 2021).

For each class-count profile, both models are solved from random starts with E_W = 1, E_H = 5:

- fixed ETF + CE, decoupled constraint: the class means of the minority (tail) classes keep the
  pairwise cosine -1/(K-1) of the simplex ETF, whatever the imbalance (Theorem 1), NC1 = 0;
- learnable LPM + CE (non-convex, random start, stationary point), checked against its
  certified convex form: on the step profile (K_A = K_B = 5) its minority classifiers collapse
  exactly where the KKT criterion of check 7 (mu >= n_B/N) says so, and are distinct elsewhere.

Ratios R in {1, 10, 100, 1000} straddle the collapse ratio R0 ~ 12.2 of check 7. Exponential
(long-tail) profiles are included for the fixed ETF; there the learnable LPM's tail classes
approach collapse without reaching it (distinct counts), and their cosines are reported.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from proofs_checks.groups import collapse_measurements
from proofs_checks.minority_collapse import minority_state
from proofs_checks.registry import CheckResult, Measurement, Size, register
from proofs_checks.tolerances import (
    BRACKET,
    CERTIFIED_GAP,
    GRAD_TOL,
    NC1,
    NONCONVEX_GAP,
    SOLUTION,
)
from ufm.convex import solve_lpm_convex
from ufm.imbalance import exponential_counts, minority_group, step_counts
from ufm.metrics import class_means, group_cosines, group_spread, nc1, pairwise_cosines
from ufm.problems import FixedETFModel, LayerPeeledModel
from ufm.solvers import solve

__all__ = ["evaluate_fixed", "run"]

E_W, E_H = 1.0, 5.0
K_A, K_B = 5, 5
STEP = {"full": (1000, (1, 10, 100, 1000)), "small": (100, (1, 100))}  # (n_A, ratios)
EXP = {"full": ((10, 1000, 100), (10, 1000, 1000)), "small": ((10, 100, 100),)}


def evaluate_fixed(
    problem: FixedETFModel, h: Tensor, tail: list[int], tag: str
) -> list[Measurement]:
    """Tail class means at the ETF angle -1/(K-1), NC1 = 0."""
    k = problem.num_classes
    means, _, _ = class_means(h, problem.labels, k)
    cos = pairwise_cosines(means[tail])
    off = cos[~torch.eye(len(tail), dtype=torch.bool)]
    return [
        Measurement(
            f"{tag} fixed ETF: max |cos + 1/(K-1)| of tail means",
            float((off + 1 / (k - 1)).abs().max()),
            SOLUTION,
        ),
        Measurement(f"{tag} fixed ETF: NC1", nc1(h, problem.labels, k), NC1),
    ]


def _fixed(counts: np.ndarray, tail: list[int], seed: int, tag: str) -> list[Measurement]:
    problem = FixedETFModel(counts, len(counts) + 1, loss="ce", e_w=E_W, e_h=E_H, etf_seed=seed)
    res = solve(problem, "fast", seed=seed + 1, tol=1e-13, relative=True, max_iter=2000)
    return evaluate_fixed(problem, problem.features(res.x), tail, tag)


def _learnable(counts: np.ndarray, seed: int) -> tuple[LayerPeeledModel, Tensor, float]:
    """Non-convex LPM from a random start: (problem, W (K, d), value)."""
    problem = LayerPeeledModel(counts, len(counts) + 2, loss="ce", e_w=E_W, e_h=E_H)
    res = solve(
        problem, "fast", seed=seed, tol=1e-12, relative=True, grad_tol=GRAD_TOL, max_iter=50_000
    )
    return problem, problem.classifier(res.x), res.objective


def _step_case(n_a: int, ratio: int, seed: int) -> tuple[list[Measurement], dict]:
    counts = step_counts(K_A, n_a, K_B, ratio)
    tag = f"step R={ratio}"
    tail = minority_group(counts).tolist() if ratio > 1 else list(range(K_A, K_A + K_B))
    ms = _fixed(counts, tail, seed, tag)
    state = minority_state(counts, seed=seed)  # certified convex optimum and its multiplier
    collapse = state["mu"] >= state["pi_B"]  # the KKT prediction of check 7
    _, w, value = _learnable(counts, seed)
    bound = state["lower_bound"]
    ms += [
        Measurement(
            f"{tag} learnable: below the convex bound",
            max(bound - value, 0.0) / abs(bound),
            BRACKET,
        ),
        Measurement(
            f"{tag} learnable: above the convex bound",
            max(value - bound, 0.0) / abs(bound),
            NONCONVEX_GAP,
        ),
        *collapse_measurements(w, K_A, K_B, collapse, f"{tag} learnable"),
    ]
    case = {
        "profile": tag,
        "counts": counts.tolist(),
        "kkt_predicts_collapse": collapse,
        "learnable_minority_cosine": group_cosines(w, tail)[0],
        "learnable_minority_spread": group_spread(w, tail),
    }
    return ms, case


def _exp_case(k: int, n_max: int, rho: int, seed: int) -> tuple[list[Measurement], dict]:
    counts = exponential_counts(k, n_max, rho)
    tail = minority_group(counts).tolist()
    tag = f"exp K={k} rho={rho}"
    ms = _fixed(counts, tail, seed, tag)
    cert = solve_lpm_convex(counts, E_W, E_H, tol=CERTIFIED_GAP, seed=seed)
    w, _ = cert.factors(k, (E_W / E_H) ** 0.25)
    case = {
        "profile": tag,
        "counts": counts.tolist(),
        "tail": tail,
        "learnable_tail_cosine": group_cosines(w, tail)[0],
        "etf_cosine": -1 / (k - 1),
    }
    return ms, case


@register(
    "etf_immunity",
    statement="fixed ETF: tail means keep cos -1/(K-1) for every rho; learnable LPM collapses",
    source="Yang et al. 2022 (Theorem 1); Fang et al. 2021 (minority collapse)",
)
def run(size: Size) -> CheckResult:
    ms, cases = [], []
    n_a, ratios = STEP[size]
    for i, ratio in enumerate(ratios):
        case_ms, case = _step_case(n_a, ratio, seed=i)
        ms += case_ms
        cases.append(case)
    for i, (k, n_max, rho) in enumerate(EXP[size]):
        case_ms, case = _exp_case(k, n_max, rho, seed=10 + i)
        ms += case_ms
        cases.append(case)
    return CheckResult.from_measurements(ms, e_w=E_W, e_h=E_H, cases=cases)
