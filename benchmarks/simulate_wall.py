"""The whole default command `python -m ufm.simulate --imbalance 100` (import, four solves,
figures), wall time, with glibc keeping freed memory (`ufm.runtime.keep_freed_memory`, the
default) against glibc's own settings, alternated run by run in fresh processes.

Target: at most 12 s wall on 2 cores. Each run is a subprocess (`--out` a temporary folder);
the order alternates between repeats so that a change in the machine's load hits both sides.
Per run: wall seconds of the process and, from its printed lines, the seconds of each
configuration's solve. Reported: the median of each setting and the ratio of the medians.

    python -m benchmarks simulate_wall [-- --repeats 3 --threads 1]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main", "time_simulate"]

SOLVE_LINE = re.compile(r"^\s+(\S+): (\d+) iterations, ([\d.]+) s")
SETTINGS = {"kept": "1", "glibc": "0"}


def time_simulate(keep: bool, threads: int | None, extra: list[str]) -> dict[str, object]:
    """One run of the default command in a fresh process: wall seconds and solve seconds."""
    env = dict(os.environ, NC_VERIFY_KEEP_FREED_MEMORY=SETTINGS["kept" if keep else "glibc"])
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "ufm.simulate", "--imbalance", "100"]
        command += ["--out", str(Path(tmp) / "run"), *extra]
        if threads is not None:
            command += ["--threads", str(threads)]
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    solves = {}
    for line in done.stdout.splitlines():
        if match := SOLVE_LINE.match(line):
            solves[match[1]] = (int(match[2]), float(match[3]))
    return {"wall": wall, "solves": solves}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks simulate_wall")
    p.add_argument("--repeats", type=int, default=3, help="runs of each setting")
    p.add_argument("--threads", type=int, default=None, help="--threads of ufm.simulate")
    p.add_argument("--no-figures", action="store_true", help="leave out the drawing")
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error(f"--repeats must be >= 1, got {a.repeats}")
    extra = ["--no-figures"] if a.no_figures else []
    walls: dict[str, list[float]] = {"kept": [], "glibc": []}
    for repeat in range(a.repeats):
        order = ("kept", "glibc") if repeat % 2 == 0 else ("glibc", "kept")
        for name in order:
            row = time_simulate(name == "kept", a.threads, extra)
            walls[name].append(row["wall"])
            solves = ", ".join(f"{k} {it} it {s:.2f} s" for k, (it, s) in row["solves"].items())
            print(f"  {name:<5} {row['wall']:6.2f} s wall  ({solves})", flush=True)
    median = {name: statistics.median(values) for name, values in walls.items()}
    print(
        f"[simulate --imbalance 100{' --no-figures' if a.no_figures else ''}] median wall: "
        f"freed memory kept {median['kept']:.2f} s, glibc defaults {median['glibc']:.2f} s; "
        f"ratio {median['glibc'] / median['kept']:.2f}x (target <= 12 s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
