"""Check 10: the SELI geometry is the lambda -> 0 limit of the regularized UFM (Thrampoulidis,
Kini, Vakilian & Behnia, NeurIPS 2022), and minority classes never collapse on the way.

SELI, with Zbar = I - 1 1^T/K and D = diag(n_k): the logits of the class means are
proportional to Zbar and W W^T to (Zbar D Zbar)^{1/2} (`ufm.theory.seli_*`, Frobenius
normalised). The model is the bias-free regularized UFM, whose convex form is

    min_Z (1/N) sum_k n_k CE(z_k, k) + lambda ||Z D^{1/2}||_*      (W W^T ∝ (Y Y^T)^{1/2},
                                                                    Y = Z D^{1/2}).

As lambda -> 0 its solutions grow like log(1/lambda) in the direction of the max-margin program
min ||Z D^{1/2}||_* s.t. z_kk - z_jk >= 1, whose solution is Zbar. Checked:

1. the max-margin program (cvxpy, Clarabel) gives exactly the SELI logits and Gram matrix, and
   the value ||Zbar D^{1/2}||_*;
2. along lambda = 10^-j sqrt(n_min)/N, j = 1..7, the certified solutions' distances to both SELI
   forms decrease strictly, and decrease like 1/||Z||_F: the product distance x ||Z||_F grows by
   less than RATE_GROWTH while ||Z||_F grows by at least SCALE_GROWTH (a limit other than SELI
   would make the product grow in proportion to ||Z||_F), and the local decay exponent
   -d log(distance) / d log ||Z||_F over the last step of the path stays >= LAST_EXPONENT (a
   limit at distance e > 0 drives it to 0: e = 0.05 gives 0.35-0.42 on the measured path);
3. the minority rows of Z stay apart (spread >= SEPARATED) for every lambda and in the limit.

With an unregularized bias the limit is a different geometry (the bias grows like log(1/lambda)
too); that model is not the one SELI describes.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from proofs_checks.registry import CheckResult, Measurement, Size, register
from proofs_checks.tolerances import CVXPY, SEPARATED
from ufm.convex import gram_factors, solve_regularized_convex
from ufm.convex_cvxpy import cvxpy_ufm_svm
from ufm.imbalance import exponential_counts, minority_group, step_counts
from ufm.metrics import group_spread
from ufm.theory import hong_ling_threshold, seli_classifier_gram, seli_mean_logits

__all__ = ["distances", "evaluate_limit", "evaluate_path", "run"]

EXPONENTS = {"full": (1, 2, 3, 4, 5, 6, 7), "small": (1, 4, 7)}
PROFILES = {
    "full": (
        ("step K_A=K_B=5 R=5", step_counts(5, 500, 5, 5)),
        ("exp K=10 rho=10", exponential_counts(10, 100, 10)),
    ),
    "small": (("step K_A=K_B=5 R=5", step_counts(5, 100, 5, 5)),),
}
LIMIT = 1e-5  # max-margin program by Clarabel (its accuracy ~1e-8 on the value, ~1e-7 on Z)
# Relative gap of the path's certificates. At small lambda the bound's radius f/lambda multiplies
# ||G||_op - lambda by 1/lambda, so 1e-10 costs thousands of iterations; the distances compared
# here change by >= 3e-3 per decade and agree between gaps 1e-8 and 1e-9 to ~1e-9.
PATH_GAP = 1e-8
MONOTONE_SLACK = 1e-7  # distances at gap PATH_GAP are accurate to ~1e-9
# Convergence to SELI at rate O(1/||Z||) (up to log factors) keeps distance x ||Z||_F nearly
# constant (measured growth 1.3-1.4 over the path); a limit at distance e > 0 from SELI would make
# it grow like e ||Z||_F, i.e. by up to SCALE_GROWTH. RATE_GROWTH separates the two.
RATE_GROWTH = 2.0
SCALE_GROWTH = 3.0
# Local exponent of distance ~ ||Z||_F^-beta over the last step: measured 0.78-0.84 (rising
# towards 1 along the path as the log factors fade), 0.76 over the small size's last step;
# adding a limit 0.05 away from SELI to the measured distances gives 0.35-0.42.
LAST_EXPONENT = 0.6


def distances(z: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    """(distance of the normalised Gram, of the normalised logits) to the SELI forms.

    The Gram is W W^T ∝ (Y Y^T)^{1/2}, Y = Z D^{1/2} (`ufm.convex.gram_factors`)."""
    root, _ = gram_factors(z, counts)
    gram = np.linalg.norm(root / np.linalg.norm(root) - seli_classifier_gram(counts))
    logits = np.linalg.norm(z / np.linalg.norm(z) - seli_mean_logits(len(counts)))
    return float(gram), float(logits)


def evaluate_limit(z: np.ndarray, value: float, counts: np.ndarray, tag: str) -> list[Measurement]:
    """Item 1 and the limit part of item 3."""
    d_gram, d_logits = distances(z, counts)
    k = len(counts)
    zbar = np.eye(k) - np.ones((k, k)) / k
    nuclear = float(np.linalg.svd(zbar * np.sqrt(counts)[None, :], compute_uv=False).sum())
    spread = group_spread(torch.as_tensor(z), minority_group(counts))
    return [
        Measurement(f"{tag} max-margin: Gram vs SELI", d_gram, LIMIT),
        Measurement(f"{tag} max-margin: logits vs SELI", d_logits, LIMIT),
        Measurement(
            f"{tag} max-margin: value vs ||Zbar D^1/2||_*", abs(value / nuclear - 1), CVXPY
        ),
        Measurement(f"{tag} max-margin: minority spread", spread, SEPARATED, ">="),
    ]


def evaluate_path(rows: list[dict[str, float]], tag: str) -> list[Measurement]:
    """Items 2-3 from the path rows (lambda decreasing): lam, scale, d_gram, d_logits, spread."""
    ms = []
    for key in ("d_gram", "d_logits"):
        d = [r[key] for r in rows]
        rise = max(b - a for a, b in itertools.pairwise(d))
        product = [r[key] * r["scale"] for r in rows]
        ms += [
            Measurement(
                f"{tag}: largest increase of {key} as lambda falls", max(rise, 0.0), MONOTONE_SLACK
            ),
            Measurement(
                f"{tag}: growth of {key} x ||Z||_F", max(product) / product[0], RATE_GROWTH
            ),
            Measurement(
                f"{tag}: decay exponent of {key} in ||Z||_F, last step",
                _exponent(d[-2], d[-1], rows[-2]["scale"], rows[-1]["scale"]),
                LAST_EXPONENT,
                ">=",
            ),
        ]
    ms.append(
        Measurement(
            f"{tag}: growth of ||Z||_F", rows[-1]["scale"] / rows[0]["scale"], SCALE_GROWTH, ">="
        )
    )
    ms.append(
        Measurement(
            f"{tag}: smallest minority spread on the path",
            min(r["spread"] for r in rows),
            SEPARATED,
            ">=",
        )
    )
    return ms


def _exponent(d0: float, d1: float, s0: float, s1: float) -> float:
    """beta in d ~ s^-beta between (s0, d0) and (s1, d1); NaN where it is undefined."""
    if min(d0, d1) <= 0 or s1 <= s0:
        return math.nan
    return -math.log(d1 / d0) / math.log(s1 / s0)


def _path(counts: np.ndarray, size: Size) -> list[dict[str, float]]:
    top = hong_ling_threshold(int(counts.min()), int(counts.sum()))
    rows = []
    for j in EXPONENTS[size]:
        lam = top * 10.0**-j
        cert = solve_regularized_convex(counts, lam, tol=PATH_GAP, seed=j, bias=False)
        z = cert.z.numpy()
        d_gram, d_logits = distances(z, counts)
        rows.append(
            {
                "lambda": lam,
                "scale": float(np.linalg.norm(z)),
                "d_gram": d_gram,
                "d_logits": d_logits,
                "spread": group_spread(cert.z, minority_group(counts)),
                "iterations": cert.iterations,
                "relative_gap": cert.relative_gap,
            }
        )
    return rows


@register(
    "seli",
    statement="regularized UFM, lambda->0: Gram and mean logits -> SELI; minority never collapses",
    source="Thrampoulidis et al. 2022 (SELI)",
)
def run(size: Size) -> CheckResult:
    ms, details = [], {}
    for tag, counts in PROFILES[size]:
        value, z = cvxpy_ufm_svm(counts)
        ms += evaluate_limit(z, value, counts, tag)
        rows = _path(counts, size)
        ms += evaluate_path(rows, tag)
        details[tag] = {"counts": counts.tolist(), "path": rows}
    return CheckResult.from_measurements(ms, profiles=details)
