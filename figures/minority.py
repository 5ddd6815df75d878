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
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy.optimize import brentq

from figures.style import (
    CONFIG_STYLE,
    OKABE_ITO,
    WIDTH_DOUBLE,
    add_caption,
    config_label,
    label_panels,
    new_figure,
    styled,
    subplots_with_legend_row,
)
from ufm.convex import NuclearBallLPM, solve_lpm_convex
from ufm.imbalance import make_profile
from ufm.metrics import group_cosines, nc_metrics
from ufm.problems import FixedETFModel, LayerPeeledModel
from ufm.solvers import solve

__all__ = ["DEFAULT", "SMALL", "compute", "draw", "lpm_minority_cosines"]

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
    "seed": 0,
}
SMALL: dict[str, Any] = DEFAULT | {
    "line_points": 6,
    "marker_ratios": [1, 100],
    "marker_n_max": 100,
    "ratio_max": 100.0,
}
CONVEX_TOL = 1e-11  # relative certified gap of the line


def _counts(kind: str, params: dict[str, Any], n_max: int, ratio: float) -> tuple[np.ndarray, Any]:
    """(counts, minority) of a step or exponential profile; the step's n_B is rounded."""
    if kind == "step":
        k_a, k_b = params["step_classes"]
        n_b = max(1, round(n_max / ratio))
        return np.array([n_max] * k_a + [n_b] * k_b), np.arange(k_a, k_a + k_b)
    profile = make_profile("exp", num_classes=params["exp_classes"], n_max=n_max, ratio=ratio)
    return profile.counts, profile.minority


def lpm_minority_cosines(
    counts: np.ndarray, minority: np.ndarray, e_w: float, e_h: float
) -> tuple[float, float, float]:
    """(mean minority cosine of W, of the centred class means, KKT multiplier minus n_B/N) at
    the certified optimum of the LPM's convex form."""
    res = solve_lpm_convex(counts, e_w, e_h, tol=CONVEX_TOL)
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
        values = lpm_minority_cosines(counts, minority, params["e_w"], params["e_h"])
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
        return lpm_minority_cosines(counts, minority, params["e_w"], params["e_h"])[2]

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
        target = solve_lpm_convex(counts, params["e_w"], params["e_h"], tol=CONVEX_TOL).value
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


def compute(params: dict[str, Any]) -> dict[str, Any]:
    """Lines, markers and (step profile) the collapse threshold R0, for both profiles."""
    return {kind: _profile(kind, params) for kind in ("step", "exp")}


_LEARN = CONFIG_STYLE["learnable+ce"]
_ETF = CONFIG_STYLE["etf+ce"]
FLOOR = 1e-16  # 1 - cos at or below rounding is drawn here
_LEGEND_ORDER = (
    "learnable + CE, certified optimum",
    "learnable + CE, gradient descent",
    "learnable + CE, class means",
    "fixed ETF, Theorem 1",
    "fixed ETF + CE, gradient descent",
    "fixed ETF + DR, gradient descent",
    "collapse threshold $R_0$ (KKT)",
)


def _axis_label(kind: str) -> str:
    if kind == "step":
        return "imbalance ratio  $R = n_A / n_B$"
    return "imbalance ratio  $\\rho = n_{max} / n_{min}$"


def _learnable(ax: Axes, data: dict[str, Any], key: str, transform: Any = None) -> None:
    """The certified line and the gradient-descent markers of learnable + CE."""
    f = transform or (lambda v: np.asarray(v))
    line, marks = data["line"], data["markers"]["learnable+ce"]
    ax.plot(
        line["ratio"],
        f(line[key]),
        color=_LEARN["color"],
        label="learnable + CE, certified optimum",
    )
    ax.plot(
        marks["ratio"],
        f(marks[key]),
        ls="none",
        marker=_LEARN["marker"],
        mfc="white",
        mec=_LEARN["color"],
        mew=1.1,
        ms=5,
        label="learnable + CE, gradient descent",
    )


def _etf(ax: Axes, data: dict[str, Any], key: str) -> None:
    """The fixed ETF: -1/(K-1) for every ratio, and (class means) its gradient-descent markers."""
    k = data["classes"]
    ratios = data["line"]["ratio"]
    ax.plot(
        ratios,
        np.full(len(ratios), -1 / (k - 1)),
        color=_ETF["color"],
        label="fixed ETF, Theorem 1",
    )
    if key != "cos_h":
        return
    for name in ("etf+ce", "etf+dr"):
        style, marks = CONFIG_STYLE[name], data["markers"][name]
        ax.plot(
            marks["ratio"],
            marks[key],
            ls="none",
            marker=style["marker"],
            mfc="white",
            mec=style["color"],
            mew=1.1,
            ms=6 if name == "etf+ce" else 3.5,  # both visible where they coincide
            label=f"{config_label(name)}, gradient descent",
        )


