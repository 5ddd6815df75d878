"""Run-time settings shared by every command and test: how many threads torch may use, and
how the C allocator keeps the memory of large temporaries."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["default_threads", "keep_freed_memory", "torch_threads"]


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count inside the block, restored after (None: no change).

    The layer-peeled problems are matrices of K <= 100 columns: on a shared or loaded machine
    a second thread spends its time at barriers, and one thread is often several times faster.
    """
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_threads(processes: int = 1) -> int:
    """Threads per process when none are asked for: half the CPUs this process may run on,
    shared by `processes` processes on the machine, at least 1.

    torch's own default (every core) loses badly on a shared or loaded machine: each step waits
    for the slowest thread, and a thread that lost its core stalls the rest (on a loaded 2-core
    machine an epoch took over 300 s with 2 threads and 58 s with 1). Half leaves a core for
    the data, the evaluation and the neighbours.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on every platform
        cpus = os.cpu_count() or 1
    return max(1, cpus // (2 * max(1, processes)))


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # the largest value glibc accepts on 64-bit
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks of up to 32 MB in the process instead of handing
    them back to the kernel; True where it applied (glibc), False elsewhere or when the
    environment variable NC_VERIFY_KEEP_FREED_MEMORY is 0.

    The first-order solvers allocate a few arrays of N x d every iteration (the default
    simulation: 12,406 x 64 float64, 6.4 MB each). With glibc's defaults, blocks that size
    that come free at the top of the heap are trimmed, so the next allocation maps fresh pages
    that the kernel must zero: about a third of an iteration's wall time on the 2-core machine
    of the README (`benchmarks ufm_solvers`, which measures both settings side by side). The
    cost is that the process's resident memory stays at its peak. The same effect as the
    environment variables MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_, set from inside
    the process; idempotent.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("NC_VERIFY_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith(
        "linux"
    ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    )
    return _applied
