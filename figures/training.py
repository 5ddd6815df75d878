"""Figures of `python -m deep.train` runs, one run or several side by side.

- training_accuracy: test accuracy per epoch, overall and on the tail classes;
- training_nc: NC1 and the ETF distance of the classifier (log scale) and the mean minority
  cosine of classifier vectors and of class means, on the epochs where they were measured;
- training_per_class: test accuracy of every class, head to tail, runs side by side, with the
  training counts n_k.

Everything comes from the run folders (config.yaml, history.csv, summary.json); accuracies are
stored as fractions and drawn in percent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import cycle
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from figures.heatmaps import head_to_tail
from figures.runs import DeepRun, FigureDataError, load_deep_run
from figures.style import (
    OKABE_ITO,
    WIDTH_DOUBLE,
    add_caption,
    label_panels,
    new_figure,
    save_figure,
    series_colors,
    styled,
    subplots_with_legend_row,
)

__all__ = [
    "NEEDS",
    "check_runs",
    "compare_folder",
    "draw_deep_run",
    "draw_training_runs",
    "plot_accuracy",
    "plot_nc",
    "plot_per_class",
]

# What each figure reads: history.csv columns and summary.json keys.
NEEDS = {
    "columns": ("epoch", "test_acc", "nc1", "etf_distance", "minority_cosine_w"),
    "summary": ("per_class_acc", "counts"),
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def check_runs(runs: Sequence[DeepRun]) -> None:
    """Raise one FigureDataError listing everything the training figures miss, if anything."""
    problems = []
    for run in runs:
        missing = [c for c in NEEDS["columns"] if c not in run.columns]
        if missing:
            problems.append(f"{run.history_file}: no column {', '.join(missing)}")
        elif np.all(np.isnan(run.columns["nc1"])):
            problems.append(f"{run.history_file}: NC metrics were never measured")
        absent = [k for k in NEEDS["summary"] if not run.summary.get(k)]
        if absent:
            problems.append(f"{run.path / 'summary.json'}: no {', '.join(absent)}")
    first = runs[0].counts if runs and not problems else None
    if first is not None and any(not np.array_equal(r.counts, first) for r in runs):
        problems.append(
            "the per-class figure compares runs on the same classes, and these runs have "
            "different class counts; draw them in groups with the same data"
        )
    if problems:
        raise FigureDataError("; ".join(problems))


def _labels(runs: Sequence[DeepRun]) -> list[str]:
    """Legend labels: head + loss, with the folder name where two runs would read the same."""
    counts = Counter(r.label for r in runs)
    return [r.label if counts[r.label] == 1 else f"{r.label} ({r.path.name})" for r in runs]


def _setting(runs: Sequence[DeepRun]) -> str:
    """'fashion-mnist, exp profile, imbalance 100' when the runs share it."""
    settings = {
        (
            r.config.get("data", {}).get("dataset"),
            r.config.get("data", {}).get("profile"),
            r.config.get("data", {}).get("imbalance"),
        )
        for r in runs
    }
    if len(settings) != 1:
        return "several data settings"
    dataset, profile, ratio = settings.pop()
    ratio_text = f", imbalance {ratio:g}" if isinstance(ratio, int | float) else ""
    return f"{dataset or 'unknown data'}, {profile} profile{ratio_text}"


def _series(runs: Sequence[DeepRun], labels: list[str]) -> Iterator[tuple[DeepRun, str, str, str]]:
    """(run, label, colour, marker) for each run; colours and markers cycle past eight runs."""
    colors = series_colors(len(runs))
    return zip(runs, labels, colors, cycle(MARKERS), strict=False)


def _epochs_with(run: DeepRun, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) where the column has a value (NC metrics are measured every few epochs)."""
    x, y = run.column("epoch"), run.column(column)
    keep = ~np.isnan(y)
    return x[keep], y[keep]


def _accuracy_curve(
    ax: Axes, run: DeepRun, column: str, color: str, marker: str, label: str
) -> None:
    x, y = _epochs_with(run, column)
    ax.plot(x, 100 * y, color=color, marker=marker, ms=3, label=label)


@styled
def plot_accuracy(runs: Sequence[DeepRun]) -> Figure:
    """Test accuracy per epoch, overall and on the tail classes, every run."""
    fig = new_figure(WIDTH_DOUBLE, 2.8)
    axes, legend_ax = subplots_with_legend_row(fig, 1, 2)
    ax_all, ax_tail = axes[0]
    labels = _labels(runs)
    for run, label, color, marker in _series(runs, labels):
        best, last = run.summary.get("best_test_acc"), run.summary.get("last_test_acc")
        known = best is not None and last is not None
        text = f"{label}: best {100 * best:.1f}%, last {100 * last:.1f}%" if known else label
        _accuracy_curve(ax_all, run, "test_acc", color, marker, text)
        if "tail_acc" in run.columns:
            _accuracy_curve(ax_tail, run, "tail_acc", color, marker, text)
    ax_all.set_title("all classes")
    ax_tail.set_title("tail classes (class-averaged)")
    for ax in (ax_all, ax_tail):
        _epoch_axis(ax)
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
    legend_ax.legend(*ax_all.get_legend_handles_labels(), loc="center", ncol=2)
    label_panels([ax_all, ax_tail])
    fig.suptitle(f"Test accuracy during training — {_setting(runs)}")
    add_caption(fig, _accuracy_caption(runs, labels))
    return fig


