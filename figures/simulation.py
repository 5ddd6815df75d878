"""Figures of one `python -m ufm.simulate` run, drawn into <run>/figures/.

- ufm_convergence: certified gap f - f_low (f_low a certified lower bound on f*) against
  iteration and against wall time, the four configurations (fixed ETF / learnable classifier,
  CE / DR), log scales; the caption says under which solver family DR beats CE.
- ufm_geometry: cosine matrices of the classifier vectors and of the centred class means,
  head to tail, one column per configuration; minority collapse shows as a red block.

`draw_ufm_run` is what `ufm.simulate` calls when a run finishes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from figures.heatmaps import draw_matrix
from figures.runs import UfmRun, load_geometry, load_ufm_run
from figures.style import (
    CONFIG_STYLE,
    WIDTH_DOUBLE,
    add_caption,
    config_label,
    label_panels,
    new_figure,
    save_figure,
    styled,
    subplots_with_legend_row,
)
from ufm.metrics import gram_group_cosines

__all__ = ["GAP_FLOOR", "draw_ufm_run", "plot_convergence", "plot_geometry"]

GAP_FLOOR = 1e-16  # gaps at or below rounding are drawn here on the log axis


def problem_title(run: UfmRun) -> str:
    """'K = 10, ρ = 100 (exponential), N = 12406, d = 64' from a run's config."""
    cfg, counts = run.config, run.counts
    ratio = counts.max() / counts.min()
    profile = "step, R" if cfg.get("profile") == "step" else "exponential, ρ"
    return (
        f"K = {len(counts)}, {profile} = {ratio:g}, N = {int(counts.sum())}, "
        f"d = {cfg.get('dim', '?')}, E_W = {cfg.get('e_w', '?'):g}, E_H = {cfg.get('e_h', '?'):g}"
    )


def _gap_curve(ax: Axes, x: np.ndarray, gap: np.ndarray, name: str, label: str) -> None:
    style = CONFIG_STYLE.get(name, {"color": "black", "linestyle": "-", "marker": "o"})
    y = np.maximum(gap, GAP_FLOOR)
    ax.plot(x, y, color=style["color"], ls=style["linestyle"], label=label)
    ax.plot(x[-1:], y[-1:], color=style["color"], marker=style["marker"], ls="none", ms=5)


def _convergence_label(run: UfmRun, name: str) -> str:
    entry = run.entry(name)
    label = f"{config_label(name)} ({entry['iterations']} it, {entry['seconds']:.2f} s)"
    return label + ", degenerate" if "note" in entry else label


# Where Yang et al.'s "DR converges better" holds (measured by proofs_checks.convergence).
DR_SCOPE = (
    "Fixed ETF, DR against CE: under Frank-Wolfe steps DR reaches h* in one iteration (its "
    "gradient only pulls), under plain projected gradient ('pgd') its gap decays like t^-2 "
    "(quartic growth around h*) and it is slower than CE; the accelerated 'fast' solver's "
    "growing step aligns h with w*_k like a Frank-Wolfe step. So the claim holds for the "
    "first family only."
)


def _convergence_caption(run: UfmRun) -> str:
    parts = []
    for name in run.names:
        e = run.entry(name)
        cert = e.get("reference", {}).get("certificate_gap")
        extra = f", certificate gap {cert:.0e}" if cert else ""
        parts.append(f"{config_label(name)}: f* = {e['optimum']:.6g}, {e['optimum_source']}{extra}")
    tol = run.config.get("tol")
    return (
        f"Certified gap f − f_low (f_low: a certified lower bound on f*; nats per sample) "
        f"from a random start, solver "
        f"'{run.config.get('solver', '?')}', stopping tolerance {tol:g}. "
        + "; ".join(parts)
        + f". Gaps at or below {GAP_FLOOR:g} are drawn at {GAP_FLOOR:g}. "
        + DR_SCOPE
    )


