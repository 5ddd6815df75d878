"""Train a ResNet on long-tailed data and watch neural collapse: `python -m deep.train`.

    python -m deep.train                                  # Fashion-MNIST-LT, fixed ETF + DR
    python -m deep.train --dataset cifar10 --imbalance 100 --head etf --loss dr
    python -m deep.train --head linear --loss ce --seed 2
    python -m deep.train --config my.yaml --set optim.lr=0.05 --epochs 30 --out runs/deep/mine
    python -m deep.train --resume runs/deep/<run>         # continues exactly where it stopped
    torchrun --nproc_per_node=4 -m deep.train ...         # data-parallel over processes

Each epoch trains on the whole subset, evaluates top-1 accuracy on the test set (overall, per
class, head / medium / tail) and, every run.nc_every epochs and after the last, the NC metrics of
the training features. The run folder (deep.rundir) gets the config, a CSV row per epoch, a
summary and a checkpoint, each written atomically. Bad input exits with status 2 and one
message before anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor
from tqdm import tqdm

from deep.augment import TrainBatch
from deep.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from deep.config import (
    PRESETS,
    Config,
    auto_preset,
    config_from_dict,
    load_yaml_overrides,
    parse_assignment,
    resolve_config,
)
from deep.distributed import (
    DistInfo,
    all_gather_rows,
    all_reduce_sum,
    broadcast_object,
    init_distributed,
    shutdown,
)
from deep.evaluate import accuracy_from_counts, class_correct, forward_all, nc_report
from deep.models import fold_batchnorm
from deep.rundir import RunFolder
from deep.session import Session, build_session

__all__ = ["build_parser", "evaluate_epoch", "main", "train", "train_epoch", "train_steps"]

# Command-line flags and the config keys they set.
FLAGS = {
    "dataset": "data.dataset",
    "data_root": "data.root",
    "imbalance": "data.imbalance",
    "profile": "data.profile",
    "arch": "model.arch",
    "width": "model.width",
    "head": "head.name",
    "loss": "loss.name",
    "epochs": "optim.epochs",
    "batch_size": "optim.batch_size",
    "lr": "optim.lr",
    "seed": "run.seed",
    "out": "run.out",
    "nc_every": "run.nc_every",
    "device": "run.device",
    "amp": "run.amp",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m deep.train",
        description="Long-tailed ResNet training with a fixed ETF or learnable classifier, "
        "measuring neural collapse.",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="starting values (default: paper with a GPU, quick without)",
    )
    p.add_argument("--config", metavar="YAML", help="config file (complete or partial)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set optim.lr=0.05 (repeatable)",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--dataset", help="cifar10, cifar100, fashion-mnist or folder")
    p.add_argument("--data-root", help="folder holding the dataset's files")
    p.add_argument("--imbalance", type=float, help="n_max / n_min of the training subset")
    p.add_argument("--profile", help="exp, step or none")
    p.add_argument("--arch", help="backbone: resnet8, 14, 20, 32, 44, 56, 110")
    p.add_argument("--width", type=int, help="channel multiplier (feature dim 64 x width)")
    p.add_argument("--head", help="etf or linear")
    p.add_argument("--loss", help="ce, dr or dr-balanced")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run folder (default runs/deep/<name>)")
    p.add_argument("--nc-every", type=int, help="NC metrics every N epochs")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--amp", help="bf16 autocast: auto, bf16 or off")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def _flag_layer(args: argparse.Namespace) -> dict[str, Any]:
    layer = {
        key: getattr(args, flag) for flag, key in FLAGS.items() if getattr(args, flag) is not None
    }
    if args.compile:
        layer["run.compile"] = True
    if args.no_progress:
        layer["run.progress"] = False
    return layer


def resolve(args: argparse.Namespace) -> tuple[Config, str | None]:
    """The run's config from the command line, and a note on the preset chosen (or None)."""
    if args.resume:
        return _resume_config(args), None
    from_file = load_yaml_overrides(args.config) if args.config else {}
    layers = [from_file, _flag_layer(args), dict(parse_assignment(s) for s in args.set)]
    preset, note = args.preset or from_file.get("preset"), None
    if preset is None:
        preset, note = auto_preset(torch.cuda.is_available())
    return resolve_config(preset, layers), note


