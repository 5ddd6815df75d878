"""The configuration of a training run: one dataclass tree, presets, YAML and overrides.

Values are resolved in layers, each overriding the one before:

    dataclass defaults < preset < --config YAML < command-line flags < --set a.b=c

`paper` is the recipe of Yang et al. (NeurIPS 2022) for CIFAR: ResNet-32, SGD 0.1 / 0.9 / 2e-4,
batch 128, 200 epochs, 5 warm-up epochs, x0.1 at epochs 160 and 180, mixup 1.0, and doubled
width on CIFAR-100; it is the dataclass defaults. `quick` is a short CPU recipe for the
embedded default (Fashion-MNIST-LT), used when no preset is named and no GPU is present.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "PRESETS",
    "AugmentConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "HeadConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "Preset",
    "RunConfig",
    "auto_preset",
    "config_from_dict",
    "config_to_yaml",
    "flatten",
    "load_yaml_overrides",
    "parse_assignment",
    "resolve_config",
]


class ConfigError(ValueError):
    """A configuration value or key that cannot be used."""


@dataclass
class DataConfig:
    dataset: str = "fashion-mnist"  # registered dataset: cifar10, cifar100, fashion-mnist, folder
    root: str | None = None  # folder with the files; None = the dataset's usual places
    download: bool = True  # fetch missing published files when a network is there
    verify: bool = True  # compare files with the published MD5 sums (off for re-packed data)
    profile: str = "exp"  # class counts of the training subset: exp, step or none (all images)
    imbalance: float = 100.0  # rho = n_max / n_min of the training subset [ratio, >= 1]
    max_per_class: int | None = None  # n_max [images]; None = the smallest class in the data
    num_minority: int | None = None  # step profile: minority classes K_B; None = K // 2
    subset_seed: int = 0  # seed of which images form the subset; kept apart from run.seed so
    #                       that runs with different seeds train on the same images
    image_size: int | None = None  # folder datasets: resize to N x N [pixels]; None = as found
    val_per_class: int = 0  # a balanced validation set of this many training images per class,
    #                         held out before the subset is drawn; 0 = none (best_test_acc is
    #                         then chosen on the test set, as the papers' code does)


@dataclass
class AugmentConfig:
    crop_padding: int = 4  # zero padding before the random crop back to full size [pixels]
    flip: bool = True  # random horizontal flip with probability 1/2
    mixup_alpha: float = 1.0  # mixup weight ~ Beta(alpha, alpha) per batch; 0 = no mixup


@dataclass
class ModelConfig:
    arch: str = "resnet32"  # registered backbone: resnet8, 14, 20, 32, 44, 56, 110
    width: int = 1  # channel multiplier of 16/32/64; feature dimension d = 64 * width


@dataclass
class HeadConfig:
    name: str = "etf"  # registered head: etf (fixed simplex ETF) or linear (learnable, bias)
    etf_seed: int = 0  # seed of the ETF's Haar frame (ufm.etf.simplex_etf)
    e_w: float = 1.0  # E_W: squared norm of each fixed classifier vector
    e_h: float = 1.0  # E_H: squared norm of each feature of the ETF head


@dataclass
class LossConfig:
    name: str = "dr"  # registered objective: ce, dr, dr-balanced
    options: dict[str, float] = field(default_factory=dict)  # hyper-parameters of the method


@dataclass
class OptimConfig:
    lr: float = 0.1  # peak learning rate of SGD for the global batch
    momentum: float = 0.9
    weight_decay: float = 2e-4  # L2 on every parameter, BatchNorm included (as in the paper)
    nesterov: bool = False
    batch_size: int = 128  # global batch [images], split evenly over DDP processes
    epochs: int = 200  # [epochs]
    warmup_epochs: float = 5.0  # linear warm-up of the learning rate, per step [epochs]
    milestones: list[int] = field(default_factory=lambda: [160, 180])  # decay epochs
    gamma: float = 0.1  # learning-rate factor at each milestone


@dataclass
class RunConfig:
    seed: int = 0  # seed of initialisation, batch order and augmentation
    out: str | None = None  # run folder; None = runs/deep/<dataset>-<profile>-<head>-<loss>-...
    nc_every: int = 10  # NC metrics every this many epochs, and after the last [epochs]
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:1, ...
    threads: int | None = None  # torch CPU threads per process; None = half the CPUs this
    #                             process may use, shared by torchrun's local processes
    amp: str = "auto"  # bf16 autocast: auto (CUDA, or a CPU with AMX), bf16, off
    channels_last: bool = True  # NHWC memory order for the convolutions
    compile: bool = False  # torch.compile the network (the first steps pay the compile time)
    eval_batch_size: int | None = None  # [images] per evaluation pass; None = 64 on a CPU
    #                                     (activations stay in cache), 4096 on a GPU
    progress: bool = True  # a progress bar on an interactive terminal
    save_every: int = 0  # also keep checkpoints/epoch_NNNN.pt every this many epochs; 0 = no
    test_every: int = 1  # test-set accuracy every this many epochs, at NC epochs and the last


@dataclass
class Config:
    preset: str = "paper"  # the preset these values started from (recorded, not re-applied)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)


@dataclass(frozen=True)
class Preset:
    """Overrides (dotted keys) of the defaults, and extra ones for particular datasets."""

    description: str
    values: dict[str, Any]
    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)

    def overrides(self, dataset: str) -> dict[str, Any]:
        return {**self.values, **self.per_dataset.get(dataset, {})}


# A feature dimension of 64 cannot hold the 100-class ETF (it needs d >= K - 1 = 99).
_CIFAR100_WIDTH = {"cifar100": {"model.width": 2}}

PRESETS: dict[str, Preset] = {
    "paper": Preset("Yang et al. 2022: ResNet-32, 200 epochs, mixup", {}, _CIFAR100_WIDTH),
    "quick": Preset(
        "a CPU run of minutes: ResNet-20, 20 epochs, no mixup",
        {
            "model.arch": "resnet20",
            "optim.epochs": 20,
            "optim.warmup_epochs": 1.0,
            "optim.milestones": [15, 18],
            "augment.mixup_alpha": 0.0,  # mixup pays off over hundreds of epochs, not twenty
            "augment.crop_padding": 2,
            "run.nc_every": 5,
        },
        _CIFAR100_WIDTH,
    ),
    # The terminal phase (Papyan et al. 2020): zero training error reached early and trained
    # past, on a step long tail small enough for a CPU (K_B = K/2 minority classes of
    # n_A / R images, n_A = 100). No augmentation, so that the training set the network fits is
    # the one its features are measured on; weight decay 5e-4 as in the NC literature.
    "collapse": Preset(
        "terminal phase on a small step long tail: ResNet-8, n_A = 100, 80 epochs of SGD 0.1, "
        "no augmentation, weight decay 5e-4, test accuracy every 40 epochs",
        {
            "data.profile": "step",
            "data.max_per_class": 100,
            "model.arch": "resnet8",
            "optim.epochs": 80,
            "optim.batch_size": 64,
            "optim.lr": 0.1,
            "optim.weight_decay": 5e-4,
            "optim.warmup_epochs": 2.0,
            "optim.milestones": [50, 70],
            "augment.mixup_alpha": 0.0,
            "augment.crop_padding": 0,
            "augment.flip": False,
            "run.nc_every": 10,
            "run.test_every": 40,
        },
        _CIFAR100_WIDTH,
    ),
}


def auto_preset(cuda_available: bool) -> tuple[str, str]:
    """The preset used when none is named, and the sentence that says why."""
    if cuda_available:
        return "paper", "using the paper preset (a GPU is present)"
    return "quick", (
        "using the quick preset because no GPU is present "
        "(pass --preset paper for the paper's 200-epoch recipe)"
    )


def resolve_config(preset: str, layers: list[dict[str, Any]]) -> Config:
    """Defaults, then the preset (with its per-dataset values), then each layer of dotted keys."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    merged.pop("preset", None)  # chosen by the caller, and recorded below
    dataset = merged.get("data.dataset", DataConfig.dataset)
    values = flatten(dataclasses.asdict(Config()))
    values.update(PRESETS[preset].overrides(dataset))
    values["preset"] = preset
    values.update(merged)
    return config_from_dict(unflatten(values))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; dict-valued fields (loss.options) stay whole."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in _DICT_FIELDS:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {'.'.join(parents)} is a value, not a section")
        node[leaf] = value
    return tree


