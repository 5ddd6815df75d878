"""Hong & Ling's phase diagram: minority classifiers collapse exactly when lambda >= sqrt(n_B)/N.

For several step profiles (K_A classes of n_A samples, K_B of n_B) the regularized UFM with bias
(Hong & Ling 2023; lambda = 2 sqrt(lambda_W lambda_H), `ufm.problems.effective_lambda`) is
solved across lambda / lambda*, lambda* = sqrt(n_B)/N (`ufm.theory.hong_ling_threshold`):

- lines: the certified optimum of its convex form (`ufm.convex.solve_regularized_convex`, bias
  free and unpenalized); the classifier is W = U S^{1/2} from the SVD Y = U S V^T of
  Y = Z D^{1/2} (the balanced factors, `ufm.convex.ConvexResult.factors` with the counts);
- markers: gradient descent on the full (W, H, b) model from a random start, first setting.

The minority spread is sqrt(mean_{k in B} ||w_k - wbar_B||^2) / sqrt(mean_k ||w_k||^2)
(`ufm.metrics.group_spread`, rms): zero exactly when the minority classifiers coincide.

Results: "settings", one entry per setting with its "threshold" lambda*, the "spread" at each
fraction and (first setting) the "marker_spread". Drawn by `figures.hong_ling_phase_figure`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ufm.convex import solve_regularized_convex
from ufm.imbalance import minority_group
from ufm.metrics import group_spread
from ufm.problems import RegularizedUFM
from ufm.solvers import solve
from ufm.sweeps.sweep_registry import register_sweep
from ufm.theory import hong_ling_threshold

__all__ = ["DEFAULT", "SMALL", "compute"]

DEFAULT: dict[str, Any] = {
    # (K_A, n_A, K_B, n_B); the first two are Hong & Ling's examples
    "settings": [[5, 500, 5, 100], [3, 500, 7, 100], [7, 500, 3, 100], [5, 1000, 5, 50]],
    "fractions": [  # lambda / lambda*, dense near the threshold
        *[0.3, 0.42, 0.55, 0.7, 0.85, 0.95, 0.98, 0.99, 0.995, 0.999],
        *[1.001, 1.01, 1.05, 1.15, 1.35, 1.65, 2.0],
    ],
    "marker_fractions": [0.5, 0.8, 0.95, 1.05, 1.2, 1.5],  # gradient descent, first setting
    "dim": 20,  # feature dimension of gradient descent
    "tol": 1e-10,  # relative certified gap of the convex form
    "seed": 0,
}
SMALL: dict[str, Any] = DEFAULT | {
    "settings": [[2, 40, 2, 10]],
    "fractions": [0.5, 0.99, 1.01, 1.5],
    "marker_fractions": [0.5, 1.5],
    "tol": 1e-8,
}


def _counts(setting: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(counts, minority group) of the step profile (K_A, n_A, K_B, n_B)."""
    k_a, n_a, k_b, n_b = setting
    counts = np.array([n_a] * k_a + [n_b] * k_b)
    return counts, minority_group(counts)


def _convex_spread(counts: np.ndarray, minority: np.ndarray, lam: float, tol: float) -> float:
    res = solve_regularized_convex(counts, lam, 0.0, tol=tol)
    w, _ = res.factors(len(counts), 1.0, counts=counts)  # W = U S^{1/2}, Y = Z D^{1/2}
    return group_spread(w, minority, rms=True)


def _descent_spread(counts: np.ndarray, minority: np.ndarray, lam: float, params: dict) -> float:
    problem = RegularizedUFM(
        counts=counts, dim=params["dim"], lambda_w=lam / 2, lambda_h=lam / 2, lambda_b=0.0
    )
    res = solve(problem, "fast", seed=params["seed"], tol=1e-10, grad_tol=1e-9, max_iter=20_000)
    return group_spread(problem.classifier(res.x), minority, rms=True)


def _setting(setting: list[int], params: dict[str, Any], markers: bool) -> dict[str, Any]:
    counts, minority = _counts(setting)
    threshold = hong_ling_threshold(setting[3], int(counts.sum()))
    spread = [
        _convex_spread(counts, minority, f * threshold, params["tol"]) for f in params["fractions"]
    ]
    out = {"setting": setting, "threshold": threshold, "spread": spread}
    if markers:
        out["marker_spread"] = [
            _descent_spread(counts, minority, f * threshold, params)
            for f in params["marker_fractions"]
        ]
    return out


@register_sweep(
    "hong-ling", "minority spread against lambda / lambda*", default=DEFAULT, small=SMALL
)
def compute(params: dict[str, Any]) -> dict[str, Any]:
    """Convex spreads for every setting, gradient-descent spreads for the first."""
    return {
        "settings": [_setting(s, params, markers=i == 0) for i, s in enumerate(params["settings"])]
    }
