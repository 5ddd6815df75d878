"""How long the theorem checks take, and the certificates behind checks 6-8.

1. The whole suite, `python -m proofs_checks` at the full size: seconds per check and in total
   (target: under 3 minutes on 2 CPU cores).
2. The certified convex solves that checks 6-8 rest on, at K = 10 and K = 100, each to the
   relative duality gap the checks use (1e-10): wall time (best of up to --repeat runs), iterations,
   and the certified gap reached.
   - check 6, LPM nuclear-norm form (Fang et al.): balanced (n = 50) and long-tailed (rho = 100,
     n_max = 500) counts; at K = 10 also cvxpy + Clarabel on the same program, for comparison;
   - check 7, the LPM on a step profile K_A = K_B = K/2 below and above its collapse ratio
     (R = 5, 20), with the KKT multiplier; at K = 10 also the whole search for R0;
   - check 8, Hong & Ling's convex form on (K/2, 500, K/2, 100) at 0.9 and 1.1 times the threshold.

    python -m benchmarks proofs_checks_timing [-- --skip-suite] [-- --repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from proofs_checks.minority_collapse import collapse_ratio, minority_state
from proofs_checks.registry import all_checks
from proofs_checks.tolerances import CERTIFIED_GAP
from ufm.convex import ConvexResult, solve_lpm_convex, solve_regularized_convex
from ufm.convex_cvxpy import cvxpy_lpm_nuclear, cvxpy_lpm_sdp
from ufm.imbalance import exponential_counts, step_counts
from ufm.runtime import torch_threads
from ufm.theory import hong_ling_threshold

__all__ = ["bench_certificates", "bench_suite", "main"]

Row = tuple[str, str, int, float, str, str]  # check, problem, K, seconds, iterations, gap
BUDGET = 2.0  # seconds: short solves are repeated until this much time is spent


def _best_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Best wall time of up to `repeat` calls (stopping once BUDGET seconds are spent)."""
    times, out = [], None
    while len(times) < repeat and sum(times) < BUDGET:
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def bench_suite(size: str = "full", threads: int = 1) -> float:
    """Run every check; print seconds per check and the total; return the total."""
    start = time.perf_counter()
    for check in all_checks():
        report = check.run(size, threads)  # type: ignore[arg-type]
        verdict = report.status
        print(f"  {check.name:<24} {verdict}  {report.seconds:7.2f} s", flush=True)
    total = time.perf_counter() - start
    print(
        f"[suite] {size} size, {len(all_checks())} checks: {total:.1f} s (target < 180 s; "
        f"{threads} torch thread(s), {os.cpu_count()} CPUs)"
    )
    return total


def _convex_row(
    check: str, problem: str, k: int, solve: Callable[[], ConvexResult], repeat: int
) -> Row:
    seconds, res = _best_time(solve, repeat)
    assert isinstance(res, ConvexResult)
    return check, problem, k, seconds, str(res.iterations), f"{res.relative_gap:.1e}"


def _lpm_rows(k: int, repeat: int) -> list[Row]:
    rows = []
    for name, counts in (
        ("balanced n=50", np.full(k, 50)),
        ("exp rho=100", exponential_counts(k, 500, 100)),
    ):
        rows.append(
            _convex_row(
                "lpm_relaxation",
                name,
                k,
                lambda c=counts: solve_lpm_convex(c, 1.0, 5.0, tol=CERTIFIED_GAP),
                repeat,
            )
        )
    if k <= 10:
        counts = exponential_counts(k, 500, 100)
        for name, fn in (
            ("cvxpy nuclear (Clarabel)", cvxpy_lpm_nuclear),
            ("cvxpy SDP (Clarabel)", cvxpy_lpm_sdp),
        ):
            seconds, _ = _best_time(lambda f=fn: f(counts, 1.0, 5.0, solver="CLARABEL"), repeat)
            rows.append(("lpm_relaxation", f"exp rho=100, {name}", k, seconds, "-", "-"))
    return rows


def _collapse_rows(k: int, repeat: int) -> list[Row]:
    half = k // 2
    rows = []
    for ratio in (5, 20):
        counts = np.array([10**6] * half + [10**6 // ratio] * half)
        seconds, state = _best_time(
            lambda c=counts: minority_state(c, minority=range(half, k)), repeat
        )
        assert isinstance(state, dict)
        rows.append(
            (
                "minority_collapse",
                f"step R={ratio} + multiplier",
                k,
                seconds,
                "-",
                f"{state['relative_gap']:.1e}",
            )
        )
    if k == 10:
        seconds, r0 = _best_time(lambda: collapse_ratio(10.0, 20.0), 1)
        rows.append(("minority_collapse", f"search for R0 (= {r0:.4f})", k, seconds, "-", "-"))
    return rows


def _hong_ling_rows(k: int, repeat: int) -> list[Row]:
    half = k // 2
    counts = step_counts(half, 500, half, 5)
    threshold = hong_ling_threshold(100, int(counts.sum()))
    return [
        _convex_row(
            "hong_ling",
            f"({half},500,{half},100) {f}x threshold",
            k,
            lambda f=f: solve_regularized_convex(counts, f * threshold, tol=CERTIFIED_GAP),
            repeat,
        )
        for f in (0.9, 1.1)
    ]


def bench_certificates(classes: Sequence[int], repeat: int) -> list[Row]:
    """Time the certificates of checks 6-8 at each K; print and return the rows."""
    rows: list[Row] = []
    for k in classes:
        rows += _lpm_rows(k, repeat) + _collapse_rows(k, repeat) + _hong_ling_rows(k, repeat)
    print(f"[certificates] relative gap {CERTIFIED_GAP:g}, best of up to {repeat} runs")
    print(f"  {'check':<18} {'K':>4} {'seconds':>8} {'iters':>6} {'gap':>8}  problem")
    for check, problem, k, seconds, iters, gap in rows:
        print(f"  {check:<18} {k:>4} {seconds:8.3f} {iters:>6} {gap:>8}  {problem}")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks proofs_checks_timing")
    p.add_argument("--skip-suite", action="store_true", help="certificates only")
    p.add_argument("--repeat", type=int, default=3, help="runs per certificate (best is kept)")
    p.add_argument("--classes", type=int, nargs="+", default=[10, 100], help="values of K")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the checks' default)")
    args = p.parse_args(argv)
    if not args.skip_suite:
        bench_suite("full", args.threads)
    with torch_threads(args.threads):
        bench_certificates(args.classes, max(1, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
