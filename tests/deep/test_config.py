"""The config tree: paper defaults, presets, YAML and override layers, checked values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from deep.config import (
    PRESETS,
    Config,
    ConfigError,
    auto_preset,
    config_from_dict,
    config_to_yaml,
    load_yaml_overrides,
    parse_assignment,
    resolve_config,
)


def test_defaults_are_the_paper_recipe() -> None:
    c = Config()
    assert (c.model.arch, c.optim.lr, c.optim.momentum, c.optim.weight_decay) == (
        "resnet32",
        0.1,
        0.9,
        2e-4,
    )
    assert (c.optim.batch_size, c.optim.epochs, c.optim.warmup_epochs) == (128, 200, 5.0)
    assert (c.optim.milestones, c.optim.gamma, c.augment.mixup_alpha) == ([160, 180], 0.1, 1.0)
    assert resolve_config("paper", []) == dataclasses.replace(c, preset="paper")


def test_cifar100_gets_doubled_width_in_every_preset() -> None:
    for name in PRESETS:
        assert resolve_config(name, [{"data.dataset": "cifar100"}]).model.width == 2
        assert resolve_config(name, [{"data.dataset": "cifar10"}]).model.width == 1


def test_auto_preset_says_why() -> None:
    assert auto_preset(True)[0] == "paper"
    name, note = auto_preset(False)
    assert name == "quick" and "no GPU" in note


def test_layers_override_in_order(tmp_path: Path) -> None:
    path = tmp_path / "my.yaml"
    path.write_text("optim:\n  lr: 0.05\n  epochs: 7\nrun:\n  seed: 3\n")
    layers = [load_yaml_overrides(path), {"optim.epochs": 9}, {"run.seed": 4}]
    c = resolve_config("quick", layers)
    assert (c.optim.lr, c.optim.epochs, c.run.seed, c.model.arch) == (0.05, 9, 4, "resnet20")


def test_yaml_round_trip() -> None:
    c = resolve_config("quick", [{"loss.options": {"lam": 0.5}, "data.max_per_class": 30}])
    assert config_from_dict(yaml.safe_load(config_to_yaml(c))) == c


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("optim.lr=0.05", "optim.lr", 0.05),
        ("optim.milestones=[3, 4]", "optim.milestones", [3, 4]),
        ("data.root=null", "data.root", None),
        ("run.compile=true", "run.compile", True),
        ("head.name=etf", "head.name", "etf"),
    ],
)
def test_assignments_are_read_as_yaml(text: str, key: str, value) -> None:
    assert parse_assignment(text) == (key, value)
    assert resolve_config("paper", [dict([parse_assignment(text)])]) is not None


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"optim.lrr": 1}, r"unknown config key optim.lrr; optim has: batch_size"),
        ({"nope.x": 1}, r"unknown config key nope"),
        ({"optim.epochs": "ten"}, r"optim.epochs must be int, got 'ten'"),
        ({"optim.epochs": 2.5}, r"optim.epochs must be int"),
        ({"run.compile": 1}, r"run.compile must be bool"),
        ({"optim.milestones": 5}, r"optim.milestones must be a list"),
        ({"data.imbalance": 0.5}, r"data.imbalance must be a finite ratio >= 1"),
        ({"data.imbalance": float("nan")}, r"data.imbalance must be a finite ratio >= 1"),
        ({"optim.epochs": 0}, r"optim.epochs must be >= 1"),
        ({"run.amp": "fp8"}, r"run.amp must be one of auto, bf16, off"),
    ],
)
def test_bad_values_name_the_key(layer: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_config("paper", [layer])


def test_bad_assignment_and_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignment("optim.lr")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_yaml_overrides(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_yaml_overrides(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        resolve_config("fast", [])
