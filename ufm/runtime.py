"""Run-time settings shared by every command and test: how many threads torch may use."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["default_threads", "torch_threads"]


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