_DICT_FIELDS = {"loss.options"}


def config_from_dict(tree: dict[str, Any]) -> Config:
    """Build and check a Config from a nested dict; unknown keys and bad types are errors."""
    cfg = _build(Config, tree, "")
    _check(cfg)
    return cfg


def _build(cls: type, tree: Any, prefix: str) -> Any:
    if not isinstance(tree, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {tree!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(tree) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]}; {prefix.rstrip('.') or 'the config'} "
            f"has: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in tree.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """`value` as type `tp` (bool, int, float, str, X | None, list[X], dict[str, X])."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    return _coerce_scalar(value, tp, key)


def _coerce_scalar(value: Any, tp: type, key: str) -> Any:
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int | float) and not isinstance(value, bool):
        if float(value).is_integer():
            return int(value)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        # YAML 1.1 reads 1e-3, 5E-4 (no dot) as strings; a researcher means the number.
        number = float(value.strip().replace("_", ""))
        if tp is float:
            return number
        if number.is_integer():
            return int(number)
    if tp is str and isinstance(value, str):
        return value
    raise ConfigError(f"{key} must be {tp.__name__}, got {value!r}")


_NUMBER = re.compile(r"[-+]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)([eE][-+]?\d+)?")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _unset_or_positive(value: int | None) -> bool:
    return value is None or value >= 1


