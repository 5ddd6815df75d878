"""The figure of the geometry sweep (`ufm.sweeps.geometry_k3_k4`): K = 3 (in the plane) and
K = 4 (in 3-D) under imbalance, the learnable LPM with CE (Fang et al. 2021) at two ratios and
the fixed ETF with CE (Yang et al. 2022) at the severe one.

The solutions are drawn in their K-1 leading principal directions (the caption gives the share
of the squared norm kept); thin lines are the class means along the descent, from the random
start. `draw(results, params)` takes the sweep's summary and config.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from figures.style import (
    OKABE_ITO,
    WIDTH_DOUBLE,
    add_caption,
    config_label,
    new_figure,
    styled,
)

__all__ = ["draw", "plot_geometry"]

CLASS_COLORS = ("blue", "green", "vermillion", "purple")  # majority first, minority last


def _class_colors(panel: dict[str, Any]) -> list[str]:
    """Majority classes in blue / green, minority classes in vermillion / purple."""
    k_b = len(panel["minority"])
    k_a = len(panel["counts"]) - k_b
    return [OKABE_ITO[n] for n in (*CLASS_COLORS[:k_a], *CLASS_COLORS[-k_b:])]


def _sizes(counts: list[int]) -> np.ndarray:
    """Marker areas growing with log n_k (pt^2)."""
    n = np.asarray(counts, dtype=float)
    return 14 + 46 * np.log10(n) / np.log10(n.max())


def _title(panel: dict[str, Any]) -> str:
    counts = panel["counts"]
    angle = panel["minority_angle"]
    state = "collapsed (0°)" if angle < 0.5 else f"{angle:.1f}°"
    return f"{config_label(panel['name'])}, R = {counts[0] / counts[-1]:g}\nminority angle {state}"


def _edges(w: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Segments between every pair of classifier tips: the simplex they span."""
    k = len(w)
    return [(w[i], w[j]) for i in range(k) for j in range(i + 1, k)]


def _draw_plane(ax: Axes, panel: dict[str, Any], colors: list[str]) -> None:
    t = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(t), np.sin(t), color="#BBBBBB", lw=0.6, ls=":", zorder=0)
    w, means = np.asarray(panel["w"]), np.asarray(panel["means"])
    for a, b in _edges(w):
        ax.plot(*np.stack([a, b]).T, color="#CCCCCC", lw=0.6, zorder=1)
    path = np.asarray(panel["path"])  # (T, K, 2)
    for k, color in enumerate(colors):
        ax.plot(path[:, k, 0], path[:, k, 1], color=color, lw=0.7, alpha=0.45, zorder=1)
    ax.scatter(
        *means.T, s=_sizes(panel["counts"]), c=colors, edgecolors="white", linewidths=0.8, zorder=2
    )
    for k, color in enumerate(colors):
        arrow = {"arrowstyle": "-|>", "color": color, "lw": 1.5, "shrinkA": 0, "shrinkB": 0}
        ax.annotate("", xy=w[k], xytext=(0, 0), arrowprops=arrow, zorder=3)
    ax.set_aspect("equal")
    ax.set(xlim=(-1.9, 1.9), ylim=(-1.35, 1.35), xticks=[-1, 0, 1], yticks=[-1, 0, 1])
    ax.set_xlabel("principal direction 1")


def _draw_space(ax: Any, panel: dict[str, Any], colors: list[str], lim: float) -> None:
    w, means = np.asarray(panel["w"]), np.asarray(panel["means"])
    for a, b in _edges(w):
        ax.plot(*np.stack([a, b]).T, color="#CCCCCC", lw=0.6)
    path = np.asarray(panel["path"])  # (T, K, 3)
    for k, color in enumerate(colors):
        ax.plot(*path[:, k].T, color=color, lw=0.7, alpha=0.45)
        ax.quiver(0, 0, 0, *w[k], color=color, lw=1.5, arrow_length_ratio=0.18)
    ax.scatter(
        *means.T,
        s=_sizes(panel["counts"]),
        c=colors,
        edgecolors="white",
        linewidths=0.8,
        depthshade=False,
    )
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), zlim=(-lim, lim))
    ax.set_box_aspect((1, 1, 1), zoom=1.6)
    ax.view_init(elev=22, azim=-60)
    ax.set_axis_off()
    for artist in ax.get_children():  # the zoomed drawing may reach past the axes box
        artist.set_clip_on(False)
        artist.set_in_layout(False)


