"""Class-by-class matrices (cosines, Gram matrices) drawn head to tail.

Classes are ordered by decreasing count, so that minority collapse shows up as a uniform
block in the bottom-right corner; the minority group is outlined.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

from figures.style import DIVERGING

__all__ = ["draw_matrix", "head_to_tail", "set_class_ticks"]


def head_to_tail(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Class indices by decreasing count (ties keep their index order)."""
    return np.argsort(-np.asarray(counts), kind="stable")


def set_class_ticks(ax: Axes, counts: np.ndarray, *, x: bool = True, y: bool = True) -> None:
    """Tick every class (about ten ticks for many classes); labelled by n_k on the axes asked."""
    k = len(counts)
    step = 1 if k <= 12 else int(np.ceil(k / 10))
    pos = np.arange(0, k, step)
    labels = [str(int(counts[i])) for i in pos]
    ax.set_xticks(pos, labels if x else [], rotation=90)
    ax.set_yticks(pos, labels if y else [])
    ax.tick_params(length=2, pad=1, labelsize=5.5 if k <= 12 else 6)


def _outline(ax: Axes, positions: np.ndarray) -> None:
    """Dashed box around the contiguous block of `positions` (head-to-tail indices)."""
    if len(positions) < 2:
        return
    lo, hi = positions.min() - 0.5, positions.max() + 0.5
    box = Rectangle((lo, lo), hi - lo, hi - lo, fill=False, lw=1.0, ls="--", ec="black")
    ax.add_patch(box)


def draw_matrix(
    ax: Axes,
    matrix: np.ndarray,
    counts: np.ndarray,
    *,
    minority: Sequence[int] | np.ndarray = (),
    vmin: float = -1.0,
    vmax: float = 1.0,
    cmap: str = DIVERGING,
    xlabels: bool = True,
    ylabels: bool = True,
) -> AxesImage:
    """Draw a (K, K) class matrix head to tail, ticks labelled by n_k, the minority outlined."""
    order = head_to_tail(counts)
    image = ax.imshow(
        matrix[np.ix_(order, order)], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest"
    )
    set_class_ticks(ax, np.asarray(counts)[order], x=xlabels, y=ylabels)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    _outline(ax, rank[np.asarray(minority, dtype=np.int64)])
    ax.grid(False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(True)
    return image
