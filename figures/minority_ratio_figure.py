"""Figures of the minority-collapse sweep (`ufm.sweeps.minority_ratio`): the mean minority
cosine against the imbalance ratio, learnable LPM versus fixed ETF (Fang et al., PNAS 2021;
Yang et al. 2022, Theorem 1).

Lines: the certified optimum of the LPM's convex form at each ratio; markers: gradient descent
on the full model from a random start; the vertical line: the collapse threshold R0 of the step
profile, where the KKT multiplier of the norm constraint reaches n_B/N. The fixed ETF keeps
every cosine at -1/(K-1). `draw(results, params)` takes the sweep's summary and config.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

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

__all__ = ["draw", "plot_profile"]

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
    f = transform or (lambda v: np.asarray(v, dtype=float))
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
        return np.maximum(1.0 - np.asarray(values, dtype=float), FLOOR)

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
        f"Lines: certified optimum of the LPM's convex form (relative gap <= "
        f"{params['convex_tol']:g}) at "
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
