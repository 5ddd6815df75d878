"""Everything a run trains with, built from a Config before any file is written.

`build_session` reads the data, draws the long-tailed subset, puts it on the device, and builds
the network, objective, optimizer, schedule and batch stream. Any bad input (unknown name,
missing or corrupt files, impossible sizes) raises a ValueError here, so a run that cannot
start leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from deep.augment import Normalizer, TrainStream
from deep.backbone_head import Network, build_network
from deep.config import Config
from deep.datasets import DataError, DataRequest, ImageData, load_dataset
from deep.distributed import DistInfo
from deep.evaluate import EvalNetwork
from deep.longtail import (
    class_groups,
    hold_out,
    longtail_indices,
    profile_counts,
)
from deep.objectives import Objective, ObjectiveContext, build_objective
from deep.schedule import StepSchedule
from deep.seeds import derive_seed
from ufm.imbalance import minority_group

__all__ = ["Session", "Split", "TrainStep", "build_session", "use_amp"]


@dataclass
class Split:
    """Images and labels of one split, resident on the training device."""

    images: Tensor  # (N, H, W, C) uint8 on the training device
    labels: Tensor  # (N,) int64 on the training device

    def counts(self, num_classes: int) -> np.ndarray:
        return torch.bincount(self.labels.cpu(), minlength=num_classes).numpy()


class TrainStep(nn.Module):
    """Network and objective in one module, so that DDP synchronises both: batch -> loss."""

    def __init__(self, net: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.net = net
        self.objective = objective

    def forward(self, x: Tensor, y_a: Tensor, y_b: Tensor, lam: float) -> Tensor:
        h, z = self.net(x)
        return self.objective(h, z, y_a, y_b, lam)


@dataclass
class Session:
    """Everything one training run holds: config, data, network, objective, optimizer,
    schedule, batch stream and progress; `build_session` makes it, a checkpoint restores it."""

    cfg: Config
    info: DistInfo
    device: torch.device
    amp: bool  # bf16 autocast for the backbone
    eval_batch_size: int  # [images] per evaluation pass
    data: ImageData  # names and source of the full dataset (tensors on the CPU)
    train: Split  # the long-tailed training subset
    test: Split
    counts: np.ndarray  # (K,) training images per class
    groups: dict[str, list[int]]  # head / medium / tail
    minority: list[int]
    normalizer: Normalizer
    net: Network
    objective: Objective
    step: nn.Module  # TrainStep, compiled and/or DDP-wrapped as configured
    optimizer: torch.optim.Optimizer
    schedule: StepSchedule
    stream: TrainStream
    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0  # wall time of earlier sessions of this run [s]
    train_seconds: float = 0.0  # time spent in training steps [s]
    train_images: int = 0
    eval_net: EvalNetwork | None = None  # built at the first evaluation
    geometry: list[dict[str, Any]] = field(default_factory=list)  # a snapshot per NC evaluation
    command: list[str] = field(default_factory=list)  # the arguments the run was started with
    resumed_with: list[str] = field(default_factory=list)  # those of the latest --resume
    val: Split | None = None  # the held-out validation images (data.val_per_class > 0)

    @property
    def num_classes(self) -> int:
        return len(self.counts)

    @property
    def global_step(self) -> int:
        return self.epoch * self.stream.steps_per_epoch


def use_amp(setting: str, device: torch.device) -> bool:
    """bf16 autocast: 'auto' turns it on where bf16 matrix units exist (CUDA compute capability
    8.0 and newer, CPUs with AMX).

    Elsewhere bf16 would be emulated and slower than float32, so 'auto' leaves it off.
    """
    if setting == "auto":
        if device.type == "cuda":  # bf16 tensor cores: compute capability 8.0 and newer
            return torch.cuda.get_device_capability(device)[0] >= 8
        return device.type == "cpu" and _cpu_has_amx()
    return setting == "bf16"


def _cpu_has_amx() -> bool:
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # absent in some builds
    return bool(probe()) if probe is not None else False


def build_session(cfg: Config, info: DistInfo, device: torch.device) -> Session:
    """Data, subset, network, objective, optimizer, schedule and stream for `cfg`."""
    data = _load(cfg)
    seed = cfg.data.subset_seed
    pool, held = hold_out(data.train_labels, cfg.data.val_per_class, derive_seed(seed, "val"))
    counts = _subset_counts(cfg, data, data.train_labels[pool])
    chosen = pool[longtail_indices(data.train_labels[pool], counts, seed)]
    train = Split(data.train_images[chosen].to(device), data.train_labels[chosen].to(device))
    val = Split(data.train_images[held].to(device), data.train_labels[held].to(device))
    test = Split(data.test_images.to(device), data.test_labels.to(device))
    normalizer = Normalizer.from_images(train.images).to(device)
    net = _network(cfg, data, device)
    ctx = ObjectiveContext(
        num_classes=data.num_classes,
        feature_dim=net.head.feature_dim,
        class_counts=tuple(int(c) for c in counts),
        epochs=cfg.optim.epochs,
        e_w=cfg.head.e_w,
        e_h=cfg.head.e_h,
        options=dict(cfg.loss.options),
        milestones=tuple(cfg.optim.milestones),
        seed=derive_seed(cfg.run.seed, "objective"),
        head=net.head,
    )
    objective = build_objective(cfg.loss.name, ctx).to(device)
    stream = TrainStream(
        train.images,
        train.labels,
        batch_size=cfg.optim.batch_size,
        normalizer=normalizer,
        crop_padding=cfg.augment.crop_padding,
        flip=cfg.augment.flip,
        mixup_alpha=cfg.augment.mixup_alpha,
        seed=cfg.run.seed,
        rank=info.rank,
        world=info.world,
        channels_last=cfg.run.channels_last,
    )
    schedule = StepSchedule(
        stream.steps_per_epoch,
        cfg.optim.warmup_epochs,
        tuple(cfg.optim.milestones),
        cfg.optim.gamma,
    )
    return Session(
        cfg=cfg,
        info=info,
        device=device,
        amp=use_amp(cfg.run.amp, device),
        eval_batch_size=cfg.run.eval_batch_size or (4096 if device.type == "cuda" else 64),
        data=data,
        train=train,
        test=test,
        counts=counts,
        groups=class_groups(counts),
        minority=minority_group(counts).tolist(),
        normalizer=normalizer,
        net=net,
        objective=objective,
        step=_step_module(cfg, net, objective, info, device),
        optimizer=_optimizer(cfg, net, objective),
        schedule=schedule,
        stream=stream,
        val=val if len(held) else None,
    )


def _load(cfg: Config) -> ImageData:
    request = DataRequest(
        root=Path(cfg.data.root).expanduser() if cfg.data.root else None,
        download=cfg.data.download,
        verify=cfg.data.verify,
        image_size=cfg.data.image_size,
    )
    data = load_dataset(cfg.data.dataset, request)
    if data.num_classes < 2:
        raise DataError(f"{data.name} has {data.num_classes} class; classification needs >= 2")
    return data


def _subset_counts(cfg: Config, data: ImageData, labels: Tensor) -> np.ndarray:
    available = torch.bincount(labels, minlength=data.num_classes).numpy()
    empty = np.flatnonzero(available == 0)
    if len(empty):
        names = ", ".join(data.classes[k] for k in empty)
        raise DataError(f"{data.name}: classes without training images: {names}")
    return profile_counts(
        available,
        cfg.data.profile,
        cfg.data.imbalance,
        max_per_class=cfg.data.max_per_class,
        num_minority=cfg.data.num_minority,
    )


def _network(cfg: Config, data: ImageData, device: torch.device) -> Network:
    net = build_network(
        cfg.model.arch,
        cfg.head.name,
        in_channels=data.channels,
        num_classes=data.num_classes,
        width=cfg.model.width,
        head_cfg=cfg.head,
        seed=derive_seed(cfg.run.seed, "init"),
    )
    memory_format = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
    return net.to(device=device, memory_format=memory_format)


def _optimizer(cfg: Config, net: nn.Module, objective: Objective) -> torch.optim.Optimizer:
    """SGD over the network and any parameters the objective brings, with their own groups."""
    groups = [{"params": [p for p in net.parameters() if p.requires_grad]}]
    groups += objective.param_groups()
    for group in groups:
        group.setdefault("lr", cfg.optim.lr)
        group["initial_lr"] = group["lr"]
    return torch.optim.SGD(
        groups,
        lr=cfg.optim.lr,
        momentum=cfg.optim.momentum,
        weight_decay=cfg.optim.weight_decay,
        nesterov=cfg.optim.nesterov,
    )


def _step_module(
    cfg: Config, net: Network, objective: Objective, info: DistInfo, device: torch.device
) -> nn.Module:
    step = TrainStep(torch.compile(net) if cfg.run.compile else net, objective)
    if not info.active:
        return step
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(step, device_ids=device_ids)
