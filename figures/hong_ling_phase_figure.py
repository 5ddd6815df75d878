"""The figure of the Hong & Ling sweep (`ufm.sweeps.hong_ling_phase`): minority classifier
spread against lambda / lambda*, lambda* = sqrt(n_B)/N, for several step profiles of the
regularized UFM with bias (Hong & Ling 2023), on a linear and a log scale.

Lines: the certified optimum of the convex form; diamonds: gradient descent on the full
(W, H, b) model, first setting. The spread is zero exactly when the minority classifiers
coincide. `draw(results, params)` takes the sweep's summary and config.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

from figures.style import (
    OKABE_ITO,
    WIDTH_DOUBLE,
    add_caption,
    label_panels,
    new_figure,
    series_colors,
    styled,
    subplots_with_legend_row,
)

__all__ = ["draw", "plot_phase"]

FLOOR = 1e-14  # spreads below are drawn here on the log axis


def _label(entry: dict[str, Any]) -> str:
    k_a, n_a, k_b, n_b = entry["setting"]
    lam = entry["threshold"]
    return f"$K_A$={k_a}, $n_A$={n_a}, $K_B$={k_b}, $n_B$={n_b}  ($\\lambda^*$={lam:.5f})"


def _draw_settings(ax: Axes, results: dict[str, Any], params: dict[str, Any], log: bool) -> None:
    entries = results["settings"]
    fractions = np.asarray(params["fractions"])
    for entry, color in zip(entries, series_colors(len(entries)), strict=True):
        y = np.asarray(entry["spread"], dtype=float)
        ax.plot(
            fractions,
            np.maximum(y, FLOOR) if log else y,
            color=color,
            marker="o",
            ms=2.5,
            label=_label(entry),
        )
        if "marker_spread" in entry:
            m = np.asarray(entry["marker_spread"], dtype=float)
            ax.plot(
                params["marker_fractions"],
                np.maximum(m, FLOOR) if log else m,
                ls="none",
                marker="D",
                ms=6,
                mfc="none",
                mec=color,
                mew=1.1,
                label="gradient descent on (W, H, b), first setting",
            )
    ax.axvspan(1.0, fractions.max() * 1.05, color="#EFEFEF", zorder=0, lw=0)
    ax.axvline(
        1.0,
        color=OKABE_ITO["black"],
        lw=0.9,
        ls="-.",
        label="predicted threshold $\\lambda = \\sqrt{n_B}/N$",
    )


def _log_x(ax: Axes) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([0.3, 0.5, 0.7, 1.0, 1.5, 2.0]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("$\\lambda / \\lambda^*$,   $\\lambda = 2\\sqrt{\\lambda_W \\lambda_H}$")


@styled
def plot_phase(results: dict[str, Any], params: dict[str, Any]) -> Figure:
    """Minority spread against lambda / lambda*: linear and log scale side by side."""
    fig = new_figure(WIDTH_DOUBLE, 3.0)
    axes, legend_ax = subplots_with_legend_row(fig, 1, 2, legend_height=0.2)
    ax_lin, ax_log = axes[0]
    _draw_settings(ax_lin, results, params, log=False)
    _draw_settings(ax_log, results, params, log=True)
    ax_log.set_yscale("log")
    for ax in (ax_lin, ax_log):
        _log_x(ax)
        ax.set_ylabel("minority classifier spread")
    ax_lin.set_title("spread")
    ax_lin.text(
        1.03,
        0.5,
        "collapsed",
        transform=ax_lin.get_xaxis_transform(),
        fontsize=7,
        color="#555555",
        rotation=90,
        va="center",
    )
    ax_log.set_title("spread, log scale")
    legend_ax.legend(*ax_lin.get_legend_handles_labels(), loc="center", ncol=2)
    label_panels([ax_lin, ax_log])
    fig.suptitle(
        "Hong & Ling phase transition: minority classifiers collapse "
        "iff $\\lambda \\geq \\sqrt{n_B}/N$"
    )
    add_caption(fig, _caption(results, params))
    return fig


def _caption(results: dict[str, Any], params: dict[str, Any]) -> str:
    fractions = np.asarray(params["fractions"])
    below = fractions < 1
    worst_above = max(
        np.nanmax(np.asarray(e["spread"], dtype=float)[~below]) for e in results["settings"]
    )
    least_below = min(
        np.nanmin(np.asarray(e["spread"], dtype=float)[below]) for e in results["settings"]
    )
    return (
        "Regularized UFM with bias, step profiles; spread = RMS distance of the minority "
        "classifiers from their mean over the RMS classifier norm. Lines: certified optimum of "
        f"the convex form (relative gap <= {params['tol']:g}); diamonds: gradient descent on the "
        f"full model, d = {params['dim']}, from a random start. Below the threshold the "
        f"smallest spread is {least_below:.3f} (at {fractions[below].max():g} lambda*); above "
        f"it the largest is {worst_above:.1e} (solver precision)."
    )


def draw(results: dict[str, Any], params: dict[str, Any]) -> list[tuple[str, Figure]]:
    return [("hong_ling_phase", plot_phase(results, params))]
