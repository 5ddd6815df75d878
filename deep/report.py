"""What a run tells: the start-up header, one line per epoch, and summary.json."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

from deep.distributed import DistInfo
from deep.rundir import RunFolder
from deep.session import Session
from ufm.io import code_commit

__all__ = ["build_summary", "epoch_line", "header", "say"]


def say(info: DistInfo, text: str | None) -> None:
    if text and info.main:
        print(text, flush=True)


def build_summary(s: Session, seconds: float, finished: bool) -> dict[str, Any]:
    """summary.json: results of the last epoch, the best test accuracy, data and environment."""
    rows = s.history
    last = rows[-1] if rows else {}
    best = max(rows, key=lambda r: r["test_acc"]) if rows else {}
    nc_rows = [r for r in rows if r.get("nc")]
    k = s.num_classes
    return {
        "status": "finished" if finished else "running",
        "epochs_done": s.epoch,
        "epochs": s.cfg.optim.epochs,
        "best_test_acc": best.get("test_acc"),
        "best_epoch": best.get("epoch"),
        "last_test_acc": last.get("test_acc"),
        "per_class_acc": [last.get(f"acc_class_{c}") for c in range(k)] if last else [],
        "group_acc": {g: last.get(f"{g}_acc") for g in s.groups} if last else {},
        "nc": dict(nc_rows[-1]["nc"]) if nc_rows else {},
        "nc_epoch": nc_rows[-1]["epoch"] if nc_rows else None,
        "counts": s.counts.tolist(),
        "test_counts": s.test.counts(k).tolist(),
        "classes": list(s.data.classes),
        "groups": s.groups,
        "minority": s.minority,
        "seconds": seconds,
        "train_seconds": s.train_seconds,
        "images_per_second": s.train_images / s.train_seconds if s.train_seconds else None,
        "dataset": s.data.name,
        "data_source": s.data.source,
        "num_parameters": sum(p.numel() for p in s.net.parameters()),
        "environment": _environment(s),
    }


def _environment(s: Session) -> dict[str, Any]:
    return {
        "device": str(s.device),
        "device_name": _device_name(s.device),
        "world_size": s.info.world,
        "amp": "bf16" if s.amp else "off",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "code_version": code_commit(),
        "command": " ".join(["python", "-m", "deep.train", *s.command]),
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(s: Session, folder: RunFolder) -> str:
    c, counts = s.cfg, s.counts
    params = sum(p.numel() for p in s.net.parameters()) / 1e6
    where = f"{s.device}" + (f" x{s.info.world} processes" if s.info.active else "")
    resuming = f" (resuming after epoch {s.epoch})" if s.epoch else ""
    return "\n".join(
        [
            f"data   {s.data.name} from {s.data.source}: {s.num_classes} classes, train subset "
            f"{counts.sum()} ({c.data.profile}, {counts.max()} ... {counts.min()} per class), "
            f"test {len(s.test.labels)}",
            f"model  {c.model.arch} x{c.model.width} (d={s.net.head.feature_dim}), "
            f"{c.head.name} head, loss {c.loss.name}, {params:.2f}M parameters",
            f"train  {c.optim.epochs} epochs x {s.stream.steps_per_epoch} steps of "
            f"{c.optim.batch_size}, lr {c.optim.lr:g}, {c.preset} preset, on {where}, "
            f"{'bf16' if s.amp else 'fp32'}",
            f"run    {folder.path}{resuming}",
        ]
    )


def epoch_line(s: Session, row: dict[str, Any]) -> str:
    width = len(str(s.cfg.optim.epochs))
    groups = ", ".join(f"{g} {100 * row[f'{g}_acc']:.1f}" for g in s.groups)
    nc = f" | nc1 {row['nc']['nc1']:.3g}" if row.get("nc") else ""
    return (
        f"epoch {row['epoch']:>{width}}/{s.cfg.optim.epochs} | loss {row['train_loss']:.4f} | "
        f"test {100 * row['test_acc']:.2f}% ({groups}){nc} | "
        f"{row['train_seconds']:.1f} s, {row['images_per_second']:.0f} img/s"
    )
