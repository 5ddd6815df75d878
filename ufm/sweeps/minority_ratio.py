"""Minority collapse against imbalance (Fang et al., PNAS 2021), learnable versus fixed ETF.

For each imbalance ratio (R = n_A/n_B of a step profile, rho = n_max/n_min of an exponential
one) the mean pairwise cosine of the minority classifier vectors w_k and of the centred minority
class means is computed two ways:

- line: the certified optimum of the LPM's convex form (`ufm.convex.solve_lpm_convex`), factored
  into W and Hbar (W Hbar^T = Z, balanced factors); exact for d >= K;
- markers: gradient descent on the full model from a random start (`ufm.solvers.solve`), for
  learnable + CE, fixed ETF + CE and fixed ETF + DR, through `ufm.metrics.nc_metrics`.

On a step profile the collapse becomes exact at a finite R0: the minority rows of Z coincide
exactly when the KKT multiplier mu of ||Z||_* <= K sqrt(E_W E_H) reaches n_B/N
(`ufm.convex.NuclearBallLPM.multiplier`); R0 is found by root finding on log R. The fixed ETF
keeps every cosine at -1/(K-1) for every ratio (Yang et al. 2022, Theorem 1).

Results per profile ("step", "exp"): "classes" (K), "line" and "markers" (lists of ratio,
cos_w, cos_h and kkt_excess or gap), "threshold" (R0, step profile only). Drawn by
`figures.minority_ratio_figure`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.optimize import brentq

from ufm.convex import NuclearBallLPM, solve_lpm_convex
from ufm.imbalance import make_profile
from ufm.metrics import group_cosines, nc_metrics
from ufm.problems import FixedETFModel, LayerPeeledModel
from ufm.solvers import solve
from ufm.sweeps.sweep_registry import register_sweep

__all__ = ["DEFAULT", "SMALL", "compute", "lpm_minority_cosines"]

DEFAULT: dict[str, Any] = {
    "step_classes": [5, 5],  # K_A majority, K_B minority classes
    "exp_classes": 10,  # K of the exponential profile
    "e_w": 1.0,
    "e_h": 5.0,
    "ratio_max": 1000.0,  # largest R / rho
    "line_points": 41,  # ratios of the certified line, log-spaced from 1
    "line_n_max": 1_000_000,  # n_A (n_max) of the line: n_B = round(n_A / R) is then exact to 1e-6
    "marker_ratios": [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    "marker_n_max": 1000,  # n_A (n_max) of the gradient-descent runs [samples]
    "dim": 20,  # feature dimension d of the gradient-descent runs
    "tol": 1e-9,  # gap tolerance of gradient descent
    "convex_tol": 1e-11,  # relative certified gap of the line
    "seed": 0,
}
SMALL: dict[str, Any] = DEFAULT | {
    "line_points": 6,
    "marker_ratios": [1, 100],
    "marker_n_max": 100,
    "ratio_max": 100.0,
}


def _counts(kind: str, params: dict[str, Any], n_max: int, ratio: float) -> tuple[np.ndarray, Any]:
    """(counts, minority) of a step or exponential profile; the step's n_B is rounded."""
    if kind == "step":
        k_a, k_b = params["step_classes"]
        n_b = max(1, round(n_max / ratio))
        return np.array([n_max] * k_a + [n_b] * k_b), np.arange(k_a, k_a + k_b)
    profile = make_profile("exp", num_classes=params["exp_classes"], n_max=n_max, ratio=ratio)
    return profile.counts, profile.minority


def lpm_minority_cosines(
    counts: np.ndarray, minority: np.ndarray, e_w: float, e_h: float, tol: float
) -> tuple[float, float, float]:
    """(mean minority cosine of W, of the centred class means, KKT multiplier minus n_B/N) at
    the certified optimum of the LPM's convex form (relative gap `tol`)."""
    res = solve_lpm_convex(counts, e_w, e_h, tol=tol)
    k = len(counts)
    w, hbar = res.factors(k, (e_w / e_h) ** 0.25)
    centred = hbar - hbar.mean(0)  # (K, K) mu_k - mu_G, mu_G the mean of the class means
    mult = NuclearBallLPM(counts, e_w, e_h).multiplier((res.z.T,))
    n_b = counts[minority].max() / counts.sum()
    return group_cosines(w, minority)[0], group_cosines(centred, minority)[0], mult - n_b