@styled
def plot_convergence(run: UfmRun) -> Figure:
    """Gap against iteration (from 1) and against seconds, every configuration, log-log."""
    fig = new_figure(WIDTH_DOUBLE, 3.1)
    axes, legend_ax = subplots_with_legend_row(fig, 1, 2)
    ax_it, ax_s = axes[0]
    ax_s.sharey(ax_it)
    ax_s.tick_params(labelleft=False)
    for name in run.names:
        h = run.history[name]
        label = _convergence_label(run, name)
        keep = h["iteration"] >= 1
        _gap_curve(ax_it, h["iteration"][keep], h["gap"][keep], name, label)
        _gap_curve(ax_s, h["seconds"], h["gap"], name, label)
    tol = run.config.get("tol")
    for ax in (ax_it, ax_s):
        ax.set_xscale("log")
        ax.set_yscale("log")
        if tol:
            ax.axhline(tol, color="#666666", lw=0.8, ls=":", zorder=0)
    if tol:
        ax_it.annotate(
            f"tolerance {tol:g}",
            (1.05, tol),
            textcoords="offset points",
            xytext=(0, 3),
            fontsize=6.5,
            color="#444444",
        )
    ax_it.set_xlabel("iteration")
    ax_s.set_xlabel("wall time (s)")
    ax_it.set_ylabel("certified gap  f − f_low  (nats / sample)")
    legend_ax.legend(*ax_it.get_legend_handles_labels(), loc="center", ncol=2)
    label_panels([ax_it, ax_s])
    fig.suptitle(f"Convergence to the global optimum — LPM, {problem_title(run)}")
    add_caption(fig, _convergence_caption(run))
    return fig


def _geometry_panel(ax: Axes, run: UfmRun, name: str, key: str, first: bool) -> object:
    matrix = run.geometry[name][key]
    image = draw_matrix(
        ax, matrix, run.counts, minority=run.minority, xlabels=key == "cosine_h", ylabels=first
    )
    if len(run.minority) >= 2:
        ax.set_title(f"minority cos {gram_group_cosines(matrix, run.minority)[0]:+.3f}", fontsize=7)
    return image


@styled
def plot_geometry(run: UfmRun) -> Figure:
    """Cosine heatmaps: rows classifier w_k and centred class means, one column per config."""
    names = run.names
    fig = new_figure(1.55 * len(names) + 0.8, 3.9)
    axes = np.atleast_2d(fig.subplots(2, len(names), squeeze=False))
    image = None
    for j, name in enumerate(names):
        image = _geometry_panel(axes[0, j], run, name, "cosine_w", j == 0)
        _geometry_panel(axes[1, j], run, name, "cosine_h", j == 0)
        axes[0, j].annotate(
            config_label(name),
            (0.5, 1.22),
            xycoords="axes fraction",
            ha="center",
            fontsize=8,
            fontweight="bold",
        )
        axes[1, j].set_xlabel("class ($n_k$)")
    axes[0, 0].set_ylabel("classifier $w_k$\nclass ($n_k$)")
    axes[1, 0].set_ylabel("class mean $\\mu_k-\\mu_G$\nclass ($n_k$)")
    fig.colorbar(image, ax=axes, shrink=0.7, label="cosine", ticks=[-1, -0.5, 0, 0.5, 1])
    fig.suptitle(f"Geometry at the optimum, head → tail — {problem_title(run)}")
    k = len(run.counts)
    add_caption(
        fig,
        f"Pairwise cosines, classes ordered by decreasing n_k; dashed box: the minority group "
        f"({len(run.minority)} classes, n_k <= {int(run.counts[run.minority].max())}). A simplex "
        f"ETF has every off-diagonal cosine -1/(K-1) = {-1 / (k - 1):.3f}; minority collapse is a "
        f"block of cosines near +1.",
    )
    return fig


def draw_ufm_run(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """Every figure of a ufm.simulate run folder, into `out` (default <run_dir>/figures).

    The convergence figure needs summary.json and history.csv, the heatmaps geometry.npz too;
    a folder without geometry.npz (older runs) gets the first and then a FigureDataError.
    """
    run = load_ufm_run(run_dir, geometry=False)
    out_dir = Path(out) if out is not None else Path(run_dir) / "figures"
    paths = save_figure(plot_convergence(run), out_dir, "ufm_convergence")
    run.geometry = load_geometry(run.path, run.names)
    paths += save_figure(plot_geometry(run), out_dir, "ufm_geometry")
    return paths