def _accuracy_caption(runs: Sequence[DeepRun], labels: list[str]) -> str:
    parts = []
    for run, label in zip(runs, labels, strict=True):
        groups = run.summary.get("group_acc") or {}
        split = ", ".join(f"{g} {100 * v:.1f}%" for g, v in groups.items() if v is not None)
        epochs = int(np.nanmax(run.column("epoch")))
        parts.append(f"{label}: {epochs} epochs" + (f", last epoch {split}" if split else ""))
    return (
        "Top-1 accuracy on the balanced test set; the tail group is the smallest third of the "
        "classes by training count. " + "; ".join(parts) + "."
    )


def _nc_panel(ax: Axes, runs: Sequence[DeepRun], column: str, labels: list[str]) -> None:
    for run, label, color, marker in _series(runs, labels):
        x, y = _epochs_with(run, column)
        ax.plot(x, np.maximum(y, 1e-12), color=color, marker=marker, ms=3.5, label=label)
    ax.set_yscale("log")
    _epoch_axis(ax)


def _minority_panel(ax: Axes, runs: Sequence[DeepRun], labels: list[str]) -> None:
    for run, label, color, marker in _series(runs, labels):
        x, y = _epochs_with(run, "minority_cosine_w")
        ax.plot(x, y, color=color, marker=marker, ms=3.5, label=label)
        if "minority_cosine_h" in run.columns:
            x, y = _epochs_with(run, "minority_cosine_h")
            ax.plot(x, y, color=color, marker=marker, ms=3, ls="--", mfc="white")
    k = len(runs[0].counts)
    ax.axhline(-1 / (k - 1), color="#777777", lw=0.7, ls=":", zorder=0)
    ax.axhline(1.0, color="#777777", lw=0.7, ls=":", zorder=0)
    ax.text(ax.get_xlim()[0], -1 / (k - 1), "  simplex ETF", va="top", fontsize=6, color="#555555")
    ax.set_ylim(-0.3, 1.05)
    _epoch_axis(ax)


def _epoch_axis(ax: Axes) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


@styled
def plot_nc(runs: Sequence[DeepRun]) -> Figure:
    """NC1, ETF distance (log) and minority cosines per measured epoch, every run."""
    fig = new_figure(WIDTH_DOUBLE, 2.8)
    axes, legend_ax = subplots_with_legend_row(fig, 1, 3)
    ax_nc1, ax_etf, ax_min = axes[0]
    labels = _labels(runs)
    _nc_panel(ax_nc1, runs, "nc1", labels)
    _nc_panel(ax_etf, runs, "etf_distance", labels)
    _minority_panel(ax_min, runs, labels)
    ax_nc1.set_ylabel("NC1 = tr($\\Sigma_W \\Sigma_B^+$)/K")
    ax_etf.set_ylabel("ETF distance of $W$")
    ax_min.set_ylabel("mean minority cosine")
    ax_nc1.set_title("within-class variability")
    ax_etf.set_title("classifier geometry")
    ax_min.set_title("minority collapse")
    handles, names = ax_nc1.get_legend_handles_labels()
    grey = "#555555"
    handles += [Line2D([], [], color=grey), Line2D([], [], color=grey, ls="--")]
    names += ["(c) classifier vectors", "(c) class means"]
    legend_ax.legend(handles, names, loc="center", ncol=min(len(names), 6))
    label_panels(list(axes[0]))
    fig.suptitle(f"Neural-collapse metrics of the training features — {_setting(runs)}")
    add_caption(fig, _nc_caption(runs, labels))
    return fig


def _nc_caption(runs: Sequence[DeepRun], labels: list[str]) -> str:
    shown = (
        ("nc1", "NC1 {:.3g}"),
        ("etf_distance", "ETF distance {:.2g}"),
        ("minority_cosine_w", "minority cosine {:+.3f} (W)"),
        ("minority_cosine_h", "{:+.3f} (means)"),
    )
    parts = []
    for run, label in zip(runs, labels, strict=True):
        values = [
            fmt.format(_epochs_with(run, col)[1][-1])
            for col, fmt in shown
            if col in run.columns and len(_epochs_with(run, col)[1])
        ]
        parts.append(f"{label}, epoch {int(_epochs_with(run, 'nc1')[0][-1])}: " + ", ".join(values))
    return (
        "Metrics of ufm.metrics on the whole training subset (eval mode, no augmentation), on "
        "the epochs where they were measured. Minority cosine: mean pairwise cosine over the "
        "minority classes, classifier vectors (solid) and centred class means (dashed); a fixed "
        "ETF keeps -1/(K-1). Last measured: " + "; ".join(parts) + "."
    )


