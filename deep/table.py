"""The results table: every (dataset, imbalance, method, seed) cell is a run folder of its own.

    python -m deep.table                                  # every method on Fashion-MNIST-LT
    python -m deep.table --datasets cifar10,cifar100 --imbalance 100,50,10 \\
        --methods ce,etf-dr,ldam-drw,allnc --seeds 3
    python -m deep.table ... --dry-run                    # one deep.train command per cell
    python -m deep.table ... --collect-only               # the table from the folders there are

Cells run one after another, the seed outermost (a partial table holds every method's first
seeds), each as `python -m deep.train` in a process of its own (or in this one, --in-process).
A finished cell is left alone and an interrupted one continued with --resume, so running the
same command again resumes the table. A cell's folder is ROOT/<dataset>-<imbalance>-<method>-
s<seed>; methods are the presets of `deep.methods`. A folder that holds a run of another
configuration (another preset, say) is neither resumed nor counted: the table says so.

From whatever folders exist, ROOT gets results.md and results.csv (per dataset, imbalance and
method: the mean and sample standard deviation over the n finished seeds of the last epoch's
overall, head, medium and tail accuracy, NC1 and minority cosines) and runs.csv (one row per
cell); cells without a finished run are listed as missing.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deep.config import PRESETS, Config, auto_preset, config_from_dict, flatten
from deep.longtail import PROFILES
from deep.methods import METHODS, ORDER
from deep.rundir import RunFolder
from ufm.io import atomic_write_text, check_output_dir

__all__ = [
    "METRICS",
    "Cell",
    "Plan",
    "Record",
    "aggregate",
    "build_parser",
    "inspect_cell",
    "main",
    "results_csv",
    "results_markdown",
]

# Config keys that say where and how a run executes, not what it computes.
_PLACE_KEYS = {
    "run.out",
    "run.progress",
    "run.device",
    "run.threads",
    "run.compile",
    "run.eval_batch_size",
    "run.channels_last",
    "run.save_every",
    "data.root",
    "data.download",
    "data.verify",
}


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


@dataclass
class Record:
    """What the folder of a cell holds."""

    cell: Cell
    status: str  # finished, incomplete, missing or conflict
    summary: dict[str, Any] | None = None
    note: str = ""


def inspect_cell(plan: Plan, cell: Cell) -> Record:
    """The state of `cell`'s folder, checked against the configuration the cell asks for."""
    folder = plan.folder(cell)
    if not folder.config.is_file():
        if folder.path.is_dir() and any(folder.path.iterdir()):
            return Record(cell, "conflict", note="not a run folder (no config.yaml)")
        return Record(cell, "missing", note="not started")
    difference = _config_difference(plan.expected_config(cell), folder.config)
    if difference:
        return Record(cell, "conflict", note=difference)
    summary = _read_json(folder.summary)
    if summary is None:
        return Record(cell, "incomplete", note="no epoch finished")
    if summary.get("status") != "finished":
        note = f"{summary.get('epochs_done')} of {summary.get('epochs')} epochs"
        return Record(cell, "incomplete", summary, note)
    return Record(cell, "finished", summary)


def _config_difference(expected: Config, path: Path) -> str | None:
    """The first setting (outside _PLACE_KEYS) where the stored config differs, or None."""
    try:
        stored = flatten(dataclasses.asdict(config_from_dict(yaml.safe_load(path.read_text()))))
    except (OSError, yaml.YAMLError, ValueError) as exc:
        return f"unreadable config.yaml ({exc})"
    wanted = flatten(dataclasses.asdict(expected))
    for key in sorted(set(wanted) | set(stored)):
        if key not in _PLACE_KEYS and wanted.get(key) != stored.get(key):
            have, want = stored.get(key), wanted.get(key)
            return f"holds another configuration ({key}: {have!r}, wanted {want!r})"
    return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# Table columns: name -> (heading, value read from summary.json, kind of number).
METRICS: dict[str, tuple[str, Callable[[dict], Any], str]] = {
    "overall": ("overall", lambda s: s.get("last_test_acc"), "acc"),
    "head": ("head", lambda s: s.get("group_acc", {}).get("head"), "acc"),
    "medium": ("medium", lambda s: s.get("group_acc", {}).get("medium"), "acc"),
    "tail": ("tail", lambda s: s.get("group_acc", {}).get("tail"), "acc"),
    "nc1": ("NC1", lambda s: s.get("nc", {}).get("nc1"), "nc1"),
    "minority_cos_w": ("min. cos W", lambda s: s.get("nc", {}).get("minority_cosine_w"), "cos"),
    "minority_cos_h": ("min. cos H", lambda s: s.get("nc", {}).get("minority_cosine_h"), "cos"),
    # The papers' splits by absolute count: > 100, 20-100, < 20 training images.
    "many_shot": ("many", lambda s: s.get("group_acc", {}).get("many_shot"), "acc"),
    "medium_shot": ("med.-shot", lambda s: s.get("group_acc", {}).get("medium_shot"), "acc"),
    "few_shot": ("few", lambda s: s.get("group_acc", {}).get("few_shot"), "acc"),
}