def _resume_config(args: argparse.Namespace) -> Config:
    given = [
        f"--{k.replace('_', '-')}"
        for k in (*FLAGS, "preset", "config", "compile")
        if getattr(args, k) not in (None, False)
    ] + ["--set"] * bool(args.set)
    if given:
        raise ValueError(
            f"--resume continues a run with its own config.yaml; drop {', '.join(given)}"
        )
    folder = RunFolder(args.resume)
    if not folder.config.is_file():
        raise ValueError(f"{folder.path} is not a run folder: {folder.config} is missing")
    tree = yaml.safe_load(folder.config.read_text(encoding="utf-8"))
    cfg = config_from_dict(tree)
    cfg.run.out = str(folder.path)
    if args.no_progress:
        cfg.run.progress = False
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    info = DistInfo()
    try:
        cfg, note = resolve(args)
        if args.print_config:
            print(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False), end="")
            return 0
        info, device = init_distributed(cfg.run.device)
        _say(info, f"deep.train: {note}" if note else None)
        session = build_session(cfg, info, device)
        folder = _open_folder(session, resume=bool(args.resume))
    except ValueError as exc:  # ConfigError, DataError and every rejected value
        print(f"deep.train: error: {exc}", file=sys.stderr)
        shutdown(info)
        return 2
    try:
        _configure_backends(session.device)
        train(session, folder)
    except KeyboardInterrupt:
        done = f"after epoch {session.epoch}" if session.epoch else "before the first epoch"
        print(
            f"\ndeep.train: interrupted {done}; continue with --resume {folder.path}",
            file=sys.stderr,
        )
        return 130
    finally:
        shutdown(info)
    return 0


def _say(info: DistInfo, text: str | None) -> None:
    if text and info.main:
        print(text, flush=True)


