"""`python -m proofs_checks`: run every theorem check and print a PASS/FAIL/ERROR table.

    python -m proofs_checks                              # all checks (full size)
    python -m proofs_checks --only theorem1 --json out.json
    python -m proofs_checks --list                       # name, statement, source
    python -m proofs_checks --size small                 # the sizes the test-suite runs
    python -m proofs_checks --threads 2                  # torch threads (default 1)

Each row: name, PASS/FAIL/ERROR, the largest error found (the measurement closest to or beyond
its tolerance), that tolerance, seconds, the statement and its source. FAIL: a measurement does
not hold; ERROR: the check raised and measured nothing. Failed measurements and the last traceback
line of each error are listed under the table. `--json` writes one object per check with keys
name, source, status, passed, max_error, tolerance, seconds, details. Exit status: 0 if every
check passed, 1 if any failed (and none raised), 2 on a usage error, 3 if any check raised.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from proofs_checks.registry import SIZES, Check, CheckReport, all_checks
from ufm.io import atomic_write_json, check_output_file

__all__ = ["format_row", "main", "select"]

COLUMNS = ("check", "result", "max error", "tolerance", "seconds", "statement", "source")
WIDTHS = (23, 6, 9, 9, 7, 80, 0)
FAILURES_SHOWN = 5
EXIT_FAILED, EXIT_ERROR = 1, 3


def _cells(values: Sequence[str]) -> str:
    return "  ".join(v.ljust(w) if w else v for v, w in zip(values, WIDTHS, strict=True)).rstrip()


def format_row(report: CheckReport) -> str:
    """One line of the table for `report`."""
    r = report.result
    return _cells(
        (
            report.name,
            r.status,
            f"{r.max_error:.2e}",
            f"{r.tolerance:.1e}",
            f"{report.seconds:.1f}",
            report.statement,
            report.source,
        )
    )


def _failures(report: CheckReport) -> list[str]:
    """Lines naming the failed measurements of a failed check (at most FAILURES_SHOWN), or the
    last traceback line of a check that raised."""
    details = report.result.details
    if report.result.error is not None:
        return [f"  {report.name}: {report.result.error}"]
    failed = {m["label"]: m for m in details.get("measurements", []) if not m["holds"]}
    lines = [f"  {report.name}: {details['finding']}"] if "finding" in details else []
    for label in details.get("failed", [])[:FAILURES_SHOWN]:
        m = failed.get(label)
        shown = (
            f"{label}: {float(m['value']):.3g}, not {m['relation']} {m['bound']:.3g}"
            if m
            else label
        )
        lines.append(f"  {report.name}: {shown}")
    extra = len(details.get("failed", [])) - FAILURES_SHOWN
    if extra > 0:
        lines.append(f"  {report.name}: ... and {extra} more (see --json)")
    return lines


def select(names: Sequence[str] | None) -> list[Check]:
    """The registered checks, or those named (comma-separated or repeated), in table order."""
    checks = all_checks()
    if not names:
        return checks
    wanted = [n.strip() for item in names for n in item.split(",") if n.strip()]
    if not wanted:
        raise ValueError("--only names no check; give names such as theorem1 (--list shows all)")
    known = {c.name for c in checks}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; registered: {', '.join(known)}")
    return [c for c in checks if c.name in wanted]


def _list(checks: Sequence[Check]) -> None:
    for c in checks:
        print(f"{c.name}\n  statement: {c.statement}\n  source:    {c.source}")


def run_checks(checks: Sequence[Check], size: str, threads: int = 1) -> list[CheckReport]:
    """Run `checks` with `threads` torch threads, printing each row as it finishes."""
    print(_cells(COLUMNS))
    print(_cells(tuple("-" * max(w, len(c)) for c, w in zip(COLUMNS, WIDTHS, strict=True))))
    reports = []
    for check in checks:
        report = check.run(size, threads)  # type: ignore[arg-type]
        print(format_row(report), flush=True)
        reports.append(report)
    return reports


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m proofs_checks", description=__doc__.split("\n")[0])
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only these checks (comma-separated or repeated)",
    )
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per check (default 1: fastest for these small problems)",
    )
    p.add_argument(
        "--size",
        choices=SIZES,
        default="full",
        help="problem sizes: full (default) or small (the test-suite's)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        checks = select(args.only)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.list:
        _list(checks)
        return 0
    start = time.perf_counter()
    if args.threads < 1:
        print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    if args.json:
        try:
            check_output_file(args.json, "--json")  # before the checks run, not after
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    reports = run_checks(checks, args.size, args.threads)
    total = time.perf_counter() - start
    failures = [line for r in reports if not r.result.passed for line in _failures(r)]
    if failures:
        print("\nfailed measurements and errors:")
        print("\n".join(failures))
    passed = sum(r.status == "PASS" for r in reports)
    errors = sum(r.status == "ERROR" for r in reports)
    raised = f", {errors} error{'s' * (errors > 1)} (a check raised)" if errors else ""
    print(f"\n{passed}/{len(reports)} checks passed{raised} ({args.size} size) in {total:.1f} s")
    if args.json:
        atomic_write_json(args.json, [r.as_dict() for r in reports])
        print(f"results written to {args.json}")
    if errors:
        return EXIT_ERROR
    return 0 if passed == len(reports) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
