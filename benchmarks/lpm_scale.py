"""Certified LPM optima at ImageNet-LT and iNaturalist size: the grouped solver (`ufm.grouped`,
an m x m eigendecomposition per step, m = number of distinct counts) against today's K x K
iteration (`solve_lpm_convex(..., grouped=False)`, a K x K SVD per step), side by side in one
process, E_W = 1, E_H = 5.

1. ImageNet-LT profile (exponential, n_max = 1,280, rho = 256) at each K of --classes, relative
   gap 1e-8 (target at K = 1,000: <= 30 s, i.e. 7x today's 228 s); today's solver too up to
   --full-max. Ratios full / grouped.
2. With --inat: iNaturalist profile (n_max = 1,000, rho = 500) at each K of --inat-classes
   (K = 8,142 is iNaturalist 2018), relative gap 1e-6, each solve stopped after --limit seconds.
   Per-iteration cost and iterations are printed with the number m of distinct counts (the
   grouped cost grows like m^3, and m <= n_max), with a fit of seconds per iteration against m
   and its extrapolation to the largest K, labelled as such.
3. With --hong-ling: Hong & Ling's regularized convex form at K = 100, (50, 500, 50, 100) at 0.9
   and 1.1 times the collapse threshold, grouped and full (target <= 2 s; today about 10 s).

Results go to OUT/results.json (one row per solve) and the figure OUT/cost_growth.png/.pdf.
Run it under `nice -n 19` with one thread on a shared machine:

    python -m benchmarks lpm_scale [-- --classes 10 30 100 300 1000 --full-max 1000]
    python -m benchmarks lpm_scale -- --classes --inat --limit 900
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ufm.convex import NotCertifiedError, solve_lpm_convex, solve_regularized_convex
from ufm.grouped import ClassGroups
from ufm.imbalance import exponential_counts, step_counts
from ufm.io import atomic_write_text
from ufm.runtime import torch_threads
from ufm.theory import hong_ling_threshold

__all__ = ["bench_lpm", "extrapolate", "main"]

IMAGENET = (1280, 256.0, 1e-8)  # n_max, rho, relative gap
INAT = (1000, 500.0, 1e-6)


def _profile(n_max: int, ratio: float) -> str:
    return f"exp n_max={n_max} rho={ratio:g}"


def solve_row(
    counts: np.ndarray,
    tol: float,
    grouped: bool,
    limit: float | None,
    profile: str,
    device: str = "cpu",
    precision: str = "float32",
) -> dict[str, Any]:
    """One certified solve, or how far it got before `limit` seconds. `precision` "float32":
    the grouped solver's float32 phase, then float64 (the library's default); "float64":
    float64 throughout. The certificate is float64 in both; the K x K solver is float64."""
    start, cpu = time.perf_counter(), time.process_time()
    row: dict[str, Any] = {
        "classes": len(counts),
        "groups": ClassGroups.from_counts(counts).num_groups,
        "profile": profile,
        "solver": "grouped" if grouped else "full",
        "tol": tol,
        "device": device,
        "precision": precision if grouped else "float64",
    }
    try:
        res = solve_lpm_convex(
            counts,
            1.0,
            5.0,
            tol=tol,
            grouped=grouped,
            max_seconds=limit,
            device=device,
            float32_phase=precision == "float32",
        )
    except NotCertifiedError as stop:
        row.update(certified=False, iterations=stop.iterations, relative_gap=stop.relative_gap)
        row.update(value=None)
    else:
        row.update(certified=True, iterations=res.iterations, relative_gap=res.relative_gap)
        row.update(value=res.value)
    row["seconds"] = time.perf_counter() - start
    row["cpu_seconds"] = time.process_time() - cpu  # one thread: the time it would take alone
    row["seconds_per_iteration"] = row["seconds"] / max(row["iterations"], 1)
    return row


def _print(row: dict[str, Any]) -> None:
    state = "certified" if row["certified"] else "STOPPED at the limit"
    value = "-" if row["value"] is None else f"{row['value']:.10f}"
    print(
        f"  K={row['classes']:>5} m={row['groups']:>4} {row['solver']:<8} {row['precision']:<7} "
        f"{row['seconds']:8.2f} s (cpu {row['cpu_seconds']:7.2f} s) {row['iterations']:>6} it "
        f"{1e3 * row['seconds_per_iteration']:8.1f} ms/it  gap {row['relative_gap']:.1e}  "
        f"value {value}  {state}",
        flush=True,
    )


def bench_lpm(
    classes: Sequence[int],
    profile: tuple[int, float, float],
    full_max: int,
    limit: float | None,
    device: str = "cpu",
    precisions: Sequence[str] = ("float32",),
) -> list[dict[str, Any]]:
    """Grouped (in each of `precisions`) and, up to K = full_max, full certified solves at
    each K; prints ratios (full against the first grouped precision)."""
    n_max, ratio, tol = profile
    rows = []
    print(f"[lpm] {_profile(n_max, ratio)}, relative gap {tol:g}")
    for k in classes:
        counts = exponential_counts(k, n_max, ratio)
        grouped = []
        for precision in precisions:
            grouped.append(
                solve_row(counts, tol, True, limit, _profile(n_max, ratio), device, precision)
            )
            _print(grouped[-1])
        rows += grouped
        if k <= full_max:
            full = solve_row(counts, tol, False, limit, _profile(n_max, ratio), device)
            _print(full)
            rows.append(full)
            base = grouped[0]
            if base["certified"] and full["certified"]:
                wall, cpu = (full[key] / base[key] for key in ("seconds", "cpu_seconds"))
                print(
                    f"  K={k:>5} full / grouped: {wall:.1f}x wall, {cpu:.1f}x cpu "
                    f"(values differ by {abs(base['value'] - full['value']):.1e})"
                )
    return rows


def extrapolate(rows: Sequence[dict[str, Any]], groups: int) -> tuple[float, float] | None:
    """(exponent c, predicted seconds per iteration at `groups`) from seconds/iteration ~ m^c
    fitted over the grouped rows with m >= 200 (None with fewer than two)."""
    pts = [
        (r["groups"], r["seconds_per_iteration"])
        for r in rows
        if r["solver"] == "grouped" and r["groups"] >= 200
    ]
    if len({m for m, _ in pts}) < 2:
        return None
    logm, logs = np.log(np.array(pts, dtype=np.float64)).T
    c, b = np.polyfit(logm, logs, 1)
    return float(c), float(np.exp(b) * groups**c)


def bench_hong_ling(repeat: int = 1) -> list[dict[str, Any]]:
    """Hong & Ling's convex form at K = 100, grouped and full, best of `repeat` runs."""
    counts = step_counts(50, 500, 50, 5)
    threshold = hong_ling_threshold(100, int(counts.sum()))
    rows = []
    print("[hong-ling] K = 100, (50, 500, 50, 100), relative gap 1e-10")
    for factor in (0.9, 1.1):
        pair = {}
        for grouped in (True, False):
            best = None
            for _ in range(repeat):
                start = time.perf_counter()
                res = solve_regularized_convex(
                    counts, factor * threshold, tol=1e-10, grouped=grouped
                )
                seconds = time.perf_counter() - start
                best = seconds if best is None else min(best, seconds)
            name = "grouped" if grouped else "full"
            pair[name] = (best, res)
            print(
                f"  {factor}x threshold {name:<8} {best:7.2f} s {res.iterations:>6} it "
                f"value {res.value:.12f} gap {res.relative_gap:.1e}",
                flush=True,
            )
            rows.append({"factor": factor, "solver": name, "seconds": best, "value": res.value})
        print(f"  {factor}x threshold full / grouped: {pair['full'][0] / pair['grouped'][0]:.1f}x")
    return rows