def _class_names(run: DeepRun) -> list[str]:
    names = run.summary.get("classes") or []
    return names if len(names) == len(run.counts) else [str(k) for k in range(len(run.counts))]


def _bars(ax: Axes, runs: Sequence[DeepRun], order: np.ndarray, labels: list[str]) -> None:
    width = 0.8 / len(runs)
    x = np.arange(len(order))
    for i, (run, label, color) in enumerate(
        zip(runs, labels, series_colors(len(runs)), strict=True)
    ):
        acc = 100 * np.asarray(run.summary["per_class_acc"], dtype=float)[order]
        mean = float(np.nanmean(acc))
        ax.bar(
            x + (i - (len(runs) - 1) / 2) * width,
            acc,
            width,
            color=color,
            label=f"{label} (mean {mean:.1f}%)",
        )


def _counts_axis(ax: Axes, counts: np.ndarray) -> Axes:
    """A log-scale right axis with n_k as a staircase spanning each class's group of bars."""
    twin = ax.twinx()
    twin.stairs(
        counts,
        np.arange(len(counts) + 1) - 0.5,
        baseline=None,
        color=OKABE_ITO["black"],
        lw=1.0,
        ls="--",
        label="training samples $n_k$",
    )
    twin.set_yscale("log")
    twin.set_ylabel("training samples $n_k$ (log)")
    twin.grid(False)
    twin.spines["right"].set_visible(True)
    return twin


@styled
def plot_per_class(runs: Sequence[DeepRun]) -> Figure:
    """Per-class test accuracy, classes from head to tail, one bar per run."""
    counts = runs[0].counts
    order = head_to_tail(counts)
    names = _class_names(runs[0])
    fig = new_figure(WIDTH_DOUBLE, 3.2)
    axes, legend_ax = subplots_with_legend_row(fig, 1, 1, legend_height=0.1)
    ax = axes[0, 0]
    labels = _labels(runs)
    _bars(ax, runs, order, labels)
    twin = _counts_axis(ax, counts[order])
    ax.set_xticks(
        np.arange(len(order)),
        [f"{names[k]}\n{counts[k]}" for k in order],
        rotation=0 if len(order) <= 10 else 90,
        fontsize=6,
    )
    ax.set_xlabel("class and training count, head → tail")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    handles, entries = ax.get_legend_handles_labels()
    more, more_entries = twin.get_legend_handles_labels()
    legend_ax.legend(handles + more, entries + more_entries, loc="center", ncol=len(runs) + 1)
    fig.suptitle(f"Per-class test accuracy, last epoch — {_setting(runs)}")
    add_caption(fig, _per_class_caption(runs, labels, counts))
    return fig


def _per_class_caption(runs: Sequence[DeepRun], labels: list[str], counts: np.ndarray) -> str:
    tail = np.argsort(counts, kind="stable")[: max(1, len(counts) // 3)]
    parts = []
    for run, label in zip(runs, labels, strict=True):
        acc = np.asarray(run.summary["per_class_acc"], dtype=float)
        parts.append(
            f"{label}: worst class {100 * np.nanmin(acc):.1f}%, "
            f"tail third {100 * np.nanmean(acc[tail]):.1f}%"
        )
    return (
        f"Balanced test set; training counts (dashed, right axis) with imbalance ratio "
        f"{counts.max() / counts.min():g}. " + "; ".join(parts) + "."
    )


def draw_training_runs(run_dirs: Sequence[str | Path], out: str | Path) -> list[Path]:
    """The three training figures of one or several deep runs, into `out`."""
    runs = [load_deep_run(d) for d in run_dirs]
    check_runs(runs)
    out = Path(out)
    paths = save_figure(plot_accuracy(runs), out, "training_accuracy")
    paths += save_figure(plot_nc(runs), out, "training_nc")
    paths += save_figure(plot_per_class(runs), out, "training_per_class")
    return paths


def draw_deep_run(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """The training figures of one deep.train run, into `out` (default <run_dir>/figures)."""
    out_dir = Path(out) if out is not None else Path(run_dir) / "figures"
    return draw_training_runs([run_dir], out_dir)


def compare_folder(run_dirs: Sequence[str | Path], base: str | Path = "runs/compare") -> Path:
    """A folder named after the compared runs: runs/compare/<a>_vs_<b>[...]."""
    names = "_vs_".join(Path(d).resolve().name for d in run_dirs)
    return Path(base) / (names if len(names) <= 120 else names[:100] + f"_and_{len(run_dirs)}_runs")
