"""Process-group plumbing for data-parallel training under torchrun (DDP).

Without torchrun's environment (WORLD_SIZE unset or 1) everything here is a no-op for one
process, so the training code has one path. With it, each process drives one GPU (NCCL) or
shares the CPU (gloo); rank 0 writes the run folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "DistInfo",
    "all_gather_rows",
    "all_reduce_sum",
    "broadcast_object",
    "gather_objects",
    "init_distributed",
    "resolve_device",
    "shutdown",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place under torchrun (rank 0 of 1 without it); rank 0 writes the run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:<local rank> when CUDA is there, else cpu; other names as given."""
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if 0 < (count := torch.cuda.device_count()) <= device.index:
            raise ValueError(
                f"device {str(device)!r} asked for, but this machine shows {count} GPU(s): "
                f"cuda:0 to cuda:{count - 1}"
            )
    return device


def init_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join torchrun's process group if there is one; the device of this process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), resolve_device(device_name)
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_name, info.local_rank)
    if device.type == "cuda":
        if device.index != info.local_rank:
            raise ValueError(
                f"--device {device_name} under torchrun would put every process on one GPU; use "
                "--device cuda or auto (each process takes the GPU of its LOCAL_RANK), and "
                "choose the GPUs with CUDA_VISIBLE_DEVICES"
            )
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def shutdown(info: DistInfo) -> None:
    if info.active and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: Tensor, info: DistInfo) -> Tensor:
    """Sum of `t` over processes (in place)."""
    if info.active:
        dist.all_reduce(t)
    return t


def all_gather_rows(t: Tensor, info: DistInfo) -> Tensor:
    """Concatenate every process's rows (rank order); row counts may differ by process."""
    if not info.active:
        return t
    count = torch.tensor([len(t)], device=t.device)
    counts = [torch.zeros_like(count) for _ in range(info.world)]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest, *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: len(t)] = t
    parts = [torch.empty_like(padded) for _ in range(info.world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(c.item())] for p, c in zip(parts, counts, strict=True)])


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every process's `obj`, in rank order (picklable objects)."""
    if not info.active:
        return [obj]
    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's `obj` on every process."""
    if not info.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
