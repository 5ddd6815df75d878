"""The results table: every (dataset, imbalance, method, seed) cell is a run folder of its own.

    python -m deep.table                                  # every method on Fashion-MNIST-LT
    python -m deep.table --datasets cifar10,cifar100 --imbalance 100,50,10 \\
        --methods ce,etf-dr,ldam-drw,allnc --seeds 3
    python -m deep.table ... --dry-run                    # one deep.train command per cell
    python -m deep.table ... --collect-only               # the table from the folders there are

Cells run one after another, the seed outermost (a partial table holds every method's first
seeds), each as `python -m deep.train` in a process of its own (or in this one, --in-process).
A finished cell is left alone and an interrupted one continued with --resume, so running the
same command again resumes the table. A cell's folder is ROOT/<dataset>-<imbalance>-<method>-
s<seed>; methods are the presets of `deep.methods`. A folder that holds a run of another
configuration (another preset, say) is neither resumed nor counted: the table says so.

From whatever folders exist, ROOT gets results.md and results.csv (per dataset, imbalance and
method: the mean and sample standard deviation over the n finished seeds of the last epoch's
overall, head, medium and tail accuracy, NC1 and minority cosines) and runs.csv (one row per
cell); cells without a finished run are listed as missing.

The plan lives in `deep.table_plan`, the running in `deep.table_run`, the results in
`deep.table_results`; this module is the command.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from deep.config import PRESETS
from deep.longtail import PROFILES
from deep.methods import ORDER
from deep.table_plan import Cell, Plan, build_plan
from deep.table_results import inspect_cell, write_results
from deep.table_run import run_cells

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m deep.table",
        description="Run (or resume) every dataset x imbalance x method x seed cell as its own "
        "deep.train run folder and tabulate mean ± std over seeds.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--datasets", default="fashion-mnist", help="comma-separated dataset names")
    p.add_argument("--imbalance", default="100", help="comma-separated ratios n_max / n_min")
    p.add_argument("--methods", default="all", help=f"comma-separated, or all: {', '.join(ORDER)}")
    p.add_argument("--seeds", default="3", help="N for seeds 0..N-1, or a list such as 0,3,7")
    p.add_argument(
        "--preset", choices=sorted(PRESETS), help="default: paper with a GPU, else quick"
    )
    p.add_argument("--root", default="runs/deep/table", help="folder of the cells and results")
    p.add_argument("--data-root", help="folder with the datasets' files (passed to every run)")
    p.add_argument(
        "--profile", choices=PROFILES, help="class-count profile of every run (default: preset's)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every run",
    )
    p.add_argument("--nproc", type=int, default=1, help="processes per run, under torchrun")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads of every run (default: deep.train's, half the CPUs)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print one command per cell, run none")
    mode.add_argument("--collect-only", action="store_true", help="tabulate, run nothing")
    p.add_argument("--in-process", action="store_true", help="run cells in this process")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        plan = build_plan(args)
    except ValueError as exc:
        print(f"deep.table: error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        for cell in plan.cells():
            print(_dry_run_line(plan, cell))
        return 0
    failed, interrupted = ([], False) if args.collect_only else run_cells(plan, args.in_process)
    records = [inspect_cell(plan, cell) for cell in plan.cells()]
    print(write_results(plan, records, shlex.join(["python", "-m", "deep.table", *argv])), end="")
    print(f"deep.table: wrote {plan.root / 'results.md'}, results.csv, runs.csv")
    for cell in failed:
        print(f"deep.table: {cell.name} failed; see its output above", file=sys.stderr)
    if records and all(r.status == "conflict" for r in records):
        print(
            f"deep.table: error: every cell's folder under {plan.root} holds another "
            f"configuration; nothing was run or counted (another --root, or move them away)",
            file=sys.stderr,
        )
        return 1
    return 130 if interrupted else int(bool(failed))


def _dry_run_line(plan: Plan, cell: Cell) -> str:
    record = inspect_cell(plan, cell)
    if record.status == "conflict":
        return f"# {cell.name}: {record.note}; move {plan.folder(cell).path} away to run it"
    return shlex.join(plan.command(cell))


if __name__ == "__main__":
    sys.exit(main())