def _line(kind: str, params: dict[str, Any]) -> dict[str, list[float]]:
    ratios = np.geomspace(1.0, params["ratio_max"], params["line_points"])
    out: dict[str, list[float]] = {"ratio": [], "cos_w": [], "cos_h": [], "kkt_excess": []}
    for ratio in ratios:
        counts, minority = _counts(kind, params, params["line_n_max"], ratio)
        values = lpm_minority_cosines(
            counts, minority, params["e_w"], params["e_h"], params["convex_tol"]
        )
        out["ratio"].append(float(counts.max() / counts.min()))
        for key, value in zip(("cos_w", "cos_h", "kkt_excess"), values, strict=True):
            out[key].append(float(value))
    return out


def _collapse_threshold(line: dict[str, list[float]], params: dict[str, Any]) -> float | None:
    """R0 of the step profile: where mu - n_B/N changes sign, bracketed by the line's ratios
    and refined by root finding on log R (None when the line never crosses)."""
    excess = np.asarray(line["kkt_excess"])
    cross = np.flatnonzero((excess[:-1] < 0) & (excess[1:] >= 0))
    if len(cross) == 0:
        return None

    def at(log_ratio: float) -> float:
        counts, minority = _counts("step", params, params["line_n_max"], math.exp(log_ratio))
        return lpm_minority_cosines(
            counts, minority, params["e_w"], params["e_h"], params["convex_tol"]
        )[2]

    lo, hi = (math.log(line["ratio"][i]) for i in (cross[0], cross[0] + 1))
    return math.exp(brentq(at, lo, hi, xtol=1e-4))


def _model(name: str, counts: np.ndarray, params: dict[str, Any]) -> Any:
    classifier, loss = name.split("+")
    kw = dict(counts=counts, dim=params["dim"], loss=loss, e_w=params["e_w"], e_h=params["e_h"])
    if classifier == "learnable":
        return LayerPeeledModel(**kw)
    return FixedETFModel(**kw, constraint="sample", etf_seed=params["seed"])


def _descent(name: str, counts: np.ndarray, minority: np.ndarray, params: dict[str, Any]) -> dict:
    """Minority cosines reached by gradient descent on the full model from a random start."""
    problem = _model(name, counts, params)
    target = problem.optimum()
    if target is None:
        target = solve_lpm_convex(
            counts, params["e_w"], params["e_h"], tol=params["convex_tol"]
        ).value
    res = solve(problem, "fast", seed=params["seed"], tol=params["tol"], target=target)
    with torch.no_grad():
        m = nc_metrics(
            problem.features(res.x),
            problem.labels,
            problem.classifier(res.x),
            num_classes=len(counts),
            minority=minority,
        )
    return {
        "cos_w": m["minority_cosine_w"],
        "cos_h": m["minority_cosine_h"],
        "gap": res.objective - target,
    }


def _markers(kind: str, params: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for name in ("learnable+ce", "etf+ce", "etf+dr"):
        series: dict[str, list[float]] = {"ratio": [], "cos_w": [], "cos_h": [], "gap": []}
        for ratio in params["marker_ratios"]:
            counts, minority = _counts(kind, params, params["marker_n_max"], ratio)
            series["ratio"].append(float(counts.max() / counts.min()))
            for key, value in _descent(name, counts, minority, params).items():
                series[key].append(float(value))
        out[name] = series
    return out


def _profile(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    line = _line(kind, params)
    return {
        "classes": len(_counts(kind, params, params["line_n_max"], 1.0)[0]),
        "line": line,
        "markers": _markers(kind, params),
        "threshold": _collapse_threshold(line, params) if kind == "step" else None,
    }


@register_sweep(
    "minority-collapse",
    "minority cosine against the imbalance ratio",
    default=DEFAULT,
    small=SMALL,
)
def compute(params: dict[str, Any]) -> dict[str, Any]:
    """Lines, markers and (step profile) the collapse threshold R0, for both profiles."""
    return {kind: _profile(kind, params) for kind in ("step", "exp")}
