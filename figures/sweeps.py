"""Theory sweeps: computed once, cached under runs/sweeps/<name>/, drawn from the cache.

Each sweep is registered by name with its parameters at two sizes ("default", and "small" for
tests and quick looks), a `compute(params) -> results` (JSON-able) and a
`draw(results, params) -> [(file name, Figure)]`:

- minority-collapse: mean minority cosine against R (step) and rho (exponential), learnable
  LPM (certified line, gradient-descent markers) versus fixed ETF (`figures.minority`);
- hong-ling: minority classifier spread against lambda / lambda*, several step profiles
  (`figures.hong_ling`);
- seli: the normalized classifier Gram matrix of the bias-free regularized UFM as lambda -> 0,
  next to the SELI closed form (`figures.seli`);
- geometry: K = 3 (plane) and K = 4 (3-D) solutions, learnable versus fixed ETF
  (`figures.geometry`).

The computations are small dense problems; they run with one torch thread, which is faster
than several for K x K matrices and keeps the sweep's time steady on a busy machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from figures import geometry, hong_ling, minority, seli
from figures.cache import cached_results
from figures.style import save_figure
from ufm.runtime import torch_threads

__all__ = ["SIZES", "SWEEPS", "Sweep", "run_sweep"]

Params = dict[str, Any]
Results = dict[str, Any]


@dataclass(frozen=True)
class Sweep:
    """A registered sweep: its description, parameters per size, computation and drawing."""

    description: str
    sizes: dict[str, Params]
    compute: Callable[[Params], Results]
    draw: Callable[[Results, Params], list[tuple[str, Figure]]]


def _sweep(module: Any, description: str) -> Sweep:
    return Sweep(
        description, {"default": module.DEFAULT, "small": module.SMALL}, module.compute, module.draw
    )


SWEEPS: dict[str, Sweep] = {
    "minority-collapse": _sweep(minority, "minority cosine against the imbalance ratio"),
    "hong-ling": _sweep(hong_ling, "minority spread against lambda / lambda*"),
    "seli": _sweep(seli, "classifier Gram matrix as lambda -> 0 versus SELI"),
    "geometry": _sweep(geometry, "K = 3 and K = 4 solutions, learnable versus fixed ETF"),
}
SIZES = ("default", "small")


def sweep_folder(name: str, size: str, cache_dir: str | Path) -> Path:
    """runs/sweeps/<name> for the default size, runs/sweeps/<name>-<size> otherwise."""
    return Path(cache_dir) / (name if size == "default" else f"{name}-{size}")


def run_sweep(
    name: str,
    *,
    size: str = "default",
    cache_dir: str | Path = "runs/sweeps",
    out: str | Path | None = None,
    recompute: bool = False,
    echo: Callable[[str], None] | None = None,
) -> list[Path]:
    """Compute (or read from the cache) and draw one sweep; returns the files written."""
    if name not in SWEEPS:
        raise ValueError(f"unknown sweep {name!r}; choose from {', '.join(SWEEPS)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    sweep = SWEEPS[name]
    params = sweep.sizes[size]
    folder = sweep_folder(name, size, cache_dir)
    with torch_threads(1):
        results = cached_results(folder, params, sweep.compute, recompute=recompute, echo=echo)
    out_dir = Path(out) if out is not None else folder / "figures"
    paths: list[Path] = []
    for file_name, fig in sweep.draw(results, params):
        paths += save_figure(fig, out_dir, file_name)
    return paths
