"""A computed sweep is cached as one JSON file next to its figures.

runs/sweeps/<name>/data.json holds the parameters, the results, the seconds it took and the
code version. It is reused while the parameters are the same; new parameters (or `recompute`)
compute it again. Results are JSON (lists and numbers), so a spreadsheet or a script can read
them too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ufm.io import atomic_write_json, code_version, read_json

__all__ = ["DATA_FILE", "cached_results"]

DATA_FILE = "data.json"

Params = dict[str, Any]
Results = dict[str, Any]


def _canonical(params: Params) -> Params:
    """Params as they read back from JSON (tuples become lists), for comparison."""
    return json.loads(json.dumps(params))


def _stored(path: Path, params: Params) -> Results | None:
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except ValueError:  # a corrupt cache is recomputed, never trusted
        return None
    if data.get("params") != _canonical(params) or "results" not in data:
        return None
    return data["results"]


def cached_results(
    folder: str | Path,
    params: Params,
    compute: Callable[[Params], Results],
    *,
    recompute: bool = False,
    echo: Callable[[str], None] | None = None,
) -> Results:
    """The results of `compute(params)`, from folder/data.json when it holds these params."""
    path = Path(folder) / DATA_FILE
    results = None if recompute else _stored(path, params)
    if results is not None:
        if echo:
            echo(f"cached: {path}")
        return results
    start = time.perf_counter()
    results = _canonical(compute(params))
    seconds = time.perf_counter() - start
    record = {"params": _canonical(params), "results": results, "seconds": seconds}
    atomic_write_json(path, record | {"version": code_version()})
    if echo:
        echo(f"computed in {seconds:.1f} s: {path}")
    return results