def _references(ax: Axes, data: dict[str, Any], log_gap: bool) -> None:
    k = data["classes"]
    if not log_gap:
        ax.axhline(1.0, color="#777777", lw=0.7, ls="--", zorder=0)
        ax.axhline(-1 / (k - 1), color="#777777", lw=0.7, ls=":", zorder=0)
    if data["threshold"]:
        ax.axvline(
            data["threshold"],
            color=OKABE_ITO["black"],
            lw=0.9,
            ls="-.",
            label="collapse threshold $R_0$ (KKT)",
        )


def _panel(ax: Axes, data: dict[str, Any], key: str, title: str) -> None:
    _etf(ax, data, key)
    _learnable(ax, data, key)
    _references(ax, data, log_gap=False)
    ax.set_xscale("log")
    ax.set_ylim(-0.25, 1.08)
    ax.set_title(title)
    ax.set_ylabel("mean minority cosine")


def _gap_panel(ax: Axes, data: dict[str, Any]) -> None:
    def gap(values: Any) -> np.ndarray:
        return np.maximum(1.0 - np.asarray(values), FLOOR)

    _learnable(ax, data, "cos_w", gap)
    line = data["line"]
    ax.plot(
        line["ratio"],
        gap(line["cos_h"]),
        color=_LEARN["color"],
        ls=":",
        label="learnable + CE, class means",
    )
    _references(ax, data, log_gap=True)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title("distance from collapse")
    ax.set_ylabel("1 − mean minority cosine")


def _caption(kind: str, data: dict[str, Any], params: dict[str, Any]) -> str:
    k = data["classes"]
    line = data["line"]
    gd_gap = max(max(m["gap"]) for m in data["markers"].values())
    text = (
        f"Lines: certified optimum of the LPM's convex form (relative gap <= {CONVEX_TOL:g}) at "
        f"{len(line['ratio'])} ratios, n_max = {params['line_n_max']:,}; markers: gradient descent "
        f"on the full model from a random start (n_max = {params['marker_n_max']}, "
        f"d = {params['dim']}, largest gap {gd_gap:.0e}). At ratio {line['ratio'][-1]:g} the "
        f"learnable minority cosine is {line['cos_w'][-1]:.6f} (classifiers); the fixed ETF "
        f"keeps -1/(K-1) = {-1 / (k - 1):.4f} at every ratio."
    )
    if data["threshold"]:
        text += (
            f" Collapse is exact from R0 = {data['threshold']:.3f} on, where the multiplier of the "
            f"norm constraint reaches n_B/N."
        )
    return text + (
        f" Gradient descent stops at an objective gap of {params['tol']:g}, so its cosines are "
        f"accurate to about the square root of that. Values of 1 − cos below {FLOOR:g} are drawn "
        f"at {FLOOR:g}."
    )


def _title(kind: str, data: dict[str, Any], params: dict[str, Any]) -> str:
    if kind == "step":
        k_a, k_b = params["step_classes"]
        setting = f"step profile, K_A = {k_a}, K_B = {k_b}"
    else:
        setting = f"exponential profile, K = {data['classes']}, tail third"
    return (
        f"Minority collapse of the learnable LPM; the fixed ETF is immune — {setting}, "
        f"E_W = {params['e_w']:g}, E_H = {params['e_h']:g}"
    )


@styled
def plot_profile(kind: str, data: dict[str, Any], params: dict[str, Any]) -> Figure:
    """Three panels: classifier cosines, class-mean cosines, 1 - cos (log) against the ratio."""
    fig = new_figure(WIDTH_DOUBLE, 2.9)
    axes, legend_ax = subplots_with_legend_row(fig, 1, 3, legend_height=0.16)
    ax_w, ax_h, ax_gap = axes[0]
    _panel(ax_w, data, "cos_w", "classifiers $w_k$")
    _panel(ax_h, data, "cos_h", "class means $\\mu_k - \\mu_G$")
    _gap_panel(ax_gap, data)
    for ax in axes[0]:
        ax.set_xlabel(_axis_label(kind))
    handles = {}
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    order = [lab for lab in _LEGEND_ORDER if lab in handles]
    legend_ax.legend([handles[lab] for lab in order], order, loc="center", ncol=3)
    label_panels(list(axes[0]))
    fig.suptitle(_title(kind, data, params))
    add_caption(fig, _caption(kind, data, params))
    return fig


def draw(results: dict[str, Any], params: dict[str, Any]) -> list[tuple[str, Figure]]:
    """(file name, figure) for each profile."""
    return [
        (f"minority_collapse_{kind}", plot_profile(kind, results[kind], params)) for kind in results
    ]