def _value(summary: dict, metric: str) -> float:
    value = METRICS[metric][1](summary)
    return float(value) if isinstance(value, int | float) else math.nan


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (n - 1; NaN below 2 values) and n of the finite values."""
    finite = [v for v in values if math.isfinite(v)]
    n = len(finite)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(finite) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else math.nan
    return mean, std, n


def aggregate(plan: Plan, records: Sequence[Record]) -> list[dict[str, Any]]:
    """One row per (dataset, imbalance, method), in the plan's order, over finished runs."""
    rows = []
    for dataset in plan.datasets:
        for rho in plan.imbalances:
            for method in plan.methods:
                group = [r for r in records if r.cell.group == (dataset, rho, method)]
                rows.append(_row(dataset, rho, method, group))
    return rows


def _row(dataset: str, rho: float, method: str, group: Sequence[Record]) -> dict[str, Any]:
    done = [r for r in group if r.status == "finished"]
    spec = METHODS.get(method)
    row: dict[str, Any] = {
        "dataset": dataset,
        "imbalance": rho,
        "method": method,
        "head": spec.head,
        "loss": spec.loss,
        "options": json.dumps(dict(spec.options), sort_keys=True),
        "n": len(done),
        "n_expected": len(group),
        "seeds": " ".join(str(r.cell.seed) for r in done),
    }
    for metric in METRICS:
        mean, std, _ = mean_std([_value(r.summary or {}, metric) for r in done])
        row[f"{metric}_mean"], row[f"{metric}_std"] = mean, std
    return row


def _cell_text(row: dict[str, Any], metric: str) -> str:
    mean, std, kind = row[f"{metric}_mean"], row[f"{metric}_std"], METRICS[metric][2]
    if not math.isfinite(mean):
        return "–"
    if kind == "acc":
        text, spread = f"{100 * mean:.1f}", f"{100 * std:.1f}"
    elif kind == "nc1":
        text, spread = f"{mean:.3g}", f"{std:.2g}"
    else:
        text, spread = f"{mean:+.3f}", f"{std:.3f}"
    return f"{text} ± {spread}" if math.isfinite(std) else text


def results_markdown(
    plan: Plan, rows: Sequence[dict[str, Any]], records: Sequence[Record], command: str
) -> str:
    """results.md: one table per dataset and imbalance, the missing cells, the methods."""
    seeds = ", ".join(map(str, plan.seeds))
    lines = [
        "# Long-tailed classification: results",
        "",
        f"Preset `{plan.preset}`, seeds {seeds}. Each entry is the mean ± sample standard "
        "deviation (n - 1) over the n finished seeds, at the last epoch. Accuracies (%) are "
        "top-1 on the balanced test set; head / medium / tail average the classes of each third "
        "by training count. NC1 = tr(Σ_W Σ_B⁺)/K of the training features; min. cos: mean "
        "pairwise cosine of the minority classes' classifier vectors (W) and centred class "
        "means (H), -1/(K-1) for a simplex ETF.",
        "",
        f"    {command}",
    ]
    headings = [METRICS[m][0] for m in METRICS]
    for dataset in plan.datasets:
        for rho in plan.imbalances:
            lines += ["", f"## {dataset}, imbalance {rho:g}", ""]
            lines += [_md_row(["method", "n", *headings]), _md_row(["---"] * (2 + len(headings)))]
            for row in rows:
                if (row["dataset"], row["imbalance"]) == (dataset, rho):
                    n = f"{row['n']}/{row['n_expected']}"
                    lines.append(
                        _md_row([row["method"], n, *(_cell_text(row, m) for m in METRICS)])
                    )
    lines += ["", *_missing_section(plan, records), "", *_methods_section(plan)]
    return "\n".join(lines) + "\n"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _missing_section(plan: Plan, records: Sequence[Record]) -> list[str]:
    missing = [r for r in records if r.status != "finished"]
    if not missing:
        return ["## Missing runs", "", f"None: all {len(records)} runs finished."]
    lines = ["## Missing runs", "", f"{len(missing)} of {len(records)} runs have not finished:", ""]
    for r in missing:
        lines.append(f"- `{r.cell.name}`: {r.status}, {r.note}")
    return lines


def _methods_section(plan: Plan) -> list[str]:
    lines = ["## Methods", "", _md_row(["method", "head", "loss", "options", "reference"])]
    lines.append(_md_row(["---"] * 5))
    for name in plan.methods:
        m = METHODS.get(name)
        options = ", ".join(f"{k}={v:g}" for k, v in m.options.items()) or "defaults"
        lines.append(_md_row([name, m.head, m.loss, options, m.reference]))
    return lines


