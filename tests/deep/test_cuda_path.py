"""The CUDA training path: an epoch of SGD steps never makes the host wait for the GPU.

On a GPU, `torch.cuda.set_sync_debug_mode("error")` turns every synchronising call into an
error. Without one, the same epoch runs on the CPU under a dispatch mode that records the ATen
operations which, on a GPU, read a device value on the host or size their output from one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from deep.config import resolve_config
from deep.distributed import DistInfo
from deep.loop import train_steps
from deep.methods import METHODS
from deep.session import Session, build_session

METHODS_OF_THE_PAPER = ["ce", "etf-dr", "etf-dr-balanced"]
# .item() / int(t) / bool(t), and the operations whose CUDA kernels read a value to size their
# output (bincount reads the largest label; nonzero, unique and masked_select count).
HOST_READS = {
    "_local_scalar_dense",
    "item",
    "is_nonzero",
    "bincount",
    "nonzero",
    "unique",
    "_unique",
    "_unique2",
    "unique_consecutive",
    "unique_dim",
    "masked_select",
    "repeat_interleave",
}


class HostReads(TorchDispatchMode):
    """Records every operation of HOST_READS that runs inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in HOST_READS:
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def _session(root: Path, method: str, device: torch.device) -> Session:
    values = {
        "data.dataset": "folder",
        "data.root": str(root),
        "data.imbalance": 2.0,
        "model.arch": "resnet8",
        "optim.batch_size": 8,
        "run.amp": "bf16",
        "run.progress": False,
    }
    cfg = resolve_config("paper", [values | METHODS.get(method).overrides()])
    return build_session(cfg, DistInfo(), device)


@pytest.mark.parametrize("method", METHODS_OF_THE_PAPER)
def test_an_epoch_of_training_reads_nothing_back_on_the_host(folder_root, method) -> None:
    s = _session(folder_root, method, torch.device("cpu"))
    train_steps(s, s.stream.epoch())  # first use: optimizer state
    with HostReads() as reads:
        total = train_steps(s, s.stream.epoch())
    assert reads.seen == []
    assert s.stream.steps_per_epoch >= 2 and torch.isfinite(total)


@pytest.mark.gpu
@pytest.mark.parametrize("method", METHODS_OF_THE_PAPER)
def test_an_epoch_of_training_never_waits_for_the_gpu(
    cuda: torch.device, folder_root: Path, method: str
) -> None:
    s = _session(folder_root, method, cuda)
    train_steps(s, s.stream.epoch())  # first use: library handles, optimizer state
    torch.cuda.synchronize(cuda)
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        total = train_steps(s, s.stream.epoch())  # a whole epoch, its permutation included
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert s.stream.steps_per_epoch >= 2 and torch.isfinite(total)
