"""The registry of theory sweeps and their run folders (kind "sweep").

A sweep is a function `compute(params) -> results` (JSON-able) registered by name with its
parameters at two sizes ("default", and "small" for tests and quick looks):

    @register_sweep("seli", "classifier Gram matrix as lambda -> 0 versus SELI",
                    default=DEFAULT, small=SMALL)
    def compute(params): ...

`run_sweep` writes it as a run folder (`ufm.runfolder`): run.json and config.yaml (the
parameters) first, summary.json (the results) last. A folder whose config equals the
parameters and which holds a summary is reused; a changed, corrupt or unfinished one is
computed again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ufm.runfolder import (
    SUMMARY,
    RunFolderError,
    read_run,
    start_run,
    sweep_folder,
    write_summary,
)
from ufm.runtime import torch_threads

__all__ = [
    "KIND",
    "SIZES",
    "SWEEPS",
    "Sweep",
    "get_sweep",
    "register_sweep",
    "run_sweep",
    "sweep_folder",
]

Params = dict[str, Any]
Results = dict[str, Any]
KIND = "sweep"
SIZES = ("default", "small")
LEGACY_CACHE = "data.json"  # the cache file of sweeps before run folders; replaced, never read


@dataclass(frozen=True)
class Sweep:
    """A registered sweep: what it computes, its parameters per size, and the computation."""

    name: str
    description: str
    sizes: dict[str, Params]
    compute: Callable[[Params], Results]


SWEEPS: dict[str, Sweep] = {}  # in registration order, the order of "all"


def register_sweep(
    name: str, description: str, *, default: Params, small: Params
) -> Callable[[Callable[[Params], Results]], Callable[[Params], Results]]:
    """Decorator: register `compute` as the sweep `name`; a name can be registered once."""

    def add(compute: Callable[[Params], Results]) -> Callable[[Params], Results]:
        if name in SWEEPS:
            raise ValueError(f"sweep {name!r} is registered already")
        SWEEPS[name] = Sweep(name, description, {"default": default, "small": small}, compute)
        return compute

    return add


def get_sweep(name: str) -> Sweep:
    """The sweep registered as `name`; a ValueError naming the choices otherwise."""
    if name not in SWEEPS:
        raise ValueError(f"unknown sweep {name!r}; choose from {', '.join(SWEEPS)}")
    return SWEEPS[name]


def _canonical(params: Params) -> Params:
    """Params as they read back from a file (tuples become lists), for comparison."""
    return json.loads(json.dumps(params))


def _reusable(folder: Path, name: str, params: Params) -> bool:
    """Whether `folder` is a finished run of sweep `name` with exactly these parameters."""
    if not folder.is_dir():
        return False
    try:
        run = read_run(folder)
        return (
            run.kind == KIND
            and run.name == name
            and run.config == _canonical(params)
            and isinstance(run.summary, dict)
        )
    except RunFolderError:  # corrupt or unfinished: computed again, never trusted
        return False


def run_sweep(
    name: str,
    *,
    size: str = "default",
    cache_dir: str | Path = "runs/sweeps",
    recompute: bool = False,
    threads: int = 1,
    command: Sequence[str] | None = None,
    echo: Callable[[str], None] | None = None,
) -> Path:
    """The run folder of sweep `name` at `size`: reused when it holds these parameters and a
    summary, computed (with `threads` torch threads) and written otherwise."""
    sweep = get_sweep(name)
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    params = sweep.sizes[size]
    folder = sweep_folder(name, size, cache_dir)
    if not recompute and _reusable(folder, name, params):
        if echo:
            echo(f"cached: {folder}")
        return folder
    for stale in (folder / SUMMARY, folder / LEGACY_CACHE):  # a new run, not finished yet
        stale.unlink(missing_ok=True)
    start_run(folder, KIND, params, name=name, command=command)
    start = time.perf_counter()
    with torch_threads(threads):
        results = _canonical(sweep.compute(params))
    write_summary(folder, results)
    if echo:
        echo(f"computed in {time.perf_counter() - start:.1f} s: {folder}")
    return folder
