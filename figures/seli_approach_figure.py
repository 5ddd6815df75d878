"""The figure of the SELI sweep (`ufm.sweeps.seli_approach`): the normalized classifier Gram
matrix of the bias-free regularized UFM as lambda -> 0, next to its max-margin limit and the SELI
closed form (Thrampoulidis et al., NeurIPS 2022).

The approach is slow: the distance to SELI falls like 1/log(1/lambda), so against
1/log(1/lambda) it is a straight line through the max-margin point, which is how the figure
shows it; the minority cosine along lambda next to SELI's. `draw(results, params)` takes the
sweep's summary and config.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from figures.heatmaps import draw_matrix
from figures.style import (
    OKABE_ITO,
    WIDTH_DOUBLE,
    add_caption,
    label_panels,
    new_figure,
    styled,
)

__all__ = ["draw", "plot_seli"]


def _heatmap_row(fig: Any, results: dict[str, Any], params: dict[str, Any]) -> list[Axes]:
    """Normalized Gram matrices: two lambdas of the path, the max-margin limit, SELI."""
    counts = np.asarray(results["counts"])
    by_lambda = {p["lambda"]: p for p in results["path"]}
    panels = [
        (by_lambda[lam]["gram"], f"$\\lambda$ = {lam:g}") for lam in params["heatmap_lambdas"]
    ]
    panels += [(results["limit"]["gram"], "max-margin"), (results["seli"]["gram"], "SELI")]
    vmax = max(np.nanmax(np.abs(np.asarray(m, dtype=float))) for m, _ in panels)
    axes = fig.subplots(1, len(panels))
    image = None
    for j, (ax, (matrix, title)) in enumerate(zip(axes, panels, strict=True)):
        image = draw_matrix(
            ax,
            np.asarray(matrix, dtype=float),
            counts,
            minority=results["minority"],
            vmin=-vmax,
            vmax=vmax,
            ylabels=j == 0,
        )
        ax.set_title(title, fontsize=7.5)
        ax.set_xlabel("class ($n_k$)")
    axes[0].set_ylabel("class ($n_k$)")
    fig.colorbar(image, ax=axes, shrink=0.85, label="$W W^T / \\|W W^T\\|_F$")
    return list(axes)


def _inverse_log(lam: np.ndarray) -> np.ndarray:
    return 1.0 / np.log(1.0 / np.asarray(lam, dtype=float))


def _distance_panel(ax: Axes, results: dict[str, Any], path: list[dict]) -> None:
    """Distances to SELI against 1/log(1/lambda): straight lines into the max-margin point."""
    x = _inverse_log([p["lambda"] for p in path])
    series = (
        ("gram_distance", "classifier Gram", OKABE_ITO["blue"], "o"),
        ("logit_distance", "mean logits", OKABE_ITO["vermillion"], "s"),
    )
    for key, label, color, marker in series:
        y = np.array([p[key] for p in path])
        ax.plot(x, y, color=color, marker=marker, ms=3.5, label=f"{label}, regularized")
        slope = float(x[-4:] @ y[-4:] / (x[-4:] @ x[-4:]))  # through the origin, small lambdas
        grid = np.linspace(0, x.max(), 50)
        ax.plot(
            grid,
            slope * grid,
            color=color,
            lw=0.8,
            ls="--",
            label=f"{slope:.2f} / log(1/$\\lambda$)",
        )
        ax.plot(
            [0],
            [results["limit"][key]],
            ls="none",
            marker="*",
            ms=9,
            color=color,
            mec="black",
            mew=0.5,
            label=f"{label}, max-margin ($\\lambda \\to 0$)",
        )
    ax.set_xlim(left=-0.003)
    ax.set_ylim(bottom=-0.01)
    ax.set_xlabel("1 / log(1/$\\lambda$)     ($\\lambda \\to 0$ at the left)")
    ax.set_ylabel("Frobenius distance to SELI")
    ax.legend(loc="upper left", fontsize=6)
    ax.set_title("distance to SELI")


def _cosine_panel(ax: Axes, results: dict[str, Any], path: list[dict]) -> None:
    lam = np.array([p["lambda"] for p in path])
    ax.plot(
        lam,
        [p["minority_cos"] for p in path],
        color=OKABE_ITO["vermillion"],
        marker="^",
        ms=3.5,
        label="regularized UFM (no bias)",
    )
    ax.axhline(
        results["seli"]["minority_cos"],
        color=OKABE_ITO["blue"],
        ls="--",
        lw=1,
        label=f"SELI: {results['seli']['minority_cos']:.3f}",
    )
    ax.axhline(1.0, color="#777777", lw=0.7, ls=":", zorder=0)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_ylim(-0.05, 1.08)
    ax.set_xlabel("$\\lambda = 2\\sqrt{\\lambda_W \\lambda_H}$  (decreasing)")
    ax.set_ylabel("mean minority classifier cosine")
    ax.legend(loc="center right", fontsize=6.5)
    ax.set_title("minority classifiers")


def _finite(value: float | None) -> bool:
    """A number that is not NaN (a summary writes NaN as null)."""
    return value is not None and bool(np.isfinite(value))


@styled
def plot_seli(results: dict[str, Any], params: dict[str, Any]) -> Figure:
    """Gram heatmaps (two lambdas, max-margin, SELI) over the approach to SELI and the
    minority cosine along lambda."""
    path = [p for p in results["path"] if _finite(p["gram_distance"])]
    fig = new_figure(WIDTH_DOUBLE, 5.0)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 1.25])
    heat = _heatmap_row(top, results, params)
    ax_d, ax_c = bottom.subplots(1, 2)
    _distance_panel(ax_d, results, path)
    _cosine_panel(ax_c, results, path)
    label_panels([*heat, ax_d, ax_c])
    counts = results["counts"]
    fig.suptitle(
        f"SELI geometry as $\\lambda \\to 0$ — bias-free regularized UFM, K = {len(counts)}, "
        f"exponential profile $\\rho$ = {counts[0] / counts[-1]:g}, N = {sum(counts)}"
    )
    add_caption(fig, _caption(results, path, params))
    return fig


def _caption(results: dict[str, Any], path: list[dict], params: dict[str, Any]) -> str:
    last, limit = path[-1], results["limit"]
    return (
        f"Certified optima of the convex form (relative gap <= {params['tol']:g}) at "
        f"{len(path)} values of lambda; classes head to tail, minority (tail third) outlined. "
        f"At lambda = {last['lambda']:g} the classifier Gram matrix is {last['gram_distance']:.3f} "
        f"from SELI and the normalized mean logits {last['logit_distance']:.3f} from "
        f"I - 11^T/K; the max-margin limit (cvxpy) is {limit['gram_distance']:.1e} and "
        f"{limit['logit_distance']:.1e} from them. The distance falls like 1/log(1/lambda), "
        f"hence the slow approach. Minority cosine: SELI {results['seli']['minority_cos']:.3f}, "
        f"max-margin {limit['minority_cos']:.3f}."
    )


def draw(results: dict[str, Any], params: dict[str, Any]) -> list[tuple[str, Figure]]:
    return [("seli_gram", plot_seli(results, params))]
