"""Train a ResNet on long-tailed data and watch neural collapse: `python -m deep.train`.

    python -m deep.train                                  # Fashion-MNIST-LT, fixed ETF + DR
    python -m deep.train --dataset cifar10 --imbalance 100 --head etf --loss dr
    python -m deep.train --head linear --loss ce --seed 2
    python -m deep.train --config my.yaml --set optim.lr=0.05 --epochs 30 --out runs/deep/mine
    python -m deep.train --resume runs/deep/<run>         # continues exactly where it stopped
    torchrun --nproc_per_node=4 -m deep.train ...         # data-parallel over processes

Each epoch trains on the whole subset, evaluates top-1 accuracy on the test set (overall, per
class, head / medium / tail) and, every run.nc_every epochs and after the last, the NC metrics of
the training features. The run folder (deep.rundir, the convention of ufm.runfolder) gets
run.json, the config, a CSV row per epoch (history.csv), a summary and a checkpoint, each
written atomically; at the end the run's figures are drawn into <run>/figures through the
figures entry point (--no-figures skips them). Bad input exits with status 2 and one message before
anything is written.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from deep.checkpoint import check_same_config, load_checkpoint
from deep.config import (
    PRESETS,
    Config,
    auto_preset,
    config_from_dict,
    config_to_yaml,
    load_yaml_overrides,
    parse_assignment,
    resolve_config,
)
from deep.datasets import DATASETS
from deep.distributed import (
    DistInfo,
    broadcast_object,
    init_distributed,
    shutdown,
)
from deep.heads import HEADS
from deep.loop import restore, train
from deep.objectives import OBJECTIVES
from deep.report import say
from deep.resnet import BACKBONES
from deep.rundir import RunFolder
from deep.session import Session, build_session
from ufm.io import check_output_dir
from ufm.runfolder import RunFolderError, draw_figures, read_run
from ufm.runtime import default_threads

__all__ = ["FLAGS", "build_parser", "main", "resolve"]

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
    "threads": "run.threads",
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
    p.add_argument("--dataset", help=_choices(DATASETS) + _FROM_PRESET)
    p.add_argument("--data-root", help="folder holding the dataset's files")
    p.add_argument("--imbalance", type=float, help="n_max / n_min of the training subset")
    p.add_argument("--profile", help="exp, step or none")
    p.add_argument("--arch", help=f"backbone: {_choices(BACKBONES)}{_FROM_PRESET}")
    p.add_argument("--width", type=int, help="channel multiplier (feature dim 64 x width)")
    p.add_argument("--head", help=_choices(HEADS))
    p.add_argument("--loss", help=_choices(OBJECTIVES))
    p.add_argument("--epochs", type=int, help="epochs to train" + _FROM_PRESET)
    p.add_argument("--batch-size", type=int, help="global batch size" + _FROM_PRESET)
    p.add_argument("--lr", type=float, help="peak learning rate" + _FROM_PRESET)
    p.add_argument(
        "--seed", type=int, help="seed of initialisation, batch order, augmentation" + _FROM_PRESET
    )
    p.add_argument("--out", help="run folder (default runs/deep/<name>)")
    p.add_argument("--nc-every", type=int, help="NC metrics every N epochs")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, ..." + _FROM_PRESET)
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads per process (default: half the CPUs this process may use, "
        "shared by torchrun's processes; 1 is fastest on a loaded machine)",
    )
    p.add_argument("--amp", help="bf16 autocast: auto, bf16 or off")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-figures", action="store_true", help="do not draw the run's figures at the end"
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


# The values behind these flags come from the preset (and --config): --print-config shows them.
_FROM_PRESET = " (default: from the preset; --print-config shows every value)"


def _choices(registry) -> str:
    return "one of: " + ", ".join(registry.names())


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
    try:
        tree = yaml.safe_load(folder.config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise ValueError(
            f"cannot resume: {folder.config} is not readable YAML ({detail}); restore it "
            f"(python -m deep.train --print-config shows the layout)"
        ) from None
    try:
        cfg = config_from_dict(tree)
    except ValueError as exc:
        raise ValueError(f"cannot resume: {folder.config}: {exc}") from None
    cfg.run.out = str(folder.path)
    if args.no_progress:
        cfg.run.progress = False
    return cfg


def main(argv: list[str] | None = None) -> int:
    threads = torch.get_num_threads()
    try:
        return _main(argv)
    finally:  # a caller in the same process (deep.table --in-process, tests) keeps its own
        torch.set_num_threads(threads)


def _threads(cfg: Config) -> int:
    return cfg.run.threads or default_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    info = DistInfo()
    try:
        cfg, note = resolve(args)
        if args.print_config:
            print(config_to_yaml(cfg), end="")
            return 0
        if not args.resume and os.environ.get("RANK", "0") == "0":
            _check_output(cfg)  # before the data is read: nothing to undo on a bad --out
        torch.set_num_threads(_threads(cfg))
        info, device = init_distributed(cfg.run.device)
        say(info, f"deep.train: {note}" if note else None)
        session = build_session(cfg, info, device)
        session.command = argv
        folder = _open_folder(session, resume=bool(args.resume))
        if args.resume and (first := _first_command(folder)) is not None:
            session.command, session.resumed_with = first, argv
    except ValueError as exc:  # ConfigError, DataError and every rejected value
        print(f"deep.train: error: {exc}", file=sys.stderr)
        shutdown(info)
        return 2
    except KeyboardInterrupt:  # while the data loads: no epoch ran, no result to lose
        print("\ndeep.train: interrupted before the first epoch", file=sys.stderr)
        shutdown(info)
        return 130
    try:
        _configure_backends(session.device)
        train(session, folder)
    except FloatingPointError as exc:  # divergence: the last good epoch stays resumable
        print(f"deep.train: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        done = f"after epoch {session.epoch}" if session.epoch else "before the first epoch"
        print(
            f"\ndeep.train: interrupted {done}; continue with --resume {folder.path}",
            file=sys.stderr,
        )
        return 130
    finally:
        shutdown(info)
    if info.main and not (args.no_figures or "--no-figures" in session.command):
        # Drawn by the figures package, found through its entry point; a figure that cannot
        # be drawn costs one line and no result.
        draw_figures(folder.path)
    return 0


def _first_command(folder: RunFolder) -> list[str] | None:
    """The arguments the run was started with: run.json's command, or in a folder written
    before run.json its summary's (None if there is none)."""
    try:
        run = read_run(folder.path)
        words = run.run.get("command") or shlex.split(run.summary["environment"]["command"])
    except (RunFolderError, KeyError, TypeError, ValueError):
        return None
    return list(words[3:]) if words[:3] == ["python", "-m", "deep.train"] else None


