"""What a primal layer-peeled solve costs before it starts: peak memory and work per iteration.

The primal problems of `ufm.problems` hold the features H (N, d) and, with cross-entropy, logits
(N, K). Measured peak resident memory of `ufm.simulate` (K = 100, N = 43,531, d = 512, float64,
one configuration family at a time): about 8.4 copies of H for the learnable LPM and 11.7 for
the fixed-ETF problems (iterate, momentum point, trial point, gradients, step, the per-sample
projection), on top of about 0.3 GB for the interpreter and torch. Hence the estimate

    bytes ~ 0.3 GB + itemsize (12 N d + 4 N K)

and, per iteration of the learnable LPM with CE, about 6 N d K floating-point operations (the
logits W H^T and the two gradient products, forward and backward). A problem whose estimate
exceeds the memory available is refused up front with these numbers, instead of failing hours in
or swapping; `python -m ufm.certify` gives the LPM's certified optimum for the same counts
without H.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Footprint", "available_memory", "check_primal_fits", "primal_footprint"]

BASE_BYTES = 0.3e9  # interpreter, torch and the run's small arrays
H_COPIES = 12  # copies of H (N, d) alive at the peak (measured 8.4 learnable, 11.7 fixed ETF)
LOGIT_COPIES = 4  # copies of the logits (N, K) with cross-entropy


@dataclass(frozen=True)
class Footprint:
    """Estimated peak bytes and floating-point operations per iteration of a primal solve."""

    samples: int
    dim: int
    classes: int
    bytes: float
    flops_per_iteration: float

    def describe(self) -> str:
        return (
            f"N = {self.samples:,} samples x d = {self.dim} features (K = {self.classes}): "
            f"about {self.bytes / 1e9:.1f} GB at the peak and "
            f"{self.flops_per_iteration / 1e9:,.0f} GFLOP per iteration"
        )


def primal_footprint(
    counts: Sequence[int] | np.ndarray, dim: int, dtype: torch.dtype = torch.float64
) -> Footprint:
    """The estimate of the module docstring for class counts `counts` and feature dim `dim`."""
    n = int(np.sum(counts))
    k = len(counts)
    item = torch.empty((), dtype=dtype).element_size()
    size = BASE_BYTES + item * (H_COPIES * n * dim + LOGIT_COPIES * n * k)
    return Footprint(n, dim, k, float(size), 6.0 * n * dim * k)


def available_memory(device: torch.device | str = "cpu") -> float:
    """Bytes free for a new allocation: CUDA's free memory, or MemAvailable on Linux (the
    physical memory elsewhere)."""
    device = torch.device(device)
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_primal_fits(fp: Footprint, available: float, *, dtype_name: str = "float64") -> None:
    """Raise ValueError, with the estimate and what to do instead, when `fp` needs more than
    `available` bytes."""
    if fp.bytes <= available:
        return
    half = (fp.bytes - BASE_BYTES) / 2 + BASE_BYTES
    hint = (
        f"; --dtype float32 halves it (about {half / 1e9:.1f} GB)"
        if dtype_name == "float64"
        else ""
    )
    raise ValueError(
        f"the primal problem does not fit: {fp.describe()}, but only "
        f"{available / 1e9:.1f} GB are available{hint}; use a smaller --dim or fewer samples "
        f"(--n-max), or `python -m ufm.certify` for the certified LPM optimum of these counts "
        f"without the features"
    )
