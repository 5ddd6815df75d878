"""How the certified LPM solve grows with the number of classes K (from `benchmarks.lpm_scale`).

Two log-log panels, seconds and iterations against K, one series per solver ("grouped": the
m x m form of `ufm.grouped`; "full": the K x K iteration), only where a solve was certified. The
title carries each solver's fitted exponent b of seconds ~ K^b (least squares on log-log over
the certified points with K >= 100), and points that stopped at a time limit are drawn as open
markers at the time they were stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from figures.style import (
    OKABE_ITO,
    WIDTH_DOUBLE,
    add_caption,
    label_panels,
    new_figure,
    save_figure,
    styled,
)

__all__ = ["draw_cost_growth", "fitted_exponent"]

_STYLE = {
    "grouped": {"color": OKABE_ITO["blue"], "marker": "o", "linestyle": "-"},
    "full": {"color": OKABE_ITO["vermillion"], "marker": "s", "linestyle": "--"},
}


def fitted_exponent(rows: Sequence[dict[str, Any]], solver: str, k_min: int = 100) -> float | None:
    """b in seconds ~ K^b, least squares on log-log over the certified rows of `solver` with
    K >= k_min; None with fewer than two such rows."""
    pts = [
        (r["classes"], r["seconds"])
        for r in rows
        if r["solver"] == solver and r["certified"] and r["classes"] >= k_min
    ]
    if len({k for k, _ in pts}) < 2:
        return None
    k, s = np.log(np.array(pts, dtype=np.float64)).T
    return float(np.polyfit(k, s, 1)[0])


def _series(ax: Axes, rows: Sequence[dict[str, Any]], key: str) -> None:
    for solver, style in _STYLE.items():
        done = sorted(
            (r["classes"], r[key]) for r in rows if r["solver"] == solver and r["certified"]
        )
        if done:
            ax.plot(*zip(*done, strict=True), label=solver, **style)
        stopped = [
            (r["classes"], r[key]) for r in rows if r["solver"] == solver and not r["certified"]
        ]
        if stopped:
            ax.plot(
                *zip(*stopped, strict=True),
                linestyle="none",
                marker=style["marker"],
                markerfacecolor="none",
                color=style["color"],
                label=f"{solver}, stopped at its time limit",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("classes K")


@styled
def draw_cost_growth(rows: Sequence[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Draw `cost_growth.png/.pdf` into `out_dir` from the benchmark's rows (dicts with
    `classes`, `solver`, `seconds`, `iterations`, `certified`, `profile`)."""
    if not rows:
        raise ValueError("no benchmark rows to draw")
    fig = new_figure(WIDTH_DOUBLE, 2.6)
    axes = fig.subplots(1, 2)
    _series(axes[0], rows, "seconds")
    axes[0].set_ylabel("seconds to the certified gap")
    _series(axes[1], rows, "iterations")
    axes[1].set_ylabel("iterations")
    axes[0].legend(loc="upper left")
    label_panels(axes)
    exps = {s: fitted_exponent(rows, s) for s in _STYLE}
    fits = ", ".join(f"{s}: K^{b:.2f}" for s, b in exps.items() if b is not None)
    fig.suptitle(f"certified LPM optimum, cost against K (fit over K >= 100: {fits or 'n/a'})")
    profiles = sorted({r["profile"] for r in rows})
    add_caption(fig, "Profiles: " + "; ".join(profiles) + ". One CPU thread.")
    return save_figure(fig, out_dir, "cost_growth")
