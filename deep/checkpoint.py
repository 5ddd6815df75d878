"""Checkpoints that resume a run exactly: written atomically, read without running code.

A checkpoint holds the network (the ETF buffer included), the objective's own state, the
optimizer (momentum buffers and groups), the schedule's step, every random-number state (the
batch-order generator, each process's augmentation generator, torch's global CPU state and
the CUDA state of each process's own GPU) and the run's history. Restoring it and training on
gives the weights an uninterrupted run would have reached, bit for bit on the same hardware and
thread count; a checkpoint is resumed on the kind of device (CPU or CUDA) that wrote it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deep.augment import TrainStream
from deep.distributed import DistInfo, gather_objects
from ufm.io import atomic_path

__all__ = ["FORMAT", "capture_rng", "load_checkpoint", "restore_rng", "save_checkpoint"]

FORMAT = 1  # bumped when the layout of a checkpoint changes


def capture_rng(stream: TrainStream, info: DistInfo) -> dict[str, Any]:
    """Random states of every process (collective under DDP: every rank must call it)."""
    device = stream.augment.device
    mine = {
        "device": device.type,
        "augment": stream.augment.get_state(),
        "torch_cpu": torch.get_rng_state(),
        # This process's own GPU only: another machine may see a different number of them.
        "torch_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }
    return {"order": stream.order.get_state(), "per_process": gather_objects(mine, info)}


def restore_rng(state: dict[str, Any], stream: TrainStream, info: DistInfo) -> None:
    """Put back the states saved by `capture_rng`, each process taking its own."""
    per_process = state["per_process"]
    if len(per_process) != info.world:
        raise ValueError(
            f"the checkpoint was written by {len(per_process)} processes; resume it with the "
            f"same number (now {info.world})"
        )
    mine = per_process[info.rank]
    device = stream.augment.device
    saved = mine.get("device", device.type)
    if saved != device.type:
        raise ValueError(
            f"the checkpoint was written by a run on {saved}, this process runs on "
            f"{device.type}: the random streams cannot carry over; resume it on {saved}"
        )
    stream.load_state_dict({"order": state["order"], "augment": mine["augment"]})
    torch.set_rng_state(mine["torch_cpu"])
    if isinstance(mine["torch_cuda"], torch.Tensor) and device.type == "cuda":
        torch.cuda.set_rng_state(mine["torch_cuda"], device)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` atomically (a reader never sees a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU with torch's weights-only unpickler."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a checkpoint of format {FORMAT}")
    return payload
