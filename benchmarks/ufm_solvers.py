"""Speed of the layer-peeled solvers, as ratios measured side by side in this one process.

1. The default `python -m ufm.simulate --imbalance 100` (four configurations, N = 12406, d = 64):
   wall time, and the gaps it certifies (target: < 30 s on 2 cores, fixed-ETF gaps <= 1e-9,
   learnable + CE relative gap <= 1e-6).
2. "fast" against the plain projected-gradient reference "pgd" on the learnable LPM with CE,
   K = 10 (CIFAR-10-LT counts, d = 64) and K = 100 (CIFAR-100-LT, d = 128): wall time to a
   relative gap of 1e-6 to the certified optimum, same problem, same random start (target: >= 10x).
   A reference that does not get there within --pgd-budget seconds gives a lower bound ">=".
3. The LPM certificate at K = 100, rho = 100 to relative gap 1e-8 (target: < 10 s), and, with
   --cvxpy, the same problem through cvxpy + SCS (slow, inaccurate) for comparison.

    python -m benchmarks ufm_solvers [-- --quick] [-- --cvxpy]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time

import torch

from ufm.convex import solve_lpm_convex
from ufm.convex_cvxpy import cvxpy_lpm_nuclear
from ufm.imbalance import exponential_counts
from ufm.problems import LayerPeeledModel
from ufm.runtime import torch_threads
from ufm.simulate import SimulateConfig, run_simulation
from ufm.solvers import solve


def bench_default_simulate() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        _, summary = run_simulation(SimulateConfig(out=tmp, figures=False), echo=False)
        seconds = time.perf_counter() - start
    runs = {f"{r['classifier']}+{r['loss']}": r for r in summary["runs"]}
    print(
        f"[simulate] default --imbalance 100: {seconds:.1f} s "
        f"(target < 30 s; {torch.get_num_threads()} threads)"
    )
    for name, r in runs.items():
        rel = r["relative_gap"]
        print(
            f"  {name:<13} gap {r['gap']:.1e}  relative {'-' if rel is None else f'{rel:.1e}'}"
            f"  iters {r['iterations']:>5}  {r['seconds']:.2f} s  certified {r['certified']}"
        )


def bench_lpm_solvers(classes: int, n_max: int, dim: int, budget: float, seeds: list[int]) -> None:
    """Time to relative gap 1e-6, "fast" and "pgd" from the same start, for each seed.

    Both solvers first run a few untimed iterations (allocator and thread-pool warm-up), and
    the order alternates between seeds. Wall time is the measure; CPU time of this process is
    printed next to it, since on a shared machine it is the steadier of the two (one thread:
    CPU time is the time the solver would take alone).
    """
    counts = exponential_counts(classes, n_max, 100)
    cert = solve_lpm_convex(counts, 1.0, 5.0, tol=1e-10)
    problem = LayerPeeledModel(counts, dim, loss="ce", e_w=1.0, e_h=5.0)
    for name in ("fast", "pgd"):  # warm-up, untimed
        solve(problem, name, seed=seeds[0], tol=1e-6, relative=True, target=cert.value, max_iter=5)
    ratios, cpu_ratios, bounded = [], [], False
    for seed in seeds:
        wall, cpu = {}, {}
        for name in ("fast", "pgd") if seed % 2 == 0 else ("pgd", "fast"):  # alternate the order
            cpu_start = time.process_time()
            res = solve(
                problem,
                name,
                seed=seed,
                tol=1e-6,
                relative=True,
                target=cert.value,
                max_iter=10**7,
                max_seconds=budget,
            )
            wall[name], cpu[name] = res.seconds, time.process_time() - cpu_start
            bounded |= name == "pgd" and not res.converged
            gap = (res.objective - cert.value) / cert.value
            print(
                f"  seed {seed} {name:<4} {res.seconds:8.2f} s ({cpu[name]:7.2f} s CPU)"
                f"  {res.iterations:>6} iterations  relative gap {gap:.2e}  ({res.reason})"
            )
        ratios.append(wall["pgd"] / wall["fast"])
        cpu_ratios.append(cpu["pgd"] / cpu["fast"])
    bound = ">= " if bounded else ""
    print(
        f"[lpm K={classes}] N={int(counts.sum())} d={dim}: pgd/fast = {bound}"
        f"{statistics.median(ratios):.1f}x wall-time median over {len(seeds)} seeds "
        f"(each: {', '.join(f'{r:.1f}' for r in ratios)}; target >= 10x); CPU time "
        f"{bound}{statistics.median(cpu_ratios):.1f}x"
    )


def bench_certificate(with_cvxpy: bool) -> None:
    counts = exponential_counts(100, 500, 100)
    start = time.perf_counter()
    res = solve_lpm_convex(counts, 1.0, 5.0, tol=1e-8)
    ours = time.perf_counter() - start
    print(
        f"[certificate] K=100 rho=100: {ours:.2f} s, {res.iterations} iterations, value "
        f"{res.value:.10f}, relative gap {res.relative_gap:.1e} (target < 10 s)"
    )
    if not with_cvxpy:
        return
    start = time.perf_counter()
    value, _ = cvxpy_lpm_nuclear(counts, 1.0, 5.0, solver="SCS")
    theirs = time.perf_counter() - start
    print(
        f"  cvxpy+SCS: {theirs:.1f} s, value {value:.10f} (off by {value - res.value:+.1e}); "
        f"ours is {theirs / ours:.0f}x faster"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks ufm_solvers")
    p.add_argument("--quick", action="store_true", help="K=10 solver comparison only")
    p.add_argument("--cvxpy", action="store_true", help="also time cvxpy + SCS at K=100")
    p.add_argument("--pgd-budget", type=float, default=600.0, help="seconds for the reference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="seeds of the K=10 comparison")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = p.parse_args(argv)
    if a.repeats < 1 or (a.threads is not None and a.threads < 1):
        p.error(f"--repeats and --threads must be >= 1, got {a.repeats} and {a.threads}")
    if not (math.isfinite(a.pgd_budget) and a.pgd_budget > 0):
        p.error(f"--pgd-budget must be a finite number of seconds > 0, got {a.pgd_budget}")
    with torch_threads(a.threads):
        bench_certificate(a.cvxpy)
        bench_default_simulate()
        print("[lpm K=10] learnable LPM + CE, time to relative gap 1e-6:")
        bench_lpm_solvers(10, 5000, 64, a.pgd_budget, list(range(a.seed, a.seed + a.repeats)))
        if not a.quick:
            print("[lpm K=100] learnable LPM + CE, time to relative gap 1e-6:")
            bench_lpm_solvers(100, 500, 128, a.pgd_budget, [a.seed])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