def results_csv(rows: Sequence[dict[str, Any]]) -> str:
    """results.csv: the rows of `aggregate`, NaN written as an empty field."""
    return _csv(rows)


def runs_csv(records: Sequence[Record]) -> str:
    """runs.csv: every cell, its status and, when it has one, its last epoch's numbers."""
    rows = []
    for r in records:
        summary = r.summary or {}
        row = {**dataclasses.asdict(r.cell), "status": r.status, "note": r.note}
        row["epochs_done"], row["epochs"] = summary.get("epochs_done"), summary.get("epochs")
        row |= {m: _value(summary, m) for m in METRICS}
        row["seconds"] = summary.get("seconds")
        row["code_version"] = summary.get("environment", {}).get("code_version")
        rows.append(row)
    return _csv(rows)


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return out.getvalue()


def _csv_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return value


def write_results(plan: Plan, records: Sequence[Record], command: str) -> str:
    """Write results.md, results.csv and runs.csv under the plan's root; returns results.md."""
    rows = aggregate(plan, records)
    text = results_markdown(plan, rows, records, command)
    plan.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan.root / "results.md", text)
    atomic_write_text(plan.root / "results.csv", results_csv(rows))
    atomic_write_text(plan.root / "runs.csv", runs_csv(records))
    return text


def run_cells(plan: Plan, in_process: bool = False) -> tuple[list[Cell], bool]:
    """Run every cell that has not finished; returns the cells that failed and whether the
    table was interrupted."""
    failed: list[Cell] = []
    for cell in plan.cells():
        record = inspect_cell(plan, cell)
        if record.status == "conflict":
            print(f"deep.table: {cell.name}: skipped, the folder {record.note}", file=sys.stderr)
        if record.status in ("finished", "conflict"):
            continue
        command = plan.command(cell)
        print(f"deep.table: {cell.name}: {shlex.join(command)}", flush=True)
        status = _execute(command, in_process)
        if status == 130:
            return failed, True
        if status != 0:
            failed.append(cell)
    return failed, False


def _execute(command: list[str], in_process: bool) -> int:
    if in_process:
        from deep.train import main as train_main

        return train_main(command[command.index("deep.train") + 1 :])
    try:
        return subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m deep.table",
        description="Run (or resume) every dataset x imbalance x method x seed cell as its own "
        "deep.train run folder and tabulate mean ± std over seeds.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--datasets", default="fashion-mnist", help="comma-separated dataset names")
    p.add_argument("--imbalance", default="100", help="comma-separated ratios n_max / n_min")
    p.add_argument("--methods", default="all", help=f"comma-separated, or all: {', '.join(ORDER)}")
    p.add_argument("--seeds", default="3", help="N for seeds 0..N-1, or a list such as 0,3,7")
    p.add_argument(
        "--preset", choices=sorted(PRESETS), help="default: paper with a GPU, else quick"
    )
    p.add_argument("--root", default="runs/deep/table", help="folder of the cells and results")
    p.add_argument("--data-root", help="folder with the datasets' files (passed to every run)")
    p.add_argument(
        "--profile", choices=PROFILES, help="class-count profile of every run (default: preset's)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every run",
    )
    p.add_argument("--nproc", type=int, default=1, help="processes per run, under torchrun")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads of every run (default: deep.train's, half the CPUs)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print one command per cell, run none")
    mode.add_argument("--collect-only", action="store_true", help="tabulate, run nothing")
    p.add_argument("--in-process", action="store_true", help="run cells in this process")
    return p


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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        plan = build_plan(args)
    except ValueError as exc:
        print(f"deep.table: error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        for cell in plan.cells():
            print(_dry_run_line(plan, cell))
        return 0
    failed, interrupted = ([], False) if args.collect_only else run_cells(plan, args.in_process)
    records = [inspect_cell(plan, cell) for cell in plan.cells()]
    print(write_results(plan, records, shlex.join(["python", "-m", "deep.table", *argv])), end="")
    print(f"deep.table: wrote {plan.root / 'results.md'}, results.csv, runs.csv")
    for cell in failed:
        print(f"deep.table: {cell.name} failed; see its output above", file=sys.stderr)
    if records and all(r.status == "conflict" for r in records):
        print(
            f"deep.table: error: every cell's folder under {plan.root} holds another "
            f"configuration; nothing was run or counted (another --root, or move them away)",
            file=sys.stderr,
        )
        return 1
    return 130 if interrupted else int(bool(failed))


def _dry_run_line(plan: Plan, cell: Cell) -> str:
    record = inspect_cell(plan, cell)
    if record.status == "conflict":
        return f"# {cell.name}: {record.note}; move {plan.folder(cell).path} away to run it"
    return shlex.join(plan.command(cell))


if __name__ == "__main__":
    sys.exit(main())
