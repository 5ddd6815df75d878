"""Hong & Ling's phase diagram: minority classifiers collapse exactly when lambda >= sqrt(n_B)/N.

For several step profiles (K_A classes of n_A samples, K_B of n_B) the regularized UFM with bias
(Hong & Ling 2023; lambda = 2 sqrt(lambda_W lambda_H), `ufm.problems.effective_lambda`) is
solved across lambda / lambda*, lambda* = sqrt(n_B)/N (`ufm.theory.hong_ling_threshold`):

- lines: the certified optimum of its convex form (`ufm.convex.solve_regularized_convex`, bias
  free and unpenalized); the classifier is W = U S^{1/2} from the SVD Y = U S V^T of
  Y = Z D^{1/2} (the balanced factorization, W W^T proportional to (Y Y^T)^{1/2});
- markers: gradient descent on the full (W, H, b) model from a random start, first setting.

The minority spread is sqrt(mean_{k in B} ||w_k - wbar_B||^2) / sqrt(mean_k ||w_k||^2): zero
exactly when the minority classifiers coincide.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
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
from ufm.convex import solve_regularized_convex
from ufm.metrics import group_spread
from ufm.problems import RegularizedUFM
from ufm.solvers import solve
from ufm.theory import hong_ling_threshold

__all__ = ["DEFAULT", "SMALL", "compute", "draw"]

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
FLOOR = 1e-14  # spreads below are drawn here on the log axis


def _counts(setting: list[int]) -> tuple[np.ndarray, range]:
    k_a, n_a, k_b, n_b = setting
    return np.array([n_a] * k_a + [n_b] * k_b), range(k_a, k_a + k_b)


def _convex_spread(counts: np.ndarray, minority: range, lam: float, tol: float) -> float:
    res = solve_regularized_convex(counts, lam, 0.0, tol=tol)
    y = res.z * torch.as_tensor(counts, dtype=res.z.dtype).sqrt()  # (K, K) Y = Z D^{1/2}
    u, s, _ = torch.linalg.svd(y)
    return group_spread(u * s.sqrt(), minority, rms=True)


def _descent_spread(counts: np.ndarray, minority: range, lam: float, params: dict) -> float:
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


def compute(params: dict[str, Any]) -> dict[str, Any]:
    """Convex spreads for every setting, gradient-descent spreads for the first."""
    return {
        "settings": [_setting(s, params, markers=i == 0) for i, s in enumerate(params["settings"])]
    }


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
    worst_above = max(np.nanmax(np.asarray(e["spread"])[~below]) for e in results["settings"])
    least_below = min(np.nanmin(np.asarray(e["spread"])[below]) for e in results["settings"])
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
