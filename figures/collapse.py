"""Trained networks against the layer-peeled prediction: the figures of `deep.compare`.

Drawn from a comparison folder (comparison.json, written by `python -m deep.compare`); nothing
is solved here.

- `minority_collapse_<dataset>`: after Fang et al. (PNAS 2021, Fig. 3), the mean pairwise
  cosine of the minority classifiers (a) and of the centred minority class means (b) against
  the imbalance ratio R, each seed a marker, learnable + CE and fixed ETF + DR; lines for the
  certified LPM at Fang's reference norms, the LPM at the runs' own measured norms (certified
  points only), SELI, and the ETF's -1/(K-1).
- `gram_<run>`: for one run, measured and predicted cosine matrices side by side (classifier
  rows and centred class means), head to tail, the minority outlined.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from figures.heatmaps import draw_matrix
from figures.runs import FigureDataError
from figures.style import (
    OKABE_ITO,
    WIDTH_DOUBLE,
    add_caption,
    label_panels,
    new_figure,
    save_figure,
    styled,
)

__all__ = ["comparison_file", "draw_comparison", "load_comparison"]

_METHODS = {  # method -> (label, colour, marker)
    "linear+ce": ("learnable + CE", OKABE_ITO["vermillion"], "o"),
    "etf+dr": ("fixed ETF + DR", OKABE_ITO["blue"], "s"),
}


def comparison_file(path: str | Path) -> Path | None:
    """comparison.json in `path` or in `path`/comparison (a deep.table root), else None."""
    path = Path(path)
    for candidate in (path / "comparison.json", path / "comparison" / "comparison.json"):
        if candidate.is_file():
            return candidate
    return None


def load_comparison(path: str | Path) -> dict[str, Any]:
    """The comparison.json of a deep.compare output folder (or of a table root holding one)."""
    found = comparison_file(path)
    if found is None:
        raise FigureDataError(
            f"{path}: no comparison.json; run python -m deep.compare {path} first"
        )
    try:
        data = json.loads(found.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FigureDataError(f"{found}: not valid JSON ({exc})") from None
    if data.get("kind") != "deep-compare" or "runs" not in data:
        raise FigureDataError(f"{found}: not written by deep.compare")
    return data


def _measured_points(ax: Axes, runs: list[dict], key: str) -> None:
    for method, (label, colour, marker) in _METHODS.items():
        mine = [r for r in runs if r["method"] == method]
        if not mine:
            continue
        x = np.array([r["imbalance"] for r in mine])
        y = np.array([r["measured"][key] for r in mine])
        ax.scatter(x, y, s=16, color=colour, marker=marker, alpha=0.8, label=f"{label} (seeds)")
        ratios = np.unique(x)
        ax.plot(ratios, [y[x == r].mean() for r in ratios], color=colour, lw=1.0, alpha=0.6)


def _lpm_measured(ax: Axes, runs: list[dict], part: str) -> None:
    mine = [r for r in runs if r["method"] == "linear+ce"]
    points = {}
    for r in mine:
        pred = r["predictions"].get("lpm", {})
        if pred.get("certified") and part in pred:
            points.setdefault(r["imbalance"], []).append(pred[part]["minority_predicted"])
    if points:
        xs = sorted(points)
        ax.plot(
            xs,
            [np.mean(points[x]) for x in xs],
            color=OKABE_ITO["black"],
            marker="x",
            lw=1.2,
            label="LPM at the runs' measured norms",
        )


def _lines(ax: Axes, line: dict[str, Any], index: int, k: int) -> None:
    ratio = np.asarray(line["ratio"])
    e_w, e_h = line["reference"]
    for key, label, colour, style in (
        ("lpm_reference", f"LPM, E_W={e_w:g}, E_H={e_h:g}", OKABE_ITO["green"], "--"),
        ("seli", "SELI (max margin)", OKABE_ITO["purple"], ":"),
    ):
        values = np.array(
            [np.nan if pair[index] is None else pair[index] for pair in line.get(key, [])]
        )
        if len(values):
            ax.plot(ratio, values, color=colour, ls=style, lw=1.2, label=label)
    ax.axhline(-1 / (k - 1), color=OKABE_ITO["grey"], lw=0.8, ls="-.", label="ETF: -1/(K-1)")


def _panel(ax: Axes, runs: list[dict], line: dict[str, Any] | None, which: str, k: int) -> None:
    key, part, index = {
        "w": ("minority_cosine_w", "w", 0),
        "h": ("minority_cosine_h", "h", 1),
    }[which]
    if line is not None:
        _lines(ax, line, index, k)
    _lpm_measured(ax, runs, part)
    _measured_points(ax, runs, key)
    ax.set_xscale("log")
    ax.set_ylim(-0.35, 1.05)
    ax.set_xlabel("imbalance ratio R = n_A / n_B")
    ax.set_ylabel(
        "minority classifier cosine" if which == "w" else "minority class-mean cosine (centred)"
    )


@styled
def _sweep_figure(data: dict[str, Any], dataset: str) -> Any:
    runs = [r for r in data["runs"] if r["dataset"] == dataset]
    k = len(runs[0]["counts"])
    line = data.get("lines", {}).get(dataset)
    fig = new_figure(WIDTH_DOUBLE, 2.8)
    axes = fig.subplots(1, 2)
    _panel(axes[0], runs, line, "w", k)
    _panel(axes[1], runs, line, "h", k)
    label_panels(axes)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=6.5, frameon=False)
    counts = np.asarray(runs[0]["counts"])
    seeds = sorted({r["seed"] for r in runs})
    verdicts = data.get("verdicts", {}).get(dataset, [])
    status = ", ".join(f"{v['name']} {v['status']}" for v in verdicts)
    add_caption(
        fig,
        f"{dataset}: step profile, K={k}, n_A={counts.max()}, {len(runs[0]['minority'])} minority "
        f"classes; seeds {seeds}; measured at the last NC evaluation; class means centred at "
        f"the mean of class means. Verdicts: {status}.",
    )
    return fig


def _pick_run(runs: list[dict]) -> dict[str, Any] | None:
    learnable = [r for r in runs if r["method"] == "linear+ce"]
    pool = learnable or runs
    if not pool:
        return None
    top = max(r["imbalance"] for r in pool)
    return min((r for r in pool if r["imbalance"] == top), key=lambda r: r["seed"])


@styled
def _gram_figure(run: dict[str, Any]) -> Any:
    counts = np.asarray(run["counts"])
    minority = run["minority"]
    preds = run["predictions"]
    name = next(
        (n for n in ("lpm", "seli", "etf") if preds.get(n, {}).get("certified") and n in preds),
        None,
    )
    fig = new_figure(WIDTH_DOUBLE, 2.2)
    axes = fig.subplots(1, 4)
    panels = [
        (np.asarray(run["measured"]["cosine_w"]), "measured W"),
        (np.asarray(preds[name]["cosine_w"]), f"{name.upper()} W") if name else (None, ""),
        (np.asarray(run["measured"]["cosine_h"]), "measured class means"),
        (np.asarray(preds[name]["cosine_h"]), f"{name.upper()} class means")
        if name
        else (None, ""),
    ]
    image = None
    for ax, (matrix, title) in zip(axes, panels, strict=True):
        if matrix is None:
            ax.axis("off")
            continue
        image = draw_matrix(ax, matrix, counts, minority=minority)
        ax.set_title(title, fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="cosine")
    note = "" if name == "lpm" else " (the LPM prediction is not certified for this run)"
    add_caption(
        fig,
        f"{Path(run['run']).name}: {run['method']}, R={run['imbalance']:g}, seed {run['seed']}; "
        f"cosines head to tail, class means centred at their mean, minority outlined; "
        f"prediction {name.upper() if name else 'none'}{note}.",
    )
    return fig


def draw_comparison(path: str | Path, out: str | Path | None = None) -> list[Path]:
    """Every figure of a deep.compare folder into `out` (default: the folder's figures/)."""
    data = load_comparison(path)
    folder = comparison_file(path).parent
    out = Path(out) if out is not None else folder / "figures"
    paths: list[Path] = []
    for dataset in sorted({r["dataset"] for r in data["runs"]}):
        runs = [r for r in data["runs"] if r["dataset"] == dataset]
        safe = dataset.replace(":", "-").replace("/", "-")
        paths += save_figure(_sweep_figure(data, dataset), out, f"minority_collapse_{safe}")
        chosen = _pick_run(runs)
        if chosen is not None:
            paths += save_figure(_gram_figure(chosen), out, f"gram_{Path(chosen['run']).name}")
    return paths
