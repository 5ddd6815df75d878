"""`python -m ufm.sweeps`: compute theory sweeps into run folders (kind "sweep").

    python -m ufm.sweeps minority-collapse               # -> runs/sweeps/minority-collapse/
    python -m ufm.sweeps all --size small                # -> runs/sweeps/<name>-small/
    python -m ufm.sweeps seli --recompute --cache-dir D  # computed again, into D/seli/

A folder that holds the same parameters (config.yaml) and its results (summary.json) is reused;
one with other parameters, or corrupt or unfinished, is computed again. Draw them with
`python -m figures --sweep NAME`. Errors are one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ufm.runfolder import RunFolderError
from ufm.sweeps import SIZES, SWEEPS, run_sweep

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ufm.sweeps",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="sweeps: "
        + "; ".join(f"{name} ({sweep.description})" for name, sweep in SWEEPS.items()),
    )
    p.add_argument("names", nargs="+", choices=[*SWEEPS, "all"], metavar="NAME|all")
    p.add_argument("--size", choices=SIZES, default="default", help="sweep size")
    p.add_argument("--recompute", action="store_true", help="ignore folders already computed")
    p.add_argument(
        "--cache-dir", type=Path, default=Path("runs/sweeps"), help="where sweeps are written"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the solvers (default 1: fastest for these K x K problems)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = list(SWEEPS) if "all" in args.names else list(dict.fromkeys(args.names))
    command = [sys.executable, "-m", "ufm.sweeps", *(sys.argv[1:] if argv is None else argv)]
    try:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        for name in names:
            run_sweep(
                name,
                size=args.size,
                cache_dir=args.cache_dir,
                recompute=args.recompute,
                threads=args.threads,
                command=command,
                echo=lambda line, name=name: print(f"{name}: {line}", flush=True),
            )
    except (RunFolderError, OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