def _report_inat(rows: Sequence[dict[str, Any]], largest: int) -> None:
    n_max, ratio, _ = INAT
    m = ClassGroups.from_counts(exponential_counts(largest, n_max, ratio)).num_groups
    fit = extrapolate(rows, m)
    if fit is None:
        return
    c, per_it = fit
    iters = max(r["iterations"] for r in rows if r["solver"] == "grouped")
    print(
        f"  EXTRAPOLATION (not a measurement): seconds/iteration ~ m^{c:.2f}; at K={largest} "
        f"(m={m}) {1e3 * per_it:.0f} ms/iteration, x {iters} iterations (the most measured) "
        f"= {per_it * iters:.0f} s"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks lpm_scale")
    p.add_argument("--classes", type=int, nargs="*", default=[10, 30, 100, 300, 1000])
    p.add_argument("--full-max", type=int, default=1000, help="largest K for the K x K solver")
    p.add_argument("--inat", action="store_true", help="the iNaturalist profile (section 2)")
    p.add_argument("--inat-classes", type=int, nargs="*", default=[1000, 2000, 3000, 8142])
    p.add_argument("--limit", type=float, default=900.0, help="seconds per solve, at most")
    p.add_argument("--hong-ling", action="store_true", help="section 3")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--precision",
        nargs="+",
        choices=["float32", "float64"],
        default=["float32"],
        help="grouped solves with a float32 phase then float64 (float32, the default) and/or "
        "float64 throughout; certificates are float64 in both",
    )
    p.add_argument("--out", type=Path, default=Path("runs/bench/lpm_scale"))
    p.add_argument("--note", default="", help="how the machine was loaded, for the caption")
    args = p.parse_args(argv)
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    with torch_threads(args.threads):
        if args.classes:
            rows += bench_lpm(
                args.classes, IMAGENET, args.full_max, args.limit, args.device, args.precision
            )
        if args.inat:
            inat = bench_lpm(args.inat_classes, INAT, 0, args.limit, args.device, args.precision)
            _report_inat(inat, max(args.inat_classes))
            rows += inat
        if args.hong_ling:
            extra["hong_ling"] = bench_hong_ling()
    if rows:
        from figures.cost_growth import draw_cost_growth, fitted_exponent, series, series_label

        args.out.mkdir(parents=True, exist_ok=True)
        note = f"Wall time, {args.threads} torch thread(s), {args.device}. {args.note}".strip()
        payload = {"threads": args.threads, "note": note, "rows": rows, **extra}
        atomic_write_text(args.out / "results.json", json.dumps(payload, indent=1))
        for solver, precision, profile in series(rows):
            b = fitted_exponent(rows, solver, profile=profile, precision=precision)
            if b is not None:
                label = series_label(solver, precision, profile)
                print(f"  {label}: seconds ~ K^{b:.2f} (certified, K >= 100)")
        paths = draw_cost_growth(rows, args.out, note)
        print(f"  wrote {args.out / 'results.json'} and {paths[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