def _legend(ax: Axes) -> None:
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.lines import Line2D

    grey = "#555555"
    entries = [
        Line2D(
            [], [], color=grey, marker=r"$\rightarrow$", ls="none", ms=11, label="classifier $w_k$"
        ),
        Line2D([], [], color=grey, marker="o", ls="none", label="class mean (size: log $n_k$)"),
        Line2D([], [], color=grey, lw=0.7, alpha=0.6, label="class mean during descent"),
        (_patch("blue"), _patch("green")),
        (_patch("vermillion"), _patch("purple")),
    ]
    labels = [h.get_label() for h in entries[:3]] + ["majority classes", "minority classes"]
    ax.legend(
        entries,
        labels,
        loc="center",
        ncol=5,
        handlelength=1.8,
        columnspacing=1.2,
        handler_map={tuple: HandlerTuple(ndivide=None)},
    )


def _patch(color: str) -> Any:
    from matplotlib.patches import Patch

    return Patch(color=OKABE_ITO[color])


def _space_limit(rows: list[list[dict[str, Any]]]) -> float:
    """One half-width for every 3-D panel, so that their norms compare: the largest norm."""
    norms = [
        np.linalg.norm(np.asarray(p[key]), axis=1).max()
        for row in rows
        for p in row
        if len(p["counts"]) == 4
        for key in ("w", "means")
    ]
    return 1.05 * max(norms, default=1.0)


def _axes(fig: Figure, cell: Any, panel: dict[str, Any]) -> Any:
    if len(panel["counts"]) == 3:
        return fig.add_subplot(cell)
    return fig.add_subplot(cell, projection="3d")


@styled
def plot_geometry(results: dict[str, Any], params: dict[str, Any]) -> Figure:
    """Rows K = 3 (plane) and K = 4 (3-D); columns learnable (two ratios) and fixed ETF."""
    rows = results["rows"]
    ncols = max(len(r) for r in rows)
    fig = new_figure(WIDTH_DOUBLE, 2.4 * len(rows) + 0.3)
    fig.get_layout_engine().set(h_pad=0.12)
    heights = [0.85 if len(row[0]["counts"]) == 3 else 1.15 for row in rows]  # 3-D needs room
    grid = fig.add_gridspec(len(rows) + 1, ncols, height_ratios=[0.07, *heights])
    legend_ax = fig.add_subplot(grid[0, :])
    legend_ax.axis("off")
    _legend(legend_ax)
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            ax = _axes(fig, grid[i + 1, j], panel)
            colors = _class_colors(panel)
            if len(panel["counts"]) == 3:
                _draw_plane(ax, panel, colors)
                ax.set_ylabel("K = 3\nprincipal direction 2" if j == 0 else "")
            else:
                _draw_space(ax, panel, colors, _space_limit(rows))
                if j == 0:
                    ax.text2D(
                        -0.08,
                        0.5,
                        "K = 4 (3-D)",
                        transform=ax.transAxes,
                        rotation=90,
                        va="center",
                        ha="center",
                        fontsize=8,
                    )
            ax.set_title(_title(panel), fontsize=7.5)
    fig.suptitle(
        "Learnable classifier versus fixed ETF under imbalance "
        f"(E_W = {params['e_w']:g}, E_H = {params['e_h']:g})"
    )
    add_caption(fig, _caption(results))
    return fig


def _caption(results: dict[str, Any]) -> str:
    kept = min(p["kept"] for row in results["rows"] for p in row)
    counts = "; ".join(
        f"K = {len(row[0]['counts'])}: n_k = {row[0]['counts']} and {row[1]['counts']}"
        for row in results["rows"]
    )
    return (
        "Solutions of the LPM (learnable W, class-averaged constraints) and of the fixed-ETF "
        "model (per-sample constraint) with cross-entropy, from the same random start, drawn in "
        f"their K-1 leading principal directions ({100 * kept:.4f}% of the squared norm or more "
        f"kept; the 3-D panels are a perspective view). Counts {counts}. Grey: the simplex spanned "
        "by the classifier tips; dotted circle: radius 1. The learnable minority classifiers "
        "close in as R grows and coincide at R = 100 (minority collapse); the fixed ETF keeps "
        "arccos(-1/(K-1)) (120° for K = 3, 109.5° for K = 4) at every ratio, and its class means "
        "sit on the classifier vectors."
    )


def draw(results: dict[str, Any], params: dict[str, Any]) -> list[tuple[str, Figure]]:
    return [("geometry_k3_k4", plot_geometry(results, params))]
