"""One look for every figure: the colour-blind-safe palette, the rc settings, captions, saving.

Colours are the Okabe-Ito palette (Okabe & Ito 2008), distinguishable under every common colour
vision deficiency; each configuration also has its own line style and marker, so the figures
survive grey-scale printing. Diverging matrices use ColorBrewer's RdBu (colour-blind safe),
sequential ones cividis. Figures are built with matplotlib's object-oriented API (no pyplot
state, no window: PNGs are rendered by Agg). Every figure is written twice, as PNG (for
looking) and PDF (for papers, fonts embedded as TrueType), each atomically.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import ParamSpec, TypeVar

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ufm.io import atomic_write_bytes

__all__ = [
    "CONFIG_STYLE",
    "DIVERGING",
    "OKABE_ITO",
    "SEQUENTIAL",
    "WIDTH_DOUBLE",
    "WIDTH_SINGLE",
    "add_caption",
    "config_label",
    "figure_style",
    "label_panels",
    "new_figure",
    "save_figure",
    "series_colors",
    "styled",
    "subplots_with_legend_row",
]

P = ParamSpec("P")
R = TypeVar("R")

OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "grey": "#999999",
}
# Fixed ETF in blues, learnable in oranges; CE solid, DR dashed.
CONFIG_STYLE = {
    "etf+ce": {"color": OKABE_ITO["blue"], "linestyle": "-", "marker": "o"},
    "etf+dr": {"color": OKABE_ITO["sky"], "linestyle": "--", "marker": "s"},
    "learnable+ce": {"color": OKABE_ITO["vermillion"], "linestyle": "-", "marker": "^"},
    "learnable+dr": {"color": OKABE_ITO["orange"], "linestyle": "--", "marker": "D"},
}
_SERIES = ("blue", "vermillion", "green", "purple", "orange", "sky", "black", "yellow")
DIVERGING = "RdBu_r"
SEQUENTIAL = "cividis"

_CAPTION_SIZE = 6.5  # pt
_CAPTION_CHARS_PER_INCH = 19  # characters of the caption font per inch of figure width
WIDTH_SINGLE = 3.4  # in, one column of a two-column paper
WIDTH_DOUBLE = 7.0  # in, full text width
PNG_DPI = 200

_RC = {
    "font.family": "DejaVu Sans",
    "mathtext.fontset": "dejavusans",
    "font.size": 8,
    "axes.titlesize": 8.5,
    "figure.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,  # grid under bars and lines
    "grid.color": "#DDDDDD",
    "grid.linewidth": 0.5,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.4,
    "lines.markersize": 4,
    "legend.frameon": False,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "savefig.dpi": PNG_DPI,
}


def config_label(name: str) -> str:
    """'learnable+ce' -> 'learnable + CE' (the legend form of a configuration name)."""
    classifier, _, loss = name.partition("+")
    head = "fixed ETF" if classifier == "etf" else classifier
    return f"{head} + {loss.upper()}" if loss else head


def series_colors(count: int) -> list[str]:
    """`count` Okabe-Ito colours for an ordered list of series (runs, settings); cycles after 8."""
    return [OKABE_ITO[_SERIES[i % len(_SERIES)]] for i in range(count)]


@contextmanager
def figure_style() -> Iterator[None]:
    """The rc settings of every figure, for the duration of a `with` block."""
    with matplotlib.rc_context(_RC):
        yield


def styled(func: Callable[P, R]) -> Callable[P, R]:
    """Run a drawing function inside `figure_style()`."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with figure_style():
            return func(*args, **kwargs)

    return wrapper


def new_figure(width: float, height: float, **kwargs: object) -> Figure:
    """A figure of `width` x `height` inches with constrained layout (no pyplot state kept)."""
    return Figure(figsize=(width, height), layout="constrained", **kwargs)


def subplots_with_legend_row(
    fig: Figure, nrows: int, ncols: int, *, legend_height: float = 0.12, **kwargs: object
) -> tuple[np.ndarray, Axes]:
    """A grid of axes (nrows, ncols) under a full-width, axis-free row that holds the legend;
    the layout engine keeps the row clear of the title and of the axes."""
    grid = fig.add_gridspec(nrows + 1, ncols, height_ratios=[legend_height] + [1.0] * nrows)
    legend_ax = fig.add_subplot(grid[0, :])
    legend_ax.axis("off")
    axes = np.empty((nrows, ncols), dtype=object)
    for i in range(nrows):
        for j in range(ncols):
            axes[i, j] = fig.add_subplot(grid[i + 1, j], **kwargs)
    return axes, legend_ax


def label_panels(axes: Sequence[Axes], start: str = "a") -> None:
    """Bold panel letters (a, b, ...) as left-aligned titles; keep centred titles short."""
    for i, ax in enumerate(axes):
        ax.set_title(chr(ord(start) + i), loc="left", fontweight="bold", fontsize=9)


def add_caption(fig: Figure, text: str) -> None:
    """A small caption under the axes holding the key numbers, wrapped to the figure width.

    The figure grows by the caption's height and the constrained layout keeps to the band
    above it, so that nothing (axes, figure legends) overlaps the text.
    """
    width, height = fig.get_size_inches()
    lines = textwrap.wrap(text, int(width * _CAPTION_CHARS_PER_INCH))
    band = (len(lines) * _CAPTION_SIZE * 1.3 + 4) / 72  # inches
    fig.set_size_inches(width, height + band)
    frac = band / (height + band)
    fig.get_layout_engine().set(rect=(0, frac, 1, 1 - frac))
    fig.text(
        0.01, frac, "\n".join(lines), ha="left", va="top", fontsize=_CAPTION_SIZE, color="#333333"
    )


def save_figure(fig: Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write `name`.png and `name`.pdf into `out_dir` atomically; returns both paths."""
    out_dir = Path(out_dir)
    paths = []
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        metadata = {"CreationDate": None} if ext == "pdf" else {}
        with figure_style():  # the PDF font type and the PNG resolution are read when saving
            fig.savefig(
                buf,
                format=ext,
                dpi=PNG_DPI,
                bbox_inches="tight",
                pad_inches=0.03,
                metadata=metadata,
            )
        paths.append(atomic_write_bytes(out_dir / f"{name}.{ext}", buf.getvalue()))
    return paths
