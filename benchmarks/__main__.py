"""`python -m benchmarks [NAME ...]`: run every benchmark module (or the named ones) in turn.

A benchmark is a module of this package with a `main(argv: list[str]) -> int` function; extra
arguments after `--` are passed to each.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks


def available() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if not m.name.startswith("_")
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names, extra = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(
            f"error: unknown benchmark {', '.join(unknown)}; available: {', '.join(available())}",
            file=sys.stderr,
        )
        return 2
    status = 0
    for name in names or available():
        print(f"=== {name} ===", flush=True)
        start = time.perf_counter()
        module = importlib.import_module(f"benchmarks.{name}")
        status |= int(module.main(extra) or 0)
        print(f"=== {name}: {time.perf_counter() - start:.1f} s ===\n", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
