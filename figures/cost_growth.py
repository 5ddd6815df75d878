"""How the certified LPM solve grows with the number of classes K (from `benchmarks.lpm_scale`).

Two log-log panels, seconds and iterations against K, one series per solver ("grouped": the
m x m form of `ufm.grouped`; "full": the K x K iteration) and class profile, lines where a
solve was certified, open markers where one stopped at its time limit. The caption carries each
series' fitted exponent b of seconds ~ K^b (least squares on log-log over the certified points
with K >= 100) and how the time was measured.

    python -m figures.cost_growth runs/bench/lpm_scale/results.json      # redraw
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

__all__ = ["draw_cost_growth", "fitted_exponent", "main", "series", "series_label"]

_COLOR = {  # (solver, precision) -> colour; rows without a precision use the solver's own
    ("grouped", None): OKABE_ITO["blue"],
    ("grouped", "float32"): OKABE_ITO["blue"],
    ("grouped", "float64"): OKABE_ITO["green"],
    ("full", None): OKABE_ITO["vermillion"],
    ("full", "float64"): OKABE_ITO["vermillion"],
}
_LINES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))


def fitted_exponent(
    rows: Sequence[dict[str, Any]],
    solver: str,
    k_min: int = 100,
    profile: str | None = None,
    precision: str | None = None,
) -> float | None:
    """b in seconds ~ K^b, least squares on log-log over the certified rows of `solver` (and
    `profile`, `precision`, when given) with K >= k_min; None with fewer than two such rows."""
    pts = [
        (r["classes"], r["seconds"])
        for r in rows
        if r["solver"] == solver
        and r["certified"]
        and r["classes"] >= k_min
        and (profile is None or r["profile"] == profile)
        and (precision is None or r.get("precision") == precision)
    ]
    if len({k for k, _ in pts}) < 2:
        return None
    k, s = np.log(np.array(pts, dtype=np.float64)).T
    return float(np.polyfit(k, s, 1)[0])


def series(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    """(solver, precision, profile) triples in order of first appearance (precision None in
    rows that do not record it)."""
    return list(dict.fromkeys((r["solver"], r.get("precision"), r["profile"]) for r in rows))


def series_label(solver: str, precision: str | None, profile: str) -> str:
    return ", ".join(p for p in (solver, precision, profile) if p)


def _panel(ax: Axes, rows: Sequence[dict[str, Any]], key: str) -> None:
    profiles = list(dict.fromkeys(r["profile"] for r in rows))
    for solver, precision, profile in series(rows):
        linestyle, marker = _LINES[profiles.index(profile) % len(_LINES)]
        mine = [
            r
            for r in rows
            if (r["solver"], r.get("precision"), r["profile"]) == (solver, precision, profile)
        ]
        style = {"color": _COLOR.get((solver, precision), OKABE_ITO["black"]), "marker": marker}
        label = series_label(solver, precision, profile)
        done = sorted((r["classes"], r[key]) for r in mine if r["certified"])
        if done:
            ax.plot(
                *zip(*done, strict=True), linestyle=linestyle, label=label, **style
            )
        stopped = [(r["classes"], r[key]) for r in mine if not r["certified"]]
        if stopped:
            ax.plot(
                *zip(*stopped, strict=True),
                linestyle="none",
                markerfacecolor="none",
                label=f"{label}: stopped at its time limit",
                **style,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("classes K")


@styled
def draw_cost_growth(
    rows: Sequence[dict[str, Any]], out_dir: str | Path, note: str = ""
) -> list[Path]:
    """Draw `cost_growth.png/.pdf` into `out_dir` from the benchmark's rows (dicts with
    `classes`, `solver`, `profile`, `seconds`, `iterations`, `certified`); `note` ends the
    caption (how the time was measured)."""
    if not rows:
        raise ValueError("no benchmark rows to draw")
    fig = new_figure(WIDTH_DOUBLE, 2.8)
    axes = fig.subplots(1, 2)
    _panel(axes[0], rows, "seconds")
    axes[0].set_ylabel("seconds to the certified gap")
    _panel(axes[1], rows, "iterations")
    axes[1].set_ylabel("iterations")
    axes[0].legend(loc="upper left", fontsize=6)
    label_panels(axes)
    fits = []
    for solver, precision, profile in series(rows):
        b = fitted_exponent(rows, solver, profile=profile, precision=precision)
        if b is not None:
            fits.append(f"{series_label(solver, precision, profile)}: K^{b:.2f}")
    fig.suptitle("certified LPM optimum: cost against K")
    add_caption(
        fig,
        "Fitted over K >= 100: " + ("; ".join(fits) or "n/a") + ". " + note,
    )
    return save_figure(fig, out_dir, "cost_growth")


def main(argv: list[str] | None = None) -> int:
    """`python -m figures.cost_growth RESULTS.json [OUT]`: redraw from a benchmark's results."""
    import json
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if not 1 <= len(argv) <= 2 or not Path(argv[0]).is_file():
        print("usage: python -m figures.cost_growth RESULTS.json [OUT_DIR]", file=sys.stderr)
        return 2
    data = json.loads(Path(argv[0]).read_text())
    out = Path(argv[1]) if len(argv) == 2 else Path(argv[0]).parent
    paths = draw_cost_growth(data["rows"], out, data.get("note", ""))
    print(f"wrote {paths[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
