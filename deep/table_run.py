"""Running the cells of a table (`python -m deep.table`): one after another, each as
`python -m deep.train` in a process of its own (or in this one); a finished cell is left alone,
an interrupted one continued with --resume."""

from __future__ import annotations

import shlex
import subprocess
import sys

from deep.table_plan import Cell, Plan
from deep.table_results import inspect_cell

__all__ = ["run_cells"]


def run_cells(plan: Plan, in_process: bool = False) -> tuple[list[Cell], bool]:
    """Run every cell that has not finished; returns the cells that failed and whether the
    table was interrupted."""
    failed: list[Cell] = []
    for cell in plan.cells():
        record = inspect_cell(plan, cell)
        if record.status == "conflict":
            print(f"deep.table: {cell.name}: skipped, the folder {record.note}", file=sys.stderr)
        if record.status in ("finished", "conflict"):
            continue
        command = plan.command(cell)
        print(f"deep.table: {cell.name}: {shlex.join(command)}", flush=True)
        status = _execute(command, in_process)
        if status == 130:
            return failed, True
        if status != 0:
            failed.append(cell)
    return failed, False


def _execute(command: list[str], in_process: bool) -> int:
    if in_process:
        from deep.train import main as train_main

        return train_main(command[command.index("deep.train") + 1 :])
    try:
        return subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:
        return 130
