"""`python -m benchmarks [NAME ...] [-- ARGS]`: run every benchmark module (or the named ones).

A benchmark is a module of this package with a `main(argv: list[str]) -> int` function; extra
arguments after `--`, or from the first one that starts with `-` (`python -m benchmarks gpu
--tiny`), go to the one benchmark named. `gpu`, the one-shot check of a GPU slot, runs only
when named.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks

ONLY_WHEN_NAMED = {"gpu"}


def available() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if not m.name.startswith("_")
    )


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """Benchmark names, and the arguments for them: after `--` or from the first `-option`."""
    first = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    extra = argv[first + 1 :] if argv[first : first + 1] == ["--"] else argv[first:]
    return argv[:first], extra


USAGE = "usage: python -m benchmarks [NAME ...] | NAME [--] [OPTIONS] | -h"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names, extra = _split(argv)
    if not names and extra[:1] in (["-h"], ["--help"]):
        print(f"{USAGE}\n\n{__doc__.strip()}\n\nbenchmarks: {', '.join(available())}")
        return 0
    problem = None
    if unknown := sorted(set(names) - set(available())):
        problem = f"unknown benchmark {', '.join(unknown)}; available: {', '.join(available())}"
    elif extra and len(names) != 1:  # each benchmark has options of its own
        problem = f"options ({extra[0]} ...) are for one benchmark: name it, as in {USAGE[7:]}"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    status = 0
    for name in names or [n for n in available() if n not in ONLY_WHEN_NAMED]:
        print(f"=== {name} ===", flush=True)
        start = time.perf_counter()
        module = importlib.import_module(f"benchmarks.{name}")
        status |= int(module.main(extra) or 0)
        print(f"=== {name}: {time.perf_counter() - start:.1f} s ===\n", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
