"""Figures of the theory sweeps, drawn from their run folders (kind "sweep").

The sweeps are computed by `python -m ufm.sweeps` (the package `ufm.sweeps`), which writes
runs/sweeps/<name>/ (config.yaml: the parameters, summary.json: the results) and reuses a folder
whose parameters match. `draw_sweeps` runs that command as a subprocess, so that a missing or
stale folder is computed and a current one reused, then reads each folder and draws it; this
package imports nothing that solves. One drawing function per sweep,
`draw(results, params) -> [(file name, Figure)]`:

- minority-collapse: `figures.minority_ratio_figure`;
- hong-ling: `figures.hong_ling_phase_figure`;
- seli: `figures.seli_approach_figure`;
- geometry: `figures.geometry_k3_k4_figure`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from figures import (
    geometry_k3_k4_figure,
    hong_ling_phase_figure,
    minority_ratio_figure,
    seli_approach_figure,
)
from figures.runs import FigureDataError
from figures.style import save_figure
from ufm.runfolder import read_run, sweep_folder

__all__ = ["SIZES", "SWEEP_FIGURES", "SweepFigure", "draw_sweep_folder", "draw_sweeps"]

Params = dict[str, Any]
Results = dict[str, Any]
SIZES = ("default", "small")  # as `ufm.sweeps.SIZES`


@dataclass(frozen=True)
class SweepFigure:
    """How one sweep is drawn: what it shows and its drawing function."""

    description: str
    draw: Callable[[Results, Params], list[tuple[str, Figure]]]


SWEEP_FIGURES: dict[str, SweepFigure] = {  # in the order of `python -m ufm.sweeps all`
    "minority-collapse": SweepFigure(
        "minority cosine against the imbalance ratio", minority_ratio_figure.draw
    ),
    "hong-ling": SweepFigure(
        "minority spread against lambda / lambda*", hong_ling_phase_figure.draw
    ),
    "seli": SweepFigure(
        "classifier Gram matrix as lambda -> 0 versus SELI", seli_approach_figure.draw
    ),
    "geometry": SweepFigure(
        "K = 3 and K = 4 solutions, learnable versus fixed ETF", geometry_k3_k4_figure.draw
    ),
}


def compute_sweeps(
    names: Sequence[str],
    *,
    size: str = "default",
    cache_dir: str | Path = "runs/sweeps",
    recompute: bool = False,
    threads: int | None = None,
) -> None:
    """`python -m ufm.sweeps NAMES ...` in a subprocess: computes the missing or stale folders
    (its output goes to this process's stdout); RuntimeError when it fails."""
    command = [sys.executable, "-m", "ufm.sweeps", *names, "--size", size]
    command += ["--cache-dir", str(cache_dir)]
    if recompute:
        command.append("--recompute")
    if threads is not None:
        command += ["--threads", str(threads)]
    sys.stdout.flush()
    done = subprocess.run(command, check=False, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        reason = lines[-1].removeprefix("error: ")
        raise RuntimeError(f"python {' '.join(command[1:])} failed: {reason}")


def draw_sweep_folder(name: str, folder: str | Path, out: str | Path | None = None) -> list[Path]:
    """Draw the run folder of sweep `name` (config = parameters, summary = results) into `out`
    (default <folder>/figures); returns the files written."""
    folder = Path(folder)
    run = read_run(folder)  # FigureDataError (RunFolderError) when missing or unfinished
    if run.kind != "sweep" or run.name != name:
        raise FigureDataError(f"{folder} is not a run folder of the sweep {name!r}")
    results, params = run.summary, run.config
    out_dir = Path(out) if out is not None else folder / "figures"
    paths: list[Path] = []
    for file_name, fig in SWEEP_FIGURES[name].draw(results, params):
        paths += save_figure(fig, out_dir, file_name)
    return paths


def draw_sweeps(
    names: Sequence[str],
    *,
    size: str = "default",
    cache_dir: str | Path = "runs/sweeps",
    out: Callable[[str], Path | None] = lambda name: None,
    recompute: bool = False,
    threads: int | None = None,
) -> list[Path]:
    """Compute what is missing or stale (`compute_sweeps`), then draw each sweep into
    `out(name)` (None: its folder's figures/); returns the files written."""
    unknown = [name for name in names if name not in SWEEP_FIGURES]
    if unknown:
        raise ValueError(f"unknown sweep {unknown[0]!r}; choose from {', '.join(SWEEP_FIGURES)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    if not names:
        return []
    compute_sweeps(names, size=size, cache_dir=cache_dir, recompute=recompute, threads=threads)
    paths: list[Path] = []
    for name in names:
        paths += draw_sweep_folder(name, sweep_folder(name, size, cache_dir), out(name))
    return paths
