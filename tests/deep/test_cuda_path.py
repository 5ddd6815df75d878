"""The CUDA training path: an epoch of SGD steps never makes the host wait for the GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deep.config import resolve_config
from deep.distributed import DistInfo
from deep.loop import train_steps
from deep.methods import METHODS
from deep.session import build_session


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["ce", "etf-dr", "etf-dr-balanced"])
def test_an_epoch_of_training_never_waits_for_the_gpu(
    cuda: torch.device, folder_root: Path, method: str
) -> None:
    values = {
        "data.dataset": "folder",
        "data.root": str(folder_root),
        "data.imbalance": 2.0,
        "model.arch": "resnet8",
        "optim.batch_size": 8,
        "run.amp": "bf16",
        "run.progress": False,
    }
    cfg = resolve_config("paper", [values | METHODS.get(method).overrides()])
    s = build_session(cfg, DistInfo(), cuda)
    train_steps(s, s.stream.epoch())  # first use: library handles, optimizer state
    torch.cuda.synchronize(cuda)
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        total = train_steps(s, s.stream.epoch())  # a whole epoch, its permutation included
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert s.stream.steps_per_epoch >= 2 and torch.isfinite(total)