def _configure_backends(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
        torch.backends.cuda.matmul.allow_tf32 = True


def _open_folder(s: Session, resume: bool) -> RunFolder:
    """The run folder: restored from on --resume, created (empty, checked) otherwise."""
    if resume:
        folder = RunFolder(s.cfg.run.out)
        if folder.last_checkpoint.is_file():
            _restore(s, load_checkpoint(folder.last_checkpoint))
        return folder
    path = s.cfg.run.out or str(Path("runs") / "deep" / _run_name(s.cfg))
    folder = RunFolder(broadcast_object(path, s.info))
    s.cfg.run.out = str(folder.path)
    problem = None
    if s.info.main:  # one process checks and creates; the others learn the outcome
        try:
            folder.check_new()
            folder.create(s.cfg)
        except ValueError as exc:
            problem = str(exc)
    problem = broadcast_object(problem, s.info)
    if problem:
        raise ValueError(problem)
    return folder


def _run_name(cfg: Config) -> str:
    d = cfg.data
    stamp = time.strftime("%Y%m%d-%H%M%S")
    method = f"{cfg.head.name}-{cfg.loss.name}"
    return f"{d.dataset}-{d.profile}{d.imbalance:g}-{method}-s{cfg.run.seed}-{stamp}"


def _restore(s: Session, ckpt: dict[str, Any]) -> None:
    s.net.load_state_dict(ckpt["model"])
    s.objective.load_state_dict(ckpt["objective"])
    s.optimizer.load_state_dict(ckpt["optimizer"])
    restore_rng(ckpt["rng"], s.stream, s.info)
    s.epoch = int(ckpt["epoch"])
    s.history = list(ckpt["history"])
    s.seconds = float(ckpt["seconds"])
    s.train_seconds = float(ckpt["train_seconds"])
    s.train_images = int(ckpt["train_images"])


def train(s: Session, folder: RunFolder) -> dict[str, Any]:
    """Train from epoch `s.epoch` to the end, writing the run folder; returns the summary."""
    _say(s.info, _header(s, folder))
    started = time.perf_counter()
    if s.epoch >= s.cfg.optim.epochs:
        _say(s.info, f"deep.train: {folder.path} has finished all {s.epoch} epochs already")
    while s.epoch < s.cfg.optim.epochs:
        row = run_epoch(s)
        s.history.append(row)
        s.epoch += 1
        _say(s.info, _epoch_line(s, row))
        elapsed = s.seconds + time.perf_counter() - started
        _save(s, folder, elapsed)
    summary = build_summary(s, s.seconds + time.perf_counter() - started, finished=True)
    if s.info.main:
        folder.write_metrics(s.history)
        folder.write_summary(summary)
    _say(s.info, f"deep.train: wrote {folder.path}")
    return summary


def run_epoch(s: Session) -> dict[str, Any]:
    """One epoch of training, then evaluation: the epoch's row of metrics.csv."""
    epoch = s.epoch
    s.objective.start_epoch(epoch)
    row: dict[str, Any] = {"epoch": epoch + 1}
    row |= train_epoch(s)
    row |= evaluate_epoch(s, with_nc=_nc_due(s, epoch))
    return row


def _nc_due(s: Session, epoch: int) -> bool:
    return (epoch + 1) % s.cfg.run.nc_every == 0 or epoch + 1 == s.cfg.optim.epochs


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

    def show(i: int, loss: Tensor) -> None:
        bar.update()
        if i % 20 == 0 and not bar.disable:  # .item() waits for the device: only now and then
            bar.set_postfix(loss=f"{loss.item():.4f}")

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


def evaluate_epoch(s: Session, with_nc: bool) -> dict[str, Any]:
    """Test accuracies and, if `with_nc`, NC metrics of the training features (eval mode)."""
    start = time.perf_counter()
    net = fold_batchnorm(s.net)
    out = _test_accuracy(s, net)
    out["eval_seconds"] = time.perf_counter() - start
    if with_nc:
        start = time.perf_counter()
        out["nc"] = _nc_metrics(s, net)
        out["nc_seconds"] = time.perf_counter() - start
    return out


def _shard(n: int, info: DistInfo) -> slice:
    return slice(n * info.rank // info.world, n * (info.rank + 1) // info.world)


def _test_accuracy(s: Session, net: torch.nn.Module) -> dict[str, Any]:
    part = _shard(len(s.test.labels), s.info)
    _, logits = _forward(s, net, s.test.images[part])
    counts = all_reduce_sum(class_correct(logits, s.test.labels[part], s.num_classes), s.info)
    report = accuracy_from_counts(counts, s.groups)
    per_class = report.pop("per_class_acc")
    return report | {f"acc_class_{k}": acc for k, acc in enumerate(per_class)}


def _nc_metrics(s: Session, net: torch.nn.Module) -> dict[str, float]:
    part = _shard(len(s.train.labels), s.info)
    features, _ = _forward(s, net, s.train.images[part])
    features = all_gather_rows(features, s.info)
    if not s.info.main:
        return {}
    return nc_report(features, s.train.labels, net.head, s.minority)


def _forward(s: Session, net: torch.nn.Module, images: torch.Tensor):
    return forward_all(
        net,
        images,
        s.normalizer,
        batch_size=s.cfg.run.eval_batch_size,
        amp=s.amp,
        channels_last=s.cfg.run.channels_last,
    )


def _save(s: Session, folder: RunFolder, elapsed: float) -> None:
    """Checkpoint (every process takes part in gathering states), then the tables, on rank 0."""
    rng = capture_rng(s.stream, s.info)
    if not s.info.main:
        return
    payload = {
        "epoch": s.epoch,
        "model": s.net.state_dict(),
        "objective": s.objective.state_dict(),
        "optimizer": s.optimizer.state_dict(),
        "rng": rng,
        "history": s.history,
        "seconds": elapsed,
        "train_seconds": s.train_seconds,
        "train_images": s.train_images,
    }
    save_checkpoint(folder.last_checkpoint, payload)
    if s.cfg.run.save_every and s.epoch % s.cfg.run.save_every == 0:
        save_checkpoint(folder.epoch_checkpoint(s.epoch), payload)
    folder.write_metrics(s.history)
    folder.write_summary(build_summary(s, elapsed, finished=s.epoch >= s.cfg.optim.epochs))


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
        "device_name": torch.cuda.get_device_name(s.device)
        if s.device.type == "cuda"
        else platform.processor() or platform.machine(),
        "world_size": s.info.world,
        "amp": "bf16" if s.amp else "off",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "code_version": _git_version(),
        "command": " ".join(sys.argv),
    }


def _git_version() -> str | None:
    """The commit of the code that ran, with '+dirty' if it had uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "deep", "ufm"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _header(s: Session, folder: RunFolder) -> str:
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


def _epoch_line(s: Session, row: dict[str, Any]) -> str:
    width = len(str(s.cfg.optim.epochs))
    groups = ", ".join(f"{g} {100 * row[f'{g}_acc']:.1f}" for g in s.groups)
    nc = f" | nc1 {row['nc']['nc1']:.3g}" if row.get("nc") else ""
    return (
        f"epoch {row['epoch']:>{width}}/{s.cfg.optim.epochs} | loss {row['train_loss']:.4f} | "
        f"test {100 * row['test_acc']:.2f}% ({groups}){nc} | "
        f"{row['train_seconds']:.1f} s, {row['images_per_second']:.0f} img/s"
    )


if __name__ == "__main__":
    sys.exit(main())
