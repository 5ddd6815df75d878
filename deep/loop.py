"""The training loop: epochs of SGD on the batch stream, evaluation, checkpoints, tables.

`train` runs a Session from its current epoch to the end. Each epoch: `train_epoch` (SGD over
the stream, through `train_steps`, which the throughput benchmark calls too), then
`evaluate_epoch` (test accuracy; NC metrics of the training features when due), then a
checkpoint and the run folder's tables, written by rank 0.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from deep.augment import TrainBatch
from deep.checkpoint import capture_rng, config_record, restore_rng, save_checkpoint
from deep.distributed import DistInfo, all_gather_rows, all_reduce_sum
from deep.evaluate import (
    EvalNetwork,
    accuracy_from_counts,
    class_correct,
    forward_all,
    geometry_snapshot,
    nc_report,
)
from deep.report import build_summary, epoch_line, header, say
from deep.rundir import RunFolder
from deep.session import Session, Split

__all__ = [
    "evaluate_epoch",
    "forward_session",
    "restore",
    "run_epoch",
    "train",
    "train_epoch",
    "train_steps",
]


PLAIN_PROGRESS_SECONDS = 30.0  # [s] between progress lines when stderr is not a terminal


def train(s: Session, folder: RunFolder) -> dict[str, Any]:
    """Train from epoch `s.epoch` to the end, writing the run folder; returns the summary."""
    say(s.info, header(s, folder))
    started = time.perf_counter()
    if s.epoch >= s.cfg.optim.epochs:
        say(s.info, f"deep.train: {folder.path} has finished all {s.epoch} epochs already")
        return build_summary(s, s.seconds, finished=True)
    while s.epoch < s.cfg.optim.epochs:
        row = run_epoch(s)
        s.history.append(row)
        s.epoch += 1
        say(s.info, epoch_line(s, row))
        summary = _save(s, folder, s.seconds + time.perf_counter() - started)
    say(s.info, f"deep.train: wrote {folder.path}")
    return summary


def run_epoch(s: Session) -> dict[str, Any]:
    """One epoch of training, then evaluation: the epoch's row of history.csv."""
    epoch = s.epoch
    s.objective.start_epoch(epoch)
    row: dict[str, Any] = {"epoch": epoch + 1}
    row |= train_epoch(s)
    row |= evaluate_epoch(s, with_nc=_nc_due(s, epoch), with_test=_test_due(s, epoch))
    return row


def _nc_due(s: Session, epoch: int) -> bool:
    return (epoch + 1) % s.cfg.run.nc_every == 0 or epoch + 1 == s.cfg.optim.epochs


def _test_due(s: Session, epoch: int) -> bool:
    return (epoch + 1) % s.cfg.run.test_every == 0 or epoch + 1 == s.cfg.optim.epochs


def train_steps(
    s: Session, batches: Iterable[TrainBatch], on_step: Callable[[int, Tensor], None] | None = None
) -> Tensor:
    """SGD steps on `batches`, counted from the start of the current epoch; sum of the losses."""
    s.step.train()
    loss_sum = torch.zeros((), device=s.device)
    for i, batch in enumerate(batches):
        s.schedule.apply(s.optimizer, s.global_step + i)
        with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=s.amp):
            loss = s.step(batch.x, batch.y_a, batch.y_b, batch.lam)
        s.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        s.optimizer.step()
        loss_sum += loss.detach()
        if on_step is not None:
            on_step(i, loss)
    return loss_sum