def _finite(value: float, low: float, high: float = math.inf) -> bool:
    return math.isfinite(value) and low <= value <= high


def _check(cfg: Config) -> None:
    """Reject values that no run can use, before anything is loaded or written."""
    checks = [
        (
            math.isfinite(cfg.data.imbalance) and cfg.data.imbalance >= 1,
            "data.imbalance",
            "a finite ratio >= 1 (1 = balanced)",
        ),
        (cfg.optim.epochs >= 1, "optim.epochs", ">= 1"),
        (cfg.optim.batch_size >= 2, "optim.batch_size", ">= 2"),
        (cfg.optim.lr > 0 and math.isfinite(cfg.optim.lr), "optim.lr", "a finite number > 0"),
        (_finite(cfg.optim.warmup_epochs, 0), "optim.warmup_epochs", "a finite number >= 0"),
        (
            _finite(cfg.optim.momentum, 0, 1) and cfg.optim.momentum < 1,
            "optim.momentum",
            "in [0, 1)",
        ),
        (_finite(cfg.optim.weight_decay, 0), "optim.weight_decay", "a finite number >= 0"),
        (_finite(cfg.optim.gamma, 0) and cfg.optim.gamma > 0, "optim.gamma", "a finite number > 0"),
        (all(m >= 1 for m in cfg.optim.milestones), "optim.milestones", "epochs >= 1"),
        (_finite(cfg.head.e_w, 0) and cfg.head.e_w > 0, "head.e_w", "a finite number > 0"),
        (_finite(cfg.head.e_h, 0) and cfg.head.e_h > 0, "head.e_h", "a finite number > 0"),
        (
            all(math.isfinite(v) for v in cfg.loss.options.values()),
            "loss.options",
            "finite numbers",
        ),
        (_unset_or_positive(cfg.data.max_per_class), "data.max_per_class", ">= 1 or null"),
        (_unset_or_positive(cfg.data.num_minority), "data.num_minority", ">= 1 or null"),
        (_unset_or_positive(cfg.data.image_size), "data.image_size", ">= 1 or null"),
        (cfg.data.val_per_class >= 0, "data.val_per_class", ">= 0"),
        (
            _DEVICE.fullmatch(cfg.run.device) is not None,
            "run.device",
            "auto, cpu, cuda or cuda:N",
        ),
        (cfg.model.width >= 1, "model.width", ">= 1"),
        (cfg.run.nc_every >= 1, "run.nc_every", ">= 1"),
        (_unset_or_positive(cfg.run.eval_batch_size), "run.eval_batch_size", ">= 1 or null"),
        (cfg.run.save_every >= 0, "run.save_every", ">= 0"),
        (_unset_or_positive(cfg.run.threads), "run.threads", ">= 1 or null (automatic)"),
        (cfg.run.test_every >= 1, "run.test_every", ">= 1"),
        (cfg.run.amp in ("auto", "bf16", "off"), "run.amp", "one of auto, bf16, off"),
        (cfg.augment.crop_padding >= 0, "augment.crop_padding", ">= 0"),
        (_finite(cfg.augment.mixup_alpha, 0), "augment.mixup_alpha", "a finite number >= 0"),
    ]
    for ok, key, want in checks:
        if not ok:
            value = eval_key(cfg, key)
            raise ConfigError(f"{key} must be {want}, got {value!r}")


def eval_key(cfg: Config, key: str) -> Any:
    """The value at dotted `key` of `cfg`."""
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def parse_assignment(text: str) -> tuple[str, Any]:
    """'optim.lr=0.05' -> ('optim.lr', 0.05); the value is read as YAML (numbers, lists, null)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE such as optim.lr=0.05, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML: {exc}") from None
    return key.strip(), value


def load_yaml_overrides(path: str | Path) -> dict[str, Any]:
    """The dotted overrides of a YAML config file (complete or partial)."""
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {tree!r}")
    return flatten(tree)


def config_to_yaml(cfg: Config) -> str:
    """The complete config as YAML, loadable with --config."""
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False, default_flow_style=False)
