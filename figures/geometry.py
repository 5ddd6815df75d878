"""A geometric picture: K = 3 (in the plane) and K = 4 (in 3-D) under imbalance.

Each case is a step profile with one or two majority classes and two minority classes, ratio R,
E_W = E_H = 1 (the scale of the deep heads, so classifiers and features share one axis). Two
models are solved from the same random start by `ufm.solvers.solve`: the learnable LPM with CE
(Fang et al. 2021) and the fixed ETF with CE and the per-sample constraint (Yang et al. 2022).
The solutions live in R^K; they are drawn in the span of their K-1 leading principal directions
(the fixed ETF spans exactly K-1 dimensions; the caption gives the share of the learnable
solution kept). Thin lines are the class means along the descent, from the random start.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
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
from ufm.convex import solve_lpm_convex
from ufm.metrics import class_means
from ufm.problems import FixedETFModel, LayerPeeledModel, Problem, Vars
from ufm.solvers import solve

__all__ = ["DEFAULT", "SMALL", "compute", "draw", "principal_frame"]

DEFAULT: dict[str, Any] = {
    # K_A majority and K_B minority classes (K = 3, then K = 4), and the panels of each row:
    # learnable at a moderate and at a severe ratio R = n_A / n_B, fixed ETF at the severe one
    "cases": [
        {
            "classes": [1, 2],
            "panels": [["learnable+ce", 10], ["learnable+ce", 100], ["etf+ce", 100]],
        },
        {
            "classes": [2, 2],
            "panels": [["learnable+ce", 3], ["learnable+ce", 100], ["etf+ce", 100]],
        },
    ],
    "n_major": 300,  # samples of a majority class
    "e_w": 1.0,
    "e_h": 1.0,
    "checkpoints": [1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, 40],  # iterations on the paths
    "tol": 1e-10,
    "seed": 0,
}
SMALL: dict[str, Any] = DEFAULT | {"n_major": 30, "checkpoints": [1, 3]}
CLASS_COLORS = ("blue", "green", "vermillion", "purple")  # majority first, minority last


def _model(name: str, counts: np.ndarray, params: dict[str, Any]) -> Problem:
    classifier, loss = name.split("+")
    common = dict(counts=counts, dim=len(counts), loss=loss, e_w=params["e_w"], e_h=params["e_h"])
    if classifier == "learnable":
        return LayerPeeledModel(**common)
    return FixedETFModel(**common, constraint="sample", etf_seed=params["seed"])


def _state(problem: Problem, x: Vars) -> tuple[np.ndarray, np.ndarray]:
    """(classifier W (K, d), class means (K, d)) of a point."""
    with torch.no_grad():
        mu, _, _ = class_means(problem.features(x), problem.labels, problem.num_classes)
        return problem.classifier(x).numpy(), mu.numpy()


def principal_frame(w: np.ndarray, means: np.ndarray, dims: int) -> tuple[np.ndarray, float]:
    """Orthonormal (d, dims) frame of the leading right singular vectors of [W; means] and the
    share of their squared norm it keeps."""
    stacked = np.vstack([w, means])
    _, s, vh = np.linalg.svd(stacked, full_matrices=False)
    return vh[:dims].T, float((s[:dims] ** 2).sum() / (s**2).sum())


def _trajectory(problem: Problem, params: dict[str, Any]) -> list[np.ndarray]:
    """Class means at the start and after each checkpoint's number of iterations (the solver is
    deterministic, so a run stopped at m iterations is the first m of the full run)."""
    seed = params["seed"]
    means = [_state(problem, problem.project(problem.random_start(seed)))[1]]
    for m in params["checkpoints"]:
        res = solve(problem, "fast", seed=seed, tol=1e-300, max_iter=m)
        means.append(_state(problem, res.x)[1])
    return means


def _solve_case(name: str, counts: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    problem = _model(name, counts, params)
    target = problem.optimum()
    if target is None:
        target = solve_lpm_convex(counts, params["e_w"], params["e_h"], tol=1e-11).value
    res = solve(problem, "fast", seed=params["seed"], tol=params["tol"], target=target)
    w, means = _state(problem, res.x)
    frame, kept = principal_frame(w, means, len(counts) - 1)
    path = [m @ frame for m in _trajectory(problem, params)]
    return {
        "w": (w @ frame).tolist(),
        "means": (means @ frame).tolist(),
        "path": [p.tolist() for p in path],
        "kept": kept,
        "objective": res.objective,
    }


def _panel(case: dict[str, Any], name: str, ratio: float, params: dict[str, Any]) -> dict:
    k_a, k_b = case["classes"]
    n_b = max(1, round(params["n_major"] / ratio))
    counts = np.array([params["n_major"]] * k_a + [n_b] * k_b)
    solved = _solve_case(name, counts, params)
    w = np.asarray(solved["w"])[k_a:]
    cos = float(w[0] @ w[1] / (np.linalg.norm(w[0]) * np.linalg.norm(w[1])))
    angle = float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    minority = list(range(k_a, k_a + k_b))
    return solved | {
        "name": name,
        "counts": counts.tolist(),
        "minority": minority,
        "minority_angle": angle,
    }


def compute(params: dict[str, Any]) -> dict[str, Any]:
    """Projected solutions, class-mean paths and minority angles, one row per case."""
    rows = [
        [_panel(case, name, ratio, params) for name, ratio in case["panels"]]
        for case in params["cases"]
    ]
    return {"rows": rows}


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
