"""Checkpoints that resume a run exactly: written atomically, read without running code.

A checkpoint holds the network (the ETF buffer included), the objective's own state, the
optimizer (momentum buffers and groups), the schedule's step, every random-number state (the
batch-order generator, each process's augmentation generator, torch's global CPU state and
the CUDA state of each process's own GPU) and the run's history. Restoring it and training on
gives the weights an uninterrupted run would have reached, bit for bit on the same hardware and
thread count; a checkpoint is resumed on the kind of device (CPU or CUDA) that wrote it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from deep.augment import TrainStream
from deep.config import Config, flatten
from deep.distributed import DistInfo, gather_objects
from ufm.io import atomic_path

__all__ = [
    "FORMAT",
    "capture_rng",
    "check_same_config",
    "config_record",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
]

FORMAT = 1  # bumped when the layout of a checkpoint changes
# What `deep.loop` saves and `deep.loop.restore` needs; "config" came later and is optional.
REQUIRED = (
    "epoch",
    "model",
    "objective",
    "optimizer",
    "rng",
    "history",
    "seconds",
    "train_seconds",
    "train_images",
    "schedule",
)
# Keys that may differ between the checkpoint and config.yaml: where the folder and the data
# live now (a changed dataset is caught by its size), how files are checked and kept, how the
# run reports and evaluates, and its thread count. Everything else shapes the weights.
_FREE_KEYS = {
    "run.out",
    "run.progress",
    "run.save_every",
    "run.eval_batch_size",
    "run.threads",
    "data.root",
    "data.download",
    "data.verify",
}


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
    """Read a checkpoint onto the CPU with torch's weights-only unpickler.

    Anything else (an unreadable or truncated file, a pickle holding code or foreign objects, a
    payload lacking one of `REQUIRED`) is a one-line ValueError; nothing in the file runs.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    except Exception:  # torch raises many kinds for a foreign or damaged file
        raise ValueError(
            f"{path} is not a checkpoint of this package (damaged, or holding objects a "
            f"checkpoint never contains); it was not loaded. Restore the run's own last.pt "
            f"or start a new run"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a checkpoint of format {FORMAT} of this package")
    missing = [key for key in REQUIRED if key not in payload]
    if missing:
        raise ValueError(
            f"{path} is not a complete checkpoint: it lacks {', '.join(missing)}; restore the "
            f"run's own last.pt or start a new run"
        )
    return payload


def config_record(cfg: Config) -> dict[str, Any]:
    """The resolved config as flat dotted keys, saved in each checkpoint."""
    return flatten(dataclasses.asdict(cfg))


def check_same_config(ckpt: dict[str, Any], cfg: Config, path: Path) -> None:
    """Refuse to resume when config.yaml and the checkpoint disagree (an edited config.yaml, or
    a last.pt copied from another run): the weights would continue under other settings than
    the folder records. Names the keys that differ."""
    saved = ckpt.get("config")
    now = config_record(cfg)
    if isinstance(saved, dict):
        differ = [
            f"{key}: {saved[key]!r} in the checkpoint, {now[key]!r} in config.yaml"
            for key in sorted(set(saved) & set(now))  # a key added to the code since is free
            if key not in _FREE_KEYS and saved[key] != now[key]
        ]
    else:  # a checkpoint from before configs were saved: its optimizer still tells
        group = ckpt["optimizer"].get("param_groups", [{}])[0]
        pairs = [("optim.lr", "initial_lr"), ("optim.momentum", "momentum")]
        pairs.append(("optim.weight_decay", "weight_decay"))
        differ = [
            f"{key}: {group.get(name)!r} in the checkpoint, {now[key]!r} in config.yaml"
            for key, name in pairs
            if name in group and group[name] != now[key]
        ]
    if differ:
        raise ValueError(
            f"{path} was written under another config than {path.parent.parent / 'config.yaml'}"
            f" ({'; '.join(differ)}); restore the config (or the checkpoint), or start a new "
            f"run with --config and another --out"
        )
