"""Check 8: the minority-collapse threshold of the regularized UFM (Hong & Ling 2023).

Model: (1/N) sum CE(W h_{k,i} + b, k) + c (lambda_W ||W||_F^2 + lambda_H ||H||_F^2) with c = 1
("plain", Hong & Ling's code) or c = 1/2 ("half"). Its convex form (d >= K) is

    min_{Y,b} (1/N) sum_k n_k CE(y_k/sqrt(n_k) + b, k) + lambda ||Y||_*,   Y = Z D^{1/2},

lambda = 2 sqrt(lambda_W lambda_H) (plain) or sqrt(lambda_W lambda_H) (half). For a step profile
(K_A classes of n_A, K_B of n_B) the K_B minority classifiers collapse to one vector iff

    lambda >= sqrt(n_B) / N.

(The derivation is check 7's with lambda in place of mu: the B x B block of the gradient in Y is
(sqrt(n_B)/N)(P - I), whose centred part has norm sqrt(n_B)/N (1 - (p_s - p_o)), p_s and p_o
the probabilities a minority class mean puts on its own and on another minority class; it must
equal lambda when the minority rows are distinct, and p_s = p_o when they are equal.)

Checked at 0.9 and 1.1 times the threshold, for three settings including (5, 500, 5, 100)
(threshold 0.0033333) and (3, 500, 7, 100) (0.0045455):

1. by the convex form, solved to a certified gap: minority rows of Z equal above, distinct
   below; majority rows distinct on both sides (it is minority collapse, not total collapse);
   and the identity of the derivation (above) on each side;
2. by gradient descent on the full (W, H, b) model from a random start, in both conventions
   with different splits lambda_W / lambda_H of the same lambda: the value reaches the convex
   lower bound (so this stationary point is a global minimum), W W^T equals the convex
   prediction sqrt(lambda_H/lambda_W) (Y Y^T)^{1/2}, and the minority rows of W collapse
   exactly on the predicted side.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from proofs_checks.groups import collapse_measurements
from proofs_checks.minority_collapse import minority_probabilities
from proofs_checks.registry import CheckResult, Measurement, Size, register
from proofs_checks.regularized_imbalance import convex_bracket
from proofs_checks.tolerances import (
    CERTIFIED_GAP,
    COLLAPSED,
    GRAD_TOL,
    SOLUTION,
)
from ufm.convex import ConvexResult, solve_regularized_convex
from ufm.imbalance import minority_group, step_counts
from ufm.metrics import group_spread
from ufm.problems import RegularizedUFM, effective_lambda
from ufm.solvers import solve
from ufm.theory import hong_ling_threshold

__all__ = [
    "derivation_measurement",
    "penalties",
    "run",
]

# lambda vs its derived expression at a certified optimum (relative gap 1e-10): first order in
# the distance to the optimum, measured 5e-12..1e-10.
MULTIPLIER = 1e-6
SETTINGS = {  # (K_A, n_A, K_B, n_B)
    "full": ((5, 500, 5, 100), (3, 500, 7, 100), (4, 300, 6, 50)),
    "small": ((5, 50, 5, 10), (3, 50, 7, 10)),
}
FACTORS = (0.9, 1.1)
CONVENTIONS = ("plain", "half")


def penalties(lam: float, convention: str) -> tuple[float, float]:
    """(lambda_W, lambda_H) with effective lambda `lam`, split differently per convention."""
    pair = (lam / 2, lam / 2) if convention == "plain" else (4 * lam, lam / 4)
    if not math.isclose(effective_lambda(*pair, convention), lam, rel_tol=1e-12):
        raise AssertionError(f"penalties {pair} do not give lambda={lam} ({convention})")
    return pair


def derivation_measurement(
    cert: ConvexResult, lam: float, threshold: float, k_a: int, collapse: bool, tag: str
) -> Measurement:
    """The derivation's identity at the optimum: without collapse the centred minority block of
    the gradient in Y is active, lambda = (sqrt(n_B)/N)(1 - (p_s - p_o)); with collapse, p_s = p_o.

    p_s, p_o: mean softmax probability of a minority class mean (with bias) on its own class and
    on another minority class."""
    logits = cert.z.T + (0.0 if cert.bias is None else cert.bias[None, :])  # (K, K), row k
    own, other = minority_probabilities(logits, range(k_a, logits.shape[0]))
    if collapse:
        return Measurement(f"{tag}: p_s - p_o (collapse: 0)", abs(own - other), COLLAPSED)
    derived = threshold * (1 - (own - other))
    return Measurement(
        f"{tag}: lambda vs (sqrt(n_B)/N)(1 - (p_s - p_o))", abs(derived / lam - 1), MULTIPLIER
    )


def _gradient_descent(
    counts: np.ndarray,
    lam: float,
    convention: str,
    cert: ConvexResult,
    collapse: bool,
    k_a: int,
    tag: str,
) -> tuple[list[Measurement], dict]:
    lambda_w, lambda_h = penalties(lam, convention)
    k = len(counts)
    problem = RegularizedUFM(
        counts, k + 2, lambda_w=lambda_w, lambda_h=lambda_h, lambda_b=0.0, convention=convention
    )
    res = solve(
        problem, "fast", seed=7, tol=1e-13, relative=True, grad_tol=GRAD_TOL, max_iter=50_000
    )
    w = problem.classifier(res.x)
    # W W^T at the optimum: sqrt(lambda_H / lambda_W) (Y Y^T)^{1/2}, Y = Z D^{1/2}
    beta = (lambda_h / lambda_w) ** 0.25
    gram = torch.as_tensor(cert.grams(counts, beta)[0]).to(w)
    ms = [
        *convex_bracket(res.objective, cert.lower_bound, tag),
        Measurement(
            f"{tag}: W W^T vs convex prediction",
            float(torch.linalg.matrix_norm(w @ w.T - gram) / torch.linalg.matrix_norm(gram)),
            SOLUTION,
        ),
        *collapse_measurements(w, k_a, k - k_a, collapse, tag),
    ]
    info = {
        "convention": convention,
        "lambda_w": lambda_w,
        "lambda_h": lambda_h,
        "iterations": res.iterations,
        "reason": res.reason,
        "value": res.objective,
    }
    return ms, info


def _case(setting: tuple[int, int, int, int], factor: float) -> tuple[list[Measurement], dict]:
    k_a, n_a, k_b, n_b = setting
    counts = step_counts(k_a, n_a, k_b, n_a // n_b)
    threshold = hong_ling_threshold(n_b, int(counts.sum()))
    lam, collapse = factor * threshold, factor >= 1
    tag = f"{setting} {factor:g}x"
    cert = solve_regularized_convex(counts, lam, 0.0, tol=CERTIFIED_GAP)
    ms = collapse_measurements(cert.z, k_a, k_b, collapse, f"{tag} convex")
    ms.append(derivation_measurement(cert, lam, threshold, k_a, collapse, f"{tag} convex"))
    runs = []
    for convention in CONVENTIONS:
        gd_ms, info = _gradient_descent(
            counts, lam, convention, cert, collapse, k_a, f"{tag} GD {convention}"
        )
        ms += gd_ms
        runs.append(info)
    case = {
        "setting": list(setting),
        "threshold": threshold,
        "factor": factor,
        "lambda": lam,
        "convex_value": cert.value,
        "convex_lower_bound": cert.lower_bound,
        "minority_spread_convex": group_spread(cert.z, minority_group(counts)),
        "gradient_descent": runs,
    }
    return ms, case


@register(
    "hong_ling",
    statement="regularized UFM: minority collapse iff 2sqrt(lW lH) >= sqrt(n_B)/N (0.9x, 1.1x)",
    source="Hong & Ling 2023 (minority-collapse threshold)",
)
def run(size: Size) -> CheckResult:
    ms, cases = [], []
    for setting in SETTINGS[size]:
        for factor in FACTORS:
            case_ms, case = _case(setting, factor)
            ms += case_ms
            cases.append(case)
    return CheckResult.from_measurements(ms, conventions=list(CONVENTIONS), cases=cases)
