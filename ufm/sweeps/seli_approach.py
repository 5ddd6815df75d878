"""SELI (Thrampoulidis et al., NeurIPS 2022): the lambda -> 0 geometry of the bias-free UFM.

For long-tailed counts the bias-free regularized UFM is solved to a certified optimum at
lambdas from large to small (`ufm.convex.solve_regularized_convex(..., bias=False)`). With
Y = Z D^{1/2} = U S V^T the classifier Gram matrix is W W^T = U S U^T (balanced factors,
`ufm.convex.ConvexResult.grams`), kept normalized (Frobenius norm 1). Its limit is compared with

- the max-margin program that lambda -> 0 leads to (`ufm.convex_cvxpy.cvxpy_ufm_svm`), its Gram
  by the same `ufm.convex.gram_factors`, and
- the SELI closed form (Zbar D Zbar)^{1/2}, Zbar = I - 1 1^T/K (`ufm.theory.seli_classifier_gram`),
  with mean logits proportional to Zbar (`ufm.theory.seli_mean_logits`).

The approach is slow: the margins of the regularized solutions differ by about
log(n_k)/log(1/lambda), so the Gram matrix is still visibly off at lambda = 1e-8 while the
max-margin solution matches SELI to solver precision. A model with a free bias has a different
limit (the bias absorbs part of the imbalance), which is why the bias is removed here.

Results: "counts", "minority", the "path" (per lambda: normalized "gram", "gram_distance" and
"logit_distance" to SELI, "minority_cos"), the max-margin "limit" and "seli" itself. Drawn by
`figures.seli_approach_figure`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ufm.convex import gram_factors, solve_regularized_convex
from ufm.convex_cvxpy import cvxpy_ufm_svm
from ufm.imbalance import make_profile
from ufm.metrics import gram_group_cosines
from ufm.sweeps.sweep_registry import register_sweep
from ufm.theory import seli_classifier_gram, seli_mean_logits

__all__ = ["DEFAULT", "SMALL", "compute"]

DEFAULT: dict[str, Any] = {
    "classes": 10,
    "n_max": 5000,  # CIFAR-10-LT counts at rho = 100
    "ratio": 100.0,
    "lambdas": [3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9],
    "tol": 1e-9,  # relative certified gap of the convex form
    "heatmap_lambdas": [1e-3, 1e-9],  # drawn next to the max-margin limit and SELI
}
SMALL: dict[str, Any] = DEFAULT | {
    "classes": 4,
    "n_max": 100,
    "ratio": 10.0,
    "lambdas": [1e-2, 1e-4],
    "heatmap_lambdas": [1e-2, 1e-4],
}


def _unit(m: np.ndarray) -> np.ndarray:
    """m / ||m||_F; NaN when m = 0 (everything collapsed to the origin)."""
    norm = np.linalg.norm(m)
    return m / norm if norm > 0 else np.full_like(m, np.nan)


def _solve(counts: np.ndarray, lam: float, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(normalized Gram of W, normalized mean logits Z) of the certified bias-free optimum."""
    res = solve_regularized_convex(counts, lam, 0.0, tol=tol, bias=False)
    return _unit(res.grams(counts)[0]), _unit(res.z.numpy())


@register_sweep(
    "seli",
    "classifier Gram matrix as lambda -> 0 versus SELI",
    default=DEFAULT,
    small=SMALL,
)
def compute(params: dict[str, Any]) -> dict[str, Any]:
    """Gram matrices and distances to SELI along lambda, and the max-margin limit."""
    profile = make_profile(
        "exp", num_classes=params["classes"], n_max=params["n_max"], ratio=params["ratio"]
    )
    counts, minority = profile.counts, profile.minority
    seli_gram = seli_classifier_gram(counts)
    seli_z = seli_mean_logits(len(counts))
    out: dict[str, Any] = {"counts": counts.tolist(), "minority": minority.tolist(), "path": []}
    for lam in params["lambdas"]:
        gram, z = _solve(counts, lam, params["tol"])
        out["path"].append(
            {
                "lambda": lam,
                "gram": gram.tolist(),
                "gram_distance": float(np.linalg.norm(gram - seli_gram)),
                "logit_distance": float(np.linalg.norm(z - seli_z)),
                "minority_cos": gram_group_cosines(gram, minority)[0],
            }
        )
    _, z_svm = cvxpy_ufm_svm(counts)
    svm_gram = _unit(gram_factors(z_svm, counts)[0])
    out["limit"] = {
        "gram": svm_gram.tolist(),
        "gram_distance": float(np.linalg.norm(svm_gram - seli_gram)),
        "logit_distance": float(np.linalg.norm(_unit(z_svm) - seli_z)),
        "minority_cos": gram_group_cosines(svm_gram, minority)[0],
    }
    out["seli"] = {
        "gram": seli_gram.tolist(),
        "minority_cos": gram_group_cosines(seli_gram, minority)[0],
    }
    return out