def train_epoch(s: Session) -> dict[str, Any]:
    """One epoch of the stream; mean loss, last learning rate and speed."""
    steps = s.stream.steps_per_epoch
    bar = tqdm(
        total=steps,
        desc=f"epoch {s.epoch + 1}/{s.cfg.optim.epochs}",
        leave=False,
        disable=not (s.cfg.run.progress and s.info.main and sys.stderr.isatty()),
    )

    # Not on a terminal (a log file, nohup, a batch scheduler): a plain line now and then.
    plain = s.cfg.run.progress and s.info.main and bar.disable
    next_line = time.perf_counter() + PLAIN_PROGRESS_SECONDS

    def show(i: int, loss: Tensor) -> None:
        nonlocal next_line
        bar.update()
        if i % 20 == 0 and not bar.disable:  # .item() waits for the device: only now and then
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if plain and time.perf_counter() >= next_line:
            next_line = time.perf_counter() + PLAIN_PROGRESS_SECONDS
            print(
                f"epoch {s.epoch + 1}/{s.cfg.optim.epochs}: step {i + 1}/{steps}, "
                f"loss {loss.item():.4f}, {time.perf_counter() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    start = time.perf_counter()
    loss_sum = train_steps(s, s.stream.epoch(), show)
    loss_mean = float(all_reduce_sum(loss_sum, s.info)) / (steps * s.info.world)
    seconds = time.perf_counter() - start
    bar.close()
    if not math.isfinite(loss_mean):
        raise FloatingPointError(f"training diverged in epoch {s.epoch + 1}: loss {loss_mean}")
    images = steps * s.cfg.optim.batch_size
    s.train_seconds += seconds
    s.train_images += images
    return {
        "lr": s.optimizer.param_groups[0]["lr"],
        "train_loss": loss_mean,
        "train_seconds": seconds,
        "images_per_second": images / seconds,
    }


def evaluate_epoch(s: Session, with_nc: bool, with_test: bool = True) -> dict[str, Any]:
    """Test accuracies (if `with_test`) and, if `with_nc`, the training set in eval mode without
    augmentation: NC metrics, training accuracy and loss, and a geometry snapshot (rank 0 keeps
    it in `s.geometry`, the run folder's geometry.npz)."""
    start = time.perf_counter()
    if s.eval_net is None:
        s.eval_net = EvalNetwork(
            s.net, compile=s.cfg.run.compile, backbone_dtype=torch.bfloat16 if s.amp else None
        )
    else:
        s.eval_net.refresh(s.net)
    net = s.eval_net
    out = _test_accuracy(s, net) if with_test else {}
    if with_test and s.val is not None:
        out["val_acc"] = _val_accuracy(s, net, s.val)
    out["eval_seconds"] = time.perf_counter() - start
    if with_nc:
        start = time.perf_counter()
        out |= _train_set_report(s, net)
        out["nc_seconds"] = time.perf_counter() - start
    return out


def _shard(n: int, info: DistInfo) -> slice:
    return slice(n * info.rank // info.world, n * (info.rank + 1) // info.world)


def _test_accuracy(s: Session, net: EvalNetwork) -> dict[str, Any]:
    part = _shard(len(s.test.labels), s.info)
    _, logits = forward_session(s, net, s.test.images[part])
    counts = all_reduce_sum(class_correct(logits, s.test.labels[part], s.num_classes), s.info)
    report = accuracy_from_counts(counts, s.groups)
    per_class = report.pop("per_class_acc")
    return report | {f"acc_class_{k}": acc for k, acc in enumerate(per_class)}


def _val_accuracy(s: Session, net: EvalNetwork, val: Split) -> float:
    """Top-1 accuracy on the held-out validation images (balanced: every class counts alike)."""
    part = _shard(len(val.labels), s.info)
    _, logits = forward_session(s, net, val.images[part])
    counts = all_reduce_sum(class_correct(logits, val.labels[part], s.num_classes), s.info)
    return float(counts[0].sum() / counts[1].sum())


def _train_set_report(s: Session, net: EvalNetwork) -> dict[str, Any]:
    """NC metrics, training accuracy (overall and of the worst class) and the objective's mean
    loss on the unaugmented training set; rank 0 also appends the geometry snapshot."""
    part = _shard(len(s.train.labels), s.info)
    labels = s.train.labels[part]
    features, logits = forward_session(s, net, s.train.images[part])
    correct = all_reduce_sum(class_correct(logits, labels, s.num_classes), s.info).double()
    loss_sum = all_reduce_sum(_objective_sum(s, features, logits, labels), s.info)
    features = all_gather_rows(features, s.info)
    per_class = correct[0] / correct[1].clamp_min(1)
    out: dict[str, Any] = {
        "train_acc": float(correct[0].sum() / correct[1].sum()),
        "train_acc_min_class": float(per_class.min()),
        "train_eval_loss": float(loss_sum) / len(s.train.labels),
    }
    if not s.info.main:
        return out | {"nc": {}}
    head = net.module.head
    s.geometry.append(
        geometry_snapshot(features, s.train.labels, head, epoch=s.epoch + 1, train=out)
    )
    return out | {"nc": nc_report(features, s.train.labels, head, s.minority)}


@torch.no_grad()
def _objective_sum(s: Session, h: Tensor, z: Tensor, y: Tensor) -> Tensor:
    """Sum over samples of the training objective, in batches of the training batch size."""
    total = torch.zeros((), dtype=torch.float64, device=h.device)
    size = s.cfg.optim.batch_size
    for i in range(0, len(y), size):
        chunk = slice(i, i + size)
        n = len(y[chunk])
        total += s.objective(h[chunk], z[chunk], y[chunk], y[chunk], 1.0).double() * n
    return total


def forward_session(s: Session, net: EvalNetwork, images: torch.Tensor) -> tuple[Tensor, Tensor]:
    """Eval-mode features (N, d) and logits (N, K) of `images` with the session's settings."""
    return forward_all(
        net.run,
        images,
        s.normalizer,
        batch_size=s.eval_batch_size,
        amp=s.amp,
        channels_last=s.cfg.run.channels_last,
        dtype=net.input_dtype,
    )


def _save(s: Session, folder: RunFolder, elapsed: float) -> dict[str, Any]:
    """Checkpoint (every process takes part in gathering states), then the tables, on rank 0.

    Returns the summary of the run so far.
    """
    rng = capture_rng(s.stream, s.info)
    summary = build_summary(s, elapsed, finished=s.epoch >= s.cfg.optim.epochs)
    if not s.info.main:
        return summary
    payload = {
        "epoch": s.epoch,
        "model": s.net.state_dict(),
        "objective": s.objective.state_dict(),
        "optimizer": s.optimizer.state_dict(),
        "rng": rng,
        "history": s.history,
        "geometry": s.geometry,
        "seconds": elapsed,
        "train_seconds": s.train_seconds,
        "train_images": s.train_images,
        # The learning rate is a function of the step; the step count pins the data too.
        "schedule": {"step": s.global_step, "steps_per_epoch": s.stream.steps_per_epoch},
        "config": config_record(s.cfg),  # a resume under another config is refused
    }
    save_checkpoint(folder.last_checkpoint, payload)
    if s.cfg.run.save_every and s.epoch % s.cfg.run.save_every == 0:
        save_checkpoint(folder.epoch_checkpoint(s.epoch), payload)
    folder.write_history(s.history)
    if s.geometry:
        folder.write_geometry(s.geometry)
    folder.write_summary(summary)
    return summary


def restore(s: Session, ckpt: dict[str, Any]) -> None:
    """Put a checkpoint's state into a freshly built Session of the same config."""
    steps = ckpt["schedule"]["steps_per_epoch"]
    if steps != s.stream.steps_per_epoch:
        raise ValueError(
            f"the checkpoint has {steps} steps per epoch, the data now gives "
            f"{s.stream.steps_per_epoch}: the dataset's files changed since the run started"
        )
    try:
        s.net.load_state_dict(ckpt["model"])
        s.objective.load_state_dict(ckpt["objective"])
        s.optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, KeyError, ValueError) as exc:  # another architecture, head or method
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ValueError(
            f"the checkpoint does not fit the network, objective or optimizer of config.yaml "
            f"({detail}); it was written by a run of another architecture or method"
        ) from None
    restore_rng(ckpt["rng"], s.stream, s.info)
    s.epoch = int(ckpt["epoch"])
    s.history = list(ckpt["history"])
    s.geometry = list(ckpt.get("geometry", []))  # checkpoints written before geometry.npz: none
    s.seconds = float(ckpt["seconds"])
    s.train_seconds = float(ckpt["train_seconds"])
    s.train_images = int(ckpt["train_images"])
