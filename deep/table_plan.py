"""The plan of a results table (`python -m deep.table`): its cells, one per (dataset,
imbalance, method, seed), and the deep.train command of each.

A cell's folder is ROOT/<dataset>-<imbalance>-<method>-s<seed>; methods are the presets of
`deep.methods`. `build_plan` turns a command line into a plan, refusing unknown names, bad
numbers and any cell whose configuration does not resolve before a single cell runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from deep.config import Config, auto_preset
from deep.methods import METHODS, ORDER
from deep.rundir import RunFolder
from ufm.io import check_output_dir

__all__ = ["Cell", "Plan", "build_plan"]


@dataclass(frozen=True)
class Cell:
    dataset: str
    imbalance: float  # rho = n_max / n_min [ratio]
    method: str  # a name of deep.methods.METHODS
    seed: int

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.imbalance:g}-{self.method}-s{self.seed}"

    @property
    def group(self) -> tuple[str, float, str]:
        return self.dataset, self.imbalance, self.method


@dataclass(frozen=True)
class Plan:
    """The cells of a table and what every cell's run shares."""

    datasets: tuple[str, ...]
    imbalances: tuple[float, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    root: Path
    preset: str
    data_root: str | None = None
    profile: str | None = None  # class-count profile of every run (exp, step); None = preset's
    sets: tuple[str, ...] = ()  # KEY=VALUE config overrides for every cell
    nproc: int = 1  # processes per run (torchrun) [processes]
    python: str = sys.executable

    def cells(self) -> list[Cell]:
        """Every cell, seed outermost: the order in which they run."""
        return [
            Cell(d, r, m, s)
            for s in self.seeds
            for d in self.datasets
            for r in self.imbalances
            for m in self.methods
        ]

    def folder(self, cell: Cell) -> RunFolder:
        return RunFolder(self.root / cell.name)

    def train_args(self, cell: Cell) -> list[str]:
        """The deep.train arguments that start `cell` afresh."""
        method = METHODS.get(cell.method)
        args = [
            "--preset", self.preset, "--dataset", cell.dataset,
            "--imbalance", f"{cell.imbalance:g}", "--head", method.head, "--loss", method.loss,
            "--seed", str(cell.seed), "--out", str(self.folder(cell).path), "--no-progress",
        ]  # fmt: skip
        if method.options:
            args += ["--set", f"loss.options={json.dumps(dict(method.options), sort_keys=True)}"]
        for key, value in method.settings.items():
            args += ["--set", f"{key}={json.dumps(value)}"]
        if self.profile:
            args += ["--profile", self.profile]
        if self.data_root:
            args += ["--data-root", self.data_root]
        for assignment in self.sets:
            args += ["--set", assignment]
        return args

    def command(self, cell: Cell) -> list[str]:
        """The command that runs `cell`: a fresh run, or --resume of the folder there is."""
        folder = self.folder(cell)
        args = (
            ["--resume", str(folder.path), "--no-progress"]
            if folder.config.is_file()
            else self.train_args(cell)
        )
        if self.nproc > 1:
            launch = [
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={self.nproc}",
            ]
            return [self.python, *launch, "-m", "deep.train", *args]
        return [self.python, "-m", "deep.train", *args]

    def expected_config(self, cell: Cell) -> Config:
        from deep.train import build_parser as train_parser
        from deep.train import resolve

        cfg, _ = resolve(train_parser().parse_args(self.train_args(cell)))
        return cfg


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_plan(args: argparse.Namespace) -> Plan:
    """The plan of a command line; unknown names and bad numbers raise ValueError."""
    from deep.datasets import DATASETS

    datasets = _split(args.datasets)
    for name in datasets:
        DATASETS.get(name)
    methods = ORDER if args.methods == "all" else _split(args.methods)
    for name in methods:
        METHODS.get(name)
    if not (datasets and methods):
        raise ValueError("need at least one dataset and one method")
    if args.nproc < 1 or (args.nproc > 1 and args.in_process):
        raise ValueError(f"--nproc must be >= 1 (and 1 with --in-process), got {args.nproc}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    sets = tuple(args.set) + ((f"run.threads={args.threads}",) if args.threads else ())
    plan = Plan(
        datasets=tuple(datasets),
        imbalances=_ratios(args.imbalance),
        methods=tuple(methods),
        seeds=_seeds(args.seeds),
        root=Path(args.root),
        preset=args.preset or _auto_preset(),
        data_root=args.data_root,
        profile=args.profile,
        sets=sets,
        nproc=args.nproc,
    )
    if not args.dry_run:
        check_output_dir(plan.root, "--root")
    for cell in plan.cells():  # every cell's config, once, before any cell runs
        try:
            plan.expected_config(cell)
        except ValueError as exc:
            raise ValueError(f"{cell.name}: {exc}") from None
    return plan


def _auto_preset() -> str:
    import torch

    return auto_preset(torch.cuda.is_available())[0]


def _ratios(text: str) -> tuple[float, ...]:
    try:
        ratios = tuple(float(r) for r in _split(text))
    except ValueError:
        raise ValueError(f"--imbalance must be comma-separated numbers, got {text!r}") from None
    if not ratios or not all(math.isfinite(r) and r >= 1 for r in ratios):
        raise ValueError(f"--imbalance ratios must be finite numbers >= 1, got {text!r}")
    return ratios


def _seeds(text: str) -> tuple[int, ...]:
    try:
        values = [int(s) for s in _split(text)]
    except ValueError:
        raise ValueError(f"--seeds must be a count or a list of integers, got {text!r}") from None
    if "," not in text and len(values) == 1:
        if values[0] == 0:
            raise ValueError(
                "--seeds 0 asks for no seeds (--seeds N runs seeds 0..N-1); for seed 0 alone "
                "pass --seeds 0, (with the comma)"
            )
        values = list(range(values[0]))
    if not values or min(values) < 0 or len(set(values)) != len(values):
        raise ValueError(f"--seeds must give distinct seeds >= 0, got {text!r}")
    return tuple(values)