def _configure_backends(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
        torch.backends.cuda.matmul.allow_tf32 = True


def _open_folder(s: Session, resume: bool) -> RunFolder:
    """The run folder: restored from on --resume, created (empty, checked) otherwise."""
    if resume:
        folder = RunFolder(s.cfg.run.out)
        if folder.last_checkpoint.is_file():
            ckpt = load_checkpoint(folder.last_checkpoint)
            check_same_config(ckpt, s.cfg, folder.last_checkpoint)
            restore(s, ckpt)
        else:
            folder.check_restartable()
        return folder
    path = s.cfg.run.out or str(Path("runs") / "deep" / _run_name(s.cfg))
    folder = RunFolder(broadcast_object(path, s.info))
    s.cfg.run.out = str(folder.path)
    problem = None
    if s.info.main:  # one process checks and creates; the others learn the outcome
        try:
            folder.check_new()
            folder.create(s.cfg, ["python", "-m", "deep.train", *s.command])
        except ValueError as exc:
            problem = str(exc)
    problem = broadcast_object(problem, s.info)
    if problem:
        raise ValueError(problem)
    return folder


def _check_output(cfg: Config) -> None:
    if cfg.run.out:
        RunFolder(cfg.run.out).check_new()
    else:
        check_output_dir(Path("runs") / "deep", "the default run folder")


def _run_name(cfg: Config) -> str:
    d = cfg.data
    stamp = time.strftime("%Y%m%d-%H%M%S")
    method = f"{cfg.head.name}-{cfg.loss.name}"
    return f"{d.dataset}-{d.profile}{d.imbalance:g}-{method}-s{cfg.run.seed}-{stamp}"


if __name__ == "__main__":
    sys.exit(main())
