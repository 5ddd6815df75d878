"""Check 9: the regularized UFM under imbalance collapses within classes but is not an ETF; with
balanced classes it is the simplex ETF of the closed form.

Model (Hong & Ling 2023; Zhu et al. 2021): (1/N) sum CE(W h + b, k) + c (lambda_W ||W||^2 +
lambda_H ||H||^2 + lambda_b ||b||^2), solved by gradient descent on (W, H, b) from a random
start and compared with the certified convex form (check 8). Checked:

- imbalanced (exponential counts): the value reaches the convex lower bound (a global minimum);
  NC1 = 0 (every feature equals its class mean); but the class means and the classifier are not
  an ETF (ETF distances >= ETF_GAP) and the angles depend on n_k: the cosine between the two
  largest classes differs from that between the two smallest by >= ETF_GAP;
- balanced (closed form, `ufm.theory.balanced_regularized_optimum`): logits of the class means
  W Hbar^T = a* (I - 1 1^T/K), squared classifier norms sqrt(lambda_H/lambda_W) sqrt(n) a*
  (K-1)/K, a simplex ETF, NC1 = 0, the closed-form value inside [convex bound, value reached].
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from proofs_checks.registry import CheckResult, Measurement, Size, register
from proofs_checks.tolerances import (
    BRACKET,
    CERTIFIED_GAP,
    GRAD_TOL,
    NC1,
    NONCONVEX_GAP,
    SOLUTION,
)
from ufm.convex import ConvexResult, solve_regularized_convex
from ufm.imbalance import exponential_counts
from ufm.metrics import class_means, etf_distance, nc1, pairwise_cosines
from ufm.problems import RegularizedUFM
from ufm.solvers import SolveResult, solve
from ufm.theory import balanced_regularized_optimum

__all__ = ["evaluate_balanced", "evaluate_imbalanced", "run"]

LAMBDA_W, LAMBDA_H, LAMBDA_B = 5e-4, 5e-4, 1e-3
ETF_GAP = 1e-2  # imbalanced geometries measured are 0.1-0.5 away from the ETF
IMBALANCED = {"full": ((10, 100, 10), (10, 100, 100)), "small": ((6, 30, 10),)}  # (K, n_max, rho)
BALANCED = {"full": (10, 20), "small": (5, 10)}  # (K, n)


def _solve(counts: np.ndarray, convention: str, seed: int) -> tuple[RegularizedUFM, SolveResult]:
    problem = RegularizedUFM(
        counts,
        len(counts) + 2,
        lambda_w=LAMBDA_W,
        lambda_h=LAMBDA_H,
        lambda_b=LAMBDA_B,
        convention=convention,
    )
    res = solve(
        problem, "fast", seed=seed, tol=1e-13, relative=True, grad_tol=GRAD_TOL, max_iter=50_000
    )
    return problem, res


def _certificate(problem: RegularizedUFM) -> ConvexResult:
    """The convex form of `problem` (its bias penalty carries the convention's factor)."""
    bias_penalty = problem.lambda_b * (1.0 if problem.convention == "plain" else 0.5)
    return solve_regularized_convex(problem.counts, problem.lam, bias_penalty, tol=CERTIFIED_GAP)


def convex_bracket(objective: float, lower_bound: float, tag: str) -> list[Measurement]:
    """A non-convex solver's value against the certified convex lower bound: never below it
    (beyond rounding), and above it by at most NONCONVEX_GAP (relative)."""
    scale = abs(lower_bound)
    return [
        Measurement(
            f"{tag}: below the convex bound", max(lower_bound - objective, 0.0) / scale, BRACKET
        ),
        Measurement(
            f"{tag}: above the convex bound",
            max(objective - lower_bound, 0.0) / scale,
            NONCONVEX_GAP,
        ),
    ]


def evaluate_imbalanced(
    problem: RegularizedUFM, x: tuple[Tensor, ...], tag: str
) -> list[Measurement]:
    """NC1 = 0 but no ETF: distances from the ETF and count-dependent angles."""
    w, h = problem.classifier(x), problem.features(x)
    k = problem.num_classes
    means, mu_g, _ = class_means(h, problem.labels, k)
    cos = pairwise_cosines(w)
    head_tail = abs(float(cos[0, 1] - cos[k - 2, k - 1]))
    return [
        Measurement(f"{tag}: NC1", nc1(h, problem.labels, k), NC1),
        Measurement(
            f"{tag}: ETF distance of class means", etf_distance(means - mu_g), ETF_GAP, ">="
        ),
        Measurement(f"{tag}: ETF distance of W", etf_distance(w), ETF_GAP, ">="),
        Measurement(f"{tag}: |cos(w_1,w_2) - cos(w_K-1,w_K)|", head_tail, ETF_GAP, ">="),
    ]


def evaluate_balanced(
    problem: RegularizedUFM, x: tuple[Tensor, ...], tag: str
) -> list[Measurement]:
    """Closed-form logits and norms, a simplex ETF and NC1 = 0 (balanced counts)."""
    w, h = problem.classifier(x), problem.features(x)
    k, n = problem.num_classes, int(problem.counts[0])
    _, a = balanced_regularized_optimum(k, n, problem.lam)
    means, _, _ = class_means(h, problem.labels, k, global_mean="classes")
    logits = w @ means.T  # (K, K): column k = W hbar_k
    target = a * (torch.eye(k, dtype=torch.float64) - 1.0 / k)
    norms = (w * w).sum(1)  # (K,)
    norm_target = math.sqrt(problem.lambda_h / problem.lambda_w) * math.sqrt(n) * a * (k - 1) / k
    return [
        Measurement(
            f"{tag}: W Hbar^T vs a*(I - 11^T/K)",
            float(torch.linalg.matrix_norm(logits - target) / torch.linalg.matrix_norm(target)),
            SOLUTION,
        ),
        Measurement(
            f"{tag}: ||w_k||^2 vs closed form",
            float((norms / norm_target - 1).abs().max()),
            SOLUTION,
        ),
        Measurement(f"{tag}: ETF distance of W", etf_distance(w), SOLUTION),
        Measurement(f"{tag}: NC1", nc1(h, problem.labels, k), NC1),
    ]


def _imbalanced(k: int, n_max: int, rho: int, seed: int) -> tuple[list[Measurement], dict]:
    counts = exponential_counts(k, n_max, rho)
    problem, res = _solve(counts, "plain", seed)
    cert = _certificate(problem)
    tag = f"exp K={k} rho={rho}"
    ms = convex_bracket(res.objective, cert.lower_bound, tag) + evaluate_imbalanced(
        problem, res.x, tag
    )
    cos = pairwise_cosines(problem.classifier(res.x))
    case = {
        "case": tag,
        "counts": counts.tolist(),
        "iterations": res.iterations,
        "reason": res.reason,
        "cos_w_head_pair": float(cos[0, 1]),
        "cos_w_tail_pair": float(cos[k - 2, k - 1]),
        "etf_cosine": -1 / (k - 1),
    }
    return ms, case


def _balanced(k: int, n: int, seed: int) -> tuple[list[Measurement], dict]:
    counts = np.full(k, n)
    problem, res = _solve(counts, "half", seed)
    cert = _certificate(problem)
    value, a = balanced_regularized_optimum(k, n, problem.lam)
    outside = max(cert.lower_bound - value, value - res.objective, 0.0)
    tag = f"balanced K={k} n={n}"
    ms = [Measurement(f"{tag}: closed form outside [bound, value]", outside, BRACKET)]
    ms += convex_bracket(res.objective, cert.lower_bound, tag) + evaluate_balanced(
        problem, res.x, tag
    )
    case = {
        "case": tag,
        "closed_form_value": value,
        "a_star": a,
        "value": res.objective,
        "convex_lower_bound": cert.lower_bound,
        "iterations": res.iterations,
    }
    return ms, case


@register(
    "regularized_imbalance",
    statement="regularized UFM: NC1 exact, no ETF under imbalance; balanced = closed-form ETF",
    source="Hong & Ling 2023; Zhu et al. 2021 (balanced closed form)",
)
def run(size: Size) -> CheckResult:
    ms, cases = [], []
    for i, (k, n_max, rho) in enumerate(IMBALANCED[size]):
        case_ms, case = _imbalanced(k, n_max, rho, seed=i)
        ms += case_ms
        cases.append(case)
    case_ms, case = _balanced(*BALANCED[size], seed=9)
    return CheckResult.from_measurements(
        ms + case_ms,
        lambda_w=LAMBDA_W,
        lambda_h=LAMBDA_H,
        lambda_b=LAMBDA_B,
        cases=[*cases, case],
        note=f"'not an ETF' means a distance >= {ETF_GAP}",
    )
