"""`python -m figures`: every figure, drawn from run folders (ufm.simulate, deep.train,
deep.compare, and the theory sweeps of ufm.sweeps).

    python -m figures runs/ufm/<run>                  # -> runs/ufm/<run>/figures/
    python -m figures runs/deep/<run>                 # -> runs/deep/<run>/figures/
    python -m figures runs/deep/<a> runs/deep/<b>     # compared -> runs/compare/<a>_vs_<b>/
    python -m figures runs/deep/collapse-fmnist       # after deep.compare: minority collapse
    python -m figures --sweep minority-collapse       # -> runs/sweeps/minority-collapse/figures/
    python -m figures --sweep all --out paper/figs    # every sweep into one folder

The kind of each run folder is read from its run.json (older folders: from the files they
hold). A sweep is computed by `python -m ufm.sweeps`, run as a subprocess with the same --size,
--cache-dir, --recompute and --threads: it writes the sweep's run folder when it is missing or
its parameters changed and reuses it otherwise; then the folder is read and drawn. A folder
that lacks what a figure needs gives one line on stderr and exit status 2; nothing is
half-written (every file is written atomically).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from figures.collapse import comparison_file, draw_comparison
from figures.runs import FigureDataError, detect_kind
from figures.simulation import draw_ufm_run
from figures.sweep_figures import SIZES, SWEEP_FIGURES, draw_sweeps
from figures.training import compare_folder, draw_deep_run, draw_training_runs
from ufm.io import check_output_dir
from ufm.runfolder import is_run_folder
from ufm.runtime import default_threads, torch_threads

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m figures",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="sweeps: "
        + "; ".join(f"{name} ({sweep.description})" for name, sweep in SWEEP_FIGURES.items())
        + " (computed by python -m ufm.sweeps)",
    )
    p.add_argument("runs", nargs="*", type=Path, help="run folders (ufm.simulate or deep.train)")
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        choices=[*SWEEP_FIGURES, "all"],
        help="compute (or reuse its run folder) and draw a sweep; repeat for several",
    )
    p.add_argument("--out", type=Path, default=None, help="folder for the figures")
    p.add_argument("--size", choices=SIZES, default="default", help="sweep size")
    p.add_argument("--recompute", action="store_true", help="compute the sweeps again")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of the sweeps' solvers (default 1) and of the drawing (default: "
        "half the CPUs)",
    )
    p.add_argument(
        "--cache-dir", type=Path, default=Path("runs/sweeps"), help="the sweeps' run folders"
    )
    return p


def _subfolder(out: Path | None, name: str, several: bool) -> Path | None:
    """`out` itself for one target, out/<name> when several share it."""
    if out is None:
        return None
    return out / name if several else out


def _draw_runs(runs: Sequence[Path], out: Path | None, sweeps: int) -> list[Path]:
    compared = [run for run in runs if _is_comparison(run)]
    paths: list[Path] = []
    for run in compared:  # deep.compare folders, or deep.table roots holding one
        paths += draw_comparison(run, _subfolder(out, run.name, len(runs) + sweeps > 1))
    runs = [run for run in runs if run not in compared]
    kinds = {run: detect_kind(run) for run in runs}
    ufm_runs = [r for r in runs if kinds[r] == "ufm"]
    deep_runs = [r for r in runs if kinds[r] == "deep"]
    several = len(ufm_runs) + bool(deep_runs) + sweeps + len(compared) > 1  # sharing --out
    for run in ufm_runs:
        paths += draw_ufm_run(run, _subfolder(out, run.name, several))
    if len(deep_runs) == 1:
        paths += draw_deep_run(deep_runs[0], _subfolder(out, deep_runs[0].name, several))
    elif deep_runs:
        target = _subfolder(out, "training", several) or compare_folder(deep_runs)
        paths += draw_training_runs(deep_runs, target)
    return paths


def _is_comparison(path: Path) -> bool:
    """A deep.compare output (comparison.json), or a folder of runs that holds one."""
    if is_run_folder(path):
        return False
    if comparison_file(path) is not None:
        return True
    if path.is_dir() and any(is_run_folder(p) for p in path.iterdir()):
        raise FigureDataError(
            f"{path} is a folder of training runs without a comparison; run "
            f"python -m deep.compare {path} first, then draw it"
        )
    return False


def _sweep_names(names: Sequence[str]) -> list[str]:
    return list(SWEEP_FIGURES) if "all" in names else list(dict.fromkeys(names))


def _draw_sweeps(chosen: Sequence[str], args: argparse.Namespace, several: bool) -> list[Path]:
    return draw_sweeps(
        chosen,
        size=args.size,
        cache_dir=args.cache_dir,
        out=lambda name: _subfolder(args.out, name, several),
        recompute=args.recompute,
        threads=args.threads,
    )


def _report(paths: Sequence[Path]) -> None:
    for folder in dict.fromkeys(p.parent for p in paths):
        names = sorted({p.stem for p in paths if p.parent == folder})
        print(f"{folder}: {', '.join(names)} (png, pdf)")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.runs and not args.sweep:
        _parser().print_usage(sys.stderr)
        print("error: give run folders and/or --sweep NAME", file=sys.stderr)
        return 2
    sweeps = _sweep_names(args.sweep)
    several = len(sweeps) + len(args.runs) > 1
    try:
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        if args.out is not None:  # before any run is read or sweep computed
            check_output_dir(args.out, "--out")
        with torch_threads(args.threads or default_threads()):
            paths = _draw_runs(args.runs, args.out, len(sweeps))
            paths += _draw_sweeps(sweeps, args, several)
    except (FigureDataError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _report(paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
