"""Check 6: the convex relaxation of the layer-peeled model is exact (Fang et al., PNAS 2021).

The LPM  min_{W,H} (1/N) sum CE(W h_{k,i}, k)  s.t.  (1/K) sum ||w_k||^2 <= E_W,
(1/K) sum_k (1/n_k) sum_i ||h_{k,i}||^2 <= E_H  equals, for d >= K, the convex program

    min_Z sum_k (n_k/N) CE(z_k, k)   s.t.   ||Z||_* <= K sqrt(E_W E_H)      (Z = W Hbar^T),

and Fang et al.'s SDP over the Gram matrix of [Hbar; W]. Checked by:

1. the convex form solved to a certified relative gap (Frank-Wolfe bound);
2. the non-convex LPM solved from a random start (accelerated projected gradient on (W, H),
   stopped at a stationary point): it is feasible, never below the certified lower bound (that
   would refute the relaxation), and reaches it (relative NONCONVEX_GAP);
3. the nuclear-norm program and the SDP in cvxpy (Clarabel) reach the same value (K <= 10);
4. balanced counts: Z = sqrt(E_W E_H) K/(K-1) (I - 1 1^T/K), and the non-convex solution is a
   simplex ETF with NC1 = 0 and W parallel to the class means (self-duality);
5. K = 10, E_W = 1, E_H = 5, balanced: the optimum is 0.5597815 (Fang et al.), which is also
   Theorem 1's closed form, inside the certified bracket.
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
    CVXPY,
    GRAD_TOL,
    NC1,
    NONCONVEX_GAP,
    REFERENCE_ROUNDING,
    SOLUTION,
)
from ufm.convex import ConvexResult, solve_lpm_convex
from ufm.convex_cvxpy import cvxpy_lpm_nuclear, cvxpy_lpm_sdp
from ufm.imbalance import exponential_counts, step_counts
from ufm.losses import cross_entropy
from ufm.metrics import class_means, etf_distance, nc1, self_duality
from ufm.problems import LayerPeeledModel
from ufm.solvers import solve
from ufm.theory import theorem1_value

__all__ = ["balanced_logits", "evaluate_balanced", "evaluate_nonconvex", "run"]

E_W, E_H = 1.0, 5.0
REFERENCE = 0.5597815  # Fang et al. 2021: K = 10, E_W = 1, E_H = 5, balanced
CVXPY_MAX_K = 10


def _cases(size: Size) -> list[tuple[str, np.ndarray]]:
    if size == "small":
        return [
            ("balanced K=10", np.full(10, 3)),
            ("exp K=5 rho=10", exponential_counts(5, 20, 10)),
        ]
    return [
        ("balanced K=10", np.full(10, 5)),
        ("exp K=10 rho=10", exponential_counts(10, 20, 10)),
        ("exp K=10 rho=100", exponential_counts(10, 100, 100)),
        ("step K=10 R=10", step_counts(5, 20, 5, 10)),
        ("balanced K=100", np.full(100, 2)),
    ]


def balanced_logits(num_classes: int, e_w: float, e_h: float) -> Tensor:
    """Balanced LPM optimum: Z = sqrt(E_W E_H) K/(K-1) (I - 1 1^T/K), (K, K)."""
    k = num_classes
    centering = torch.eye(k, dtype=torch.float64) - 1.0 / k
    return math.sqrt(e_w * e_h) * k / (k - 1) * centering


def _rel(a: Tensor, b: Tensor) -> float:
    return float(torch.linalg.matrix_norm(a - b) / torch.linalg.matrix_norm(b))


def _infeasibility(problem: LayerPeeledModel, w: Tensor, h: Tensor) -> float:
    """Largest relative excess of the two LPM constraints (0 when feasible)."""
    k = problem.num_classes
    w_energy = float((w * w).sum()) / k / problem.e_w - 1
    counts = torch.as_tensor(problem.counts, dtype=h.dtype)
    per_class = torch.zeros(k, dtype=h.dtype).index_add_(0, problem.labels, (h * h).sum(1))
    h_energy = float((per_class / counts).mean()) / problem.e_h - 1
    return max(w_energy, h_energy, 0.0)


def evaluate_nonconvex(
    problem: LayerPeeledModel, w: Tensor, h: Tensor, cert: ConvexResult, tag: str
) -> list[Measurement]:
    """A feasible (W, H) must lie above the certified bound, and reaches it (items 1-2)."""
    value = float(cross_entropy(h @ w.T, problem.labels).mean())
    scale = max(abs(cert.lower_bound), 1.0)
    return [
        Measurement(f"{tag}: convex relative gap", max(cert.relative_gap, 0.0), CERTIFIED_GAP),
        Measurement(f"{tag}: LPM infeasibility", _infeasibility(problem, w, h), BRACKET),
        Measurement(
            f"{tag}: LPM below the convex bound",
            max(cert.lower_bound - value, 0.0) / scale,
            BRACKET,
        ),
        Measurement(
            f"{tag}: LPM above the convex bound",
            max(value - cert.lower_bound, 0.0) / scale,
            NONCONVEX_GAP,
        ),
    ]


def evaluate_balanced(
    problem: LayerPeeledModel, w: Tensor, h: Tensor, z: Tensor, tag: str
) -> list[Measurement]:
    """Balanced counts: closed-form logits, simplex-ETF classifier, NC1 = 0, self-duality."""
    k = problem.num_classes
    means, mu_g, _ = class_means(h, problem.labels, k)
    return [
        Measurement(
            f"{tag}: convex Z vs closed form",
            _rel(z, balanced_logits(k, problem.e_w, problem.e_h)),
            SOLUTION,
        ),
        Measurement(f"{tag}: ETF distance of W", etf_distance(w), SOLUTION),
        Measurement(f"{tag}: NC1", nc1(h, problem.labels, k), NC1),
        Measurement(
            f"{tag}: self-duality W vs class means", self_duality(w, means - mu_g), SOLUTION
        ),
    ]


def _cvxpy(counts: np.ndarray, cert: ConvexResult, tag: str) -> list[Measurement]:
    nuclear, _ = cvxpy_lpm_nuclear(counts, E_W, E_H, solver="CLARABEL")
    sdp, _ = cvxpy_lpm_sdp(counts, E_W, E_H, solver="CLARABEL")
    scale = abs(cert.value)
    return [
        Measurement(
            f"{tag}: cvxpy nuclear-norm vs certified", abs(nuclear - cert.value) / scale, CVXPY
        ),
        Measurement(f"{tag}: cvxpy SDP vs certified", abs(sdp - cert.value) / scale, CVXPY),
    ]


def _reference(cert: ConvexResult) -> list[Measurement]:
    closed = theorem1_value(10, E_W, E_H)
    outside = max(cert.lower_bound - closed, closed - cert.value, 0.0)
    return [
        Measurement(
            "balanced K=10: optimum vs 0.5597815", abs(cert.value - REFERENCE), REFERENCE_ROUNDING
        ),
        Measurement("balanced K=10: closed form outside certified bracket", outside, BRACKET),
    ]


def _case(name: str, counts: np.ndarray, seed: int) -> tuple[list[Measurement], dict[str, object]]:
    k = len(counts)
    cert = solve_lpm_convex(counts, E_W, E_H, tol=CERTIFIED_GAP, seed=seed)
    problem = LayerPeeledModel(counts, k + 2, loss="ce", e_w=E_W, e_h=E_H)
    res = solve(
        problem, "fast", seed=seed + 1, tol=1e-12, relative=True, grad_tol=GRAD_TOL, max_iter=50_000
    )
    w, h = problem.classifier(res.x), problem.features(res.x)
    ms = evaluate_nonconvex(problem, w, h, cert, name)
    if k <= CVXPY_MAX_K:
        ms += _cvxpy(counts, cert, name)
    if len(set(counts.tolist())) == 1:
        ms += evaluate_balanced(problem, w, h, cert.z, name)
        if k == 10:
            ms += _reference(cert)
    case = {
        "case": name,
        "N": int(counts.sum()),
        "convex_value": cert.value,
        "convex_lower_bound": cert.lower_bound,
        "convex_seconds": cert.seconds,
        "lpm_value": res.objective,
        "lpm_iterations": res.iterations,
        "lpm_reason": res.reason,
    }
    return ms, case


@register(
    "lpm_relaxation",
    statement="LPM = its nuclear-norm / SDP relaxation (d>=K); balanced: ETF, 0.5597815 at K=10",
    source="Fang et al. 2021 (convex relaxation and SDP of the LPM)",
)
def run(size: Size) -> CheckResult:
    ms, cases = [], []
    for i, (name, counts) in enumerate(_cases(size)):
        case_ms, case = _case(name, counts, seed=i)
        ms += case_ms
        cases.append(case)
    return CheckResult.from_measurements(ms, e_w=E_W, e_h=E_H, cases=cases)
