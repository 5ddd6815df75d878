"""What a run tells: the start-up header, one line per epoch, and summary.json."""

from __future__ import annotations

import platform
import shlex
from pathlib import Path
from typing import Any

import torch

from deep.distributed import DistInfo
from deep.rundir import RunFolder
from deep.session import Session
from ufm.io import code_commit

__all__ = ["build_summary", "epoch_line", "header", "say", "terminal_phase"]


def say(info: DistInfo, text: str | None) -> None:
    if text and info.main:
        print(text, flush=True)


def build_summary(s: Session, seconds: float, finished: bool) -> dict[str, Any]:
    """summary.json: results of the last epoch, the best test accuracy, data and environment."""
    rows = s.history
    tested = [r for r in rows if "test_acc" in r]  # run.test_every may skip epochs
    last = tested[-1] if tested else {}
    best = max(tested, key=lambda r: r["test_acc"]) if tested else {}
    nc_rows = [r for r in rows if r.get("nc")]
    k = s.num_classes
    return {
        "status": "finished" if finished else "running",
        "epochs_done": s.epoch,
        "epochs": s.cfg.optim.epochs,
        "best_test_acc": best.get("test_acc"),
        # The best epoch is chosen on the test set itself, as the papers' code does: an
        # optimistic number; last_test_acc involves no choice.
        "best_test_acc_chosen_on": "test",
        **_best_on_validation(tested),
        "best_epoch": best.get("epoch"),
        "last_test_acc": last.get("test_acc"),
        "per_class_acc": [last.get(f"acc_class_{c}") for c in range(k)] if last else [],
        "group_acc": {g: last.get(f"{g}_acc") for g in s.groups} if last else {},
        "nc": dict(nc_rows[-1]["nc"]) if nc_rows else {},
        "nc_epoch": nc_rows[-1]["epoch"] if nc_rows else None,
        "train_acc": nc_rows[-1].get("train_acc") if nc_rows else None,
        "train_eval_loss": nc_rows[-1].get("train_eval_loss") if nc_rows else None,
        "terminal_phase": terminal_phase(nc_rows),
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


def _best_on_validation(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """With a validation split (data.val_per_class): the epoch of the best validation accuracy
    and the test accuracy there, the number a paper can report without choosing on the test."""
    rows = [r for r in rows if "val_acc" in r]
    if not rows:
        return {}
    best = max(rows, key=lambda r: r["val_acc"])
    return {
        "best_val_acc": best["val_acc"],
        "best_val_epoch": best["epoch"],
        "test_acc_at_best_val": best.get("test_acc"),
    }


def terminal_phase(nc_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the terminal phase (Papyan et al. 2020) began: the first NC evaluation from which
    on every class was fitted (training accuracy 100% in each, unaugmented, eval mode), and NC1
    there and at the last evaluation. `reached` is False if the last evaluation is not fitted."""
    fitted = [r.get("train_acc_min_class") == 1.0 for r in nc_rows]
    start = None
    for i in range(len(fitted) - 1, -1, -1):
        if not fitted[i]:
            break
        start = i
    if start is None:
        return {"reached": False, "since_epoch": None}
    return {
        "reached": True,
        "since_epoch": nc_rows[start]["epoch"],
        "nc1_at_start": nc_rows[start]["nc"].get("nc1"),
        "nc1_last": nc_rows[-1]["nc"].get("nc1"),
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
        "command": shlex.join(["python", "-m", "deep.train", *s.command]),
        "resume_command": (
            shlex.join(["python", "-m", "deep.train", *s.resumed_with]) if s.resumed_with else None
        ),
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
    if s.device.type == "cpu":
        threads = torch.get_num_threads()
        where += f" ({threads} thread{'s' * (threads != 1)})"
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
    test = ""
    if "test_acc" in row:
        groups = ", ".join(  # an empty group (no few-shot class, say) has no accuracy
            f"{g} {100 * row[f'{g}_acc']:.1f}" for g in s.groups if s.groups[g]
        )
        test = f"test {100 * row['test_acc']:.2f}% ({groups}) | "
    nc = ""
    if row.get("nc"):
        nc = f"train {100 * row['train_acc']:.2f}% | nc1 {row['nc']['nc1']:.3g} | "
    return (
        f"epoch {row['epoch']:>{width}}/{s.cfg.optim.epochs} | loss {row['train_loss']:.4f} | "
        f"{test}{nc}{row['train_seconds']:.1f} s, {row['images_per_second']:.0f} img/s"
    )
