"""The five parts of the GPU check (`benchmarks.gpu`), what each measures and how large.

`Scale` sets the sizes (`FULL` on one CUDA GPU, `TINY` on the CPU); each part returns the dict
that becomes its entry in results.json: `tests_part`, `throughput_part` (on the session of
`throughput_session`), `runs_part` over `paper_runs` or `sweep_runs`, and `lpm_part`. The tests,
training runs and LPM solves are subprocesses run by `benchmarks._gpu_runner`.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shlex
import shutil
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks._gpu_runner import run_until, start, wait
from benchmarks.train_throughput import images_per_second, pipeline_batches
from deep.config import PRESETS, parse_assignment, resolve_config
from deep.distributed import DistInfo
from deep.session import Session, TrainStep, build_session
from deep.table_plan import Plan
from deep.train import build_parser as train_parser
from deep.train import resolve

__all__ = [
    "FULL",
    "PAPER_METHODS",
    "PARTS",
    "TINY",
    "Scale",
    "TrainingRun",
    "check_run",
    "lpm_part",
    "one_line",
    "paper_runs",
    "runs_part",
    "sweep_runs",
    "tests_part",
    "throughput_part",
    "throughput_session",
]

PARTS = ("tests", "throughput", "paper", "sweep", "lpm")
PAPER_METHODS = ("ce", "etf-dr", "etf-dr-balanced")


@dataclass(frozen=True)
class Scale:
    """How large each part is: the GPU check itself, or its toy version for a CPU."""

    budget: float  # total wall time of the command [s]
    imbalance: float  # rho of the training subset [ratio]
    sets: tuple[str, ...]  # deep.train config overrides of every training run (KEY=VALUE)
    steps: int  # timed SGD steps per throughput measurement [steps]
    rounds: int  # interleaved rounds of (pipeline, raw step); the median is reported
    compile_backend: str  # torch.compile backend of the compiled throughput variants
    tests_limit: float  # the most the GPU tests may take [s]
    throughput_limit: float  # no throughput variant starts after this long [s]
    min_run: float  # a training run needs at least this much time left to start [s]
    lpm_classes: tuple[int, ...] = (100, 300, 1000)  # K of the LPM solves [classes]
    lpm_limit: float = 60.0  # the most the LPM part may take, and each of its solves [s]


FULL = Scale(
    budget=480.0,
    imbalance=100.0,
    sets=(),
    steps=50,
    rounds=3,
    compile_backend="inductor",
    tests_limit=90.0,
    throughput_limit=75.0,
    min_run=30.0,
)
# Toy size: ResNet-8, two epochs on at most 64 images per class, dynamo without code generation.
TINY = Scale(
    budget=600.0,
    imbalance=10.0,
    sets=(
        "model.arch=resnet8",
        "optim.epochs=2",
        "optim.batch_size=16",
        "optim.warmup_epochs=1",
        "optim.milestones=[1]",
        "data.max_per_class=64",
        "run.nc_every=1",
        "run.eval_batch_size=256",
    ),
    steps=2,
    rounds=1,
    compile_backend="eager",
    tests_limit=300.0,
    throughput_limit=300.0,
    min_run=0.0,
    lpm_classes=(10, 30),
    lpm_limit=120.0,
)

# Throughput variants in the order they run: eager first, the speculative CUDA graphs last.
VARIANTS = (
    ("fp32", None),
    ("bf16", None),
    ("bf16", "default"),
    ("fp32", "default"),
    ("bf16", "reduce-overhead"),  # torch.compile with CUDA graphs
)


def one_line(exc: BaseException) -> str:
    """An exception as a part's status: its type and the first line of its message."""
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


# ----------------------------------------------------------------------------- part 1


def tests_part(args: argparse.Namespace, scale: Scale, out: Path, deadline: float) -> dict:
    """`pytest -m gpu` in a subprocess, counted from its JUnit XML."""
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    command += [f"--junitxml={out / 'tests.xml'}", *shlex.split(args.tests)]
    limit = min(deadline, time.monotonic() + scale.tests_limit)
    outcome = run_until(command, limit, out / "tests.log", grace=5.0)
    counts = _junit_counts(out / "tests.xml")
    failed = counts["failed"] + counts["errors"]
    if outcome["status"] == "stopped":
        status = "stopped at the time limit"
    elif outcome["returncode"] in (0, 5) and not failed:  # 5: nothing selected
        status = "passed" if counts["passed"] else "all skipped" if counts["skipped"] else "none"
    else:
        status = "failed"
    shown = shlex.join(["pytest", *command[3:5], *shlex.split(args.tests)])
    return {**outcome, "status": status, "command": shown, **counts}


def _junit_counts(path: Path) -> dict[str, int]:
    counts = dict.fromkeys(("passed", "failed", "errors", "skipped"), 0)
    if not path.is_file():
        return counts
    for suite in ET.parse(path).getroot().iter("testsuite"):
        n = int(suite.get("tests", 0))
        for key, attr in (("failed", "failures"), ("errors", "errors"), ("skipped", "skipped")):
            counts[key] += int(suite.get(attr, 0))
        counts["passed"] += n - sum(int(suite.get(a, 0)) for a in ("failures", "errors", "skipped"))
    return counts


# ----------------------------------------------------------------------------- part 2


def throughput_session(args: argparse.Namespace, scale: Scale, device: torch.device) -> Session:
    """The paper preset's session on the check's data, ETF + DR; fp32 until a variant says."""
    layers = [
        {
            "data.dataset": args.dataset,
            "data.root": str(args.data_root),
            "data.imbalance": args.imbalance or scale.imbalance,
            "run.amp": "off",
            "run.progress": False,
        },
        dict(parse_assignment(a) for a in (*scale.sets, *args.set)),
    ]
    return build_session(resolve_config("paper", layers), DistInfo(), device)


def throughput_part(s: Session, scale: Scale, deadline: float) -> dict:
    """Pipeline against raw step for each variant that starts before the part's time limit."""
    limit = min(deadline, time.monotonic() + scale.throughput_limit)
    rows = []
    for precision, mode in VARIANTS:
        if mode == "reduce-overhead" and s.device.type != "cuda":
            continue  # CUDA graphs exist on CUDA only
        if time.monotonic() >= limit:
            rows.append({"precision": precision, "compile": mode or "no", "error": "time limit"})
            continue
        try:
            rows.append(_variant(s, scale, precision, mode))
        except Exception as exc:  # one variant's failure (a compiler error) costs only its row
            rows.append({"precision": precision, "compile": mode or "no", "error": one_line(exc)})
        finally:
            torch.compiler.reset()  # each compiled variant starts from nothing
    ok = [r for r in rows if "error" not in r]
    status = "measured" if len(ok) == len(rows) else f"measured {len(ok)} of {len(rows)}"
    setting = (
        f"{s.cfg.model.arch} on {s.data.name}-LT (rho = {s.cfg.data.imbalance:g}, "
        f"{len(s.train.labels)} images), {s.cfg.head.name} + {s.cfg.loss.name}, batch "
        f"{s.cfg.optim.batch_size}, mixup {s.cfg.augment.mixup_alpha:g}, channels_last "
        f"{s.cfg.run.channels_last}; median of {scale.rounds} interleaved rounds of "
        f"{scale.steps} steps; target pipeline / raw >= 0.9"
    )
    return {"status": status, "setting": setting, "rows": rows}


def _variant(s: Session, scale: Scale, precision: str, mode: str | None) -> dict:
    net: Any = s.net
    if mode is not None:
        net = torch.compile(s.net, backend=scale.compile_backend, mode=_mode(mode, scale))
    v = dataclasses.replace(s, amp=precision == "bf16", step=TrainStep(net, s.objective))
    resident = next(v.stream.epoch())
    pipelines = {"pipeline": pipeline_batches(v), "raw": itertools.repeat(resident)}
    start = time.perf_counter()
    for batches in pipelines.values():  # compiles, picks the cuDNN kernels, fills caches
        images_per_second(v, batches, 3)
    warmup = time.perf_counter() - start
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(scale.rounds):
        for name, batches in pipelines.items():
            rates[name].append(images_per_second(v, batches, scale.steps))
    pipeline, raw = (statistics.median(rates[n]) for n in ("pipeline", "raw"))
    return {
        "precision": precision,
        "compile": mode or "no",
        "pipeline": pipeline,
        "raw": raw,
        "ratio": pipeline / raw,
        "warmup_s": warmup,
        "rates": rates,
    }


def _mode(mode: str, scale: Scale) -> str | None:
    # The eager backend of --tiny takes no mode; inductor's "default" is its None.
    return None if mode == "default" or scale.compile_backend == "eager" else mode


# ----------------------------------------------------------------------------- parts 3 and 4


@dataclass(frozen=True)
class TrainingRun:
    name: str
    command: list[str]
    folder: Path  # the deep.train run folder


def paper_runs(args: argparse.Namespace, scale: Scale, runs: Path) -> list[TrainingRun]:
    """Part 3: deep.table's command for each (CIFAR-10-LT, rho, method, seed 0) cell."""
    plan = Plan(
        datasets=(args.dataset,),
        imbalances=(args.imbalance or scale.imbalance,),
        methods=tuple(m for m in args.methods.split(",") if m),
        seeds=(0,),
        root=runs / "paper",
        preset="paper",
        data_root=str(args.data_root),
        sets=(*scale.sets, *args.set),
    )
    extra = ["--no-figures", *(["--compile"] if args.compile_runs else [])]
    return [
        TrainingRun(cell.name, [*plan.command(cell), *extra], plan.folder(cell).path)
        for cell in plan.cells()
    ]


def sweep_runs(args: argparse.Namespace, scale: Scale, runs: Path) -> list[TrainingRun]:
    """Part 4: one deep.train run per --sweep ARGS (default: the collapse preset, if any)."""
    rho = f"{args.imbalance or scale.imbalance:g}"
    out = []
    for i, text in enumerate(_sweep_args(args)):
        folder = runs / "sweep" / f"{i:02d}"
        command = [
            sys.executable, "-m", "deep.train", "--dataset", args.dataset,
            "--data-root", str(args.data_root), "--imbalance", rho, "--out", str(folder),
            "--no-progress", "--no-figures", *(["--compile"] if args.compile_runs else []),
        ]  # fmt: skip
        for assignment in (*scale.sets, *args.set):
            command += ["--set", assignment]
        out.append(TrainingRun(f"sweep-{i:02d}", [*command, *shlex.split(text)], folder))
    return out


# The default sweep: learnable classifier + CE (whose minority classes collapse) against the
# fixed ETF + DR, in the terminal phase of the `collapse` preset, at the data's full class size.
_COLLAPSE_METHODS = (("linear", "ce"), ("etf", "dr"))


def _sweep_args(args: argparse.Namespace) -> list[str]:
    if args.sweep is not None:
        return args.sweep
    if "collapse" not in PRESETS:
        return []
    size = "" if args.tiny else " --set data.max_per_class=null"
    return [f"--preset collapse --head {h} --loss {loss}{size}" for h, loss in _COLLAPSE_METHODS]


def check_run(run: TrainingRun) -> None:
    """Resolve a training run's config as deep.train will: a bad value is a ValueError now,
    not a failed run later. Arguments deep.train does not take are one too."""
    args = run.command[run.command.index("deep.train") + 1 :]
    parser = train_parser()
    parser.exit_on_error = False
    try:
        parsed, unknown = parser.parse_known_args(args)
    except argparse.ArgumentError as exc:
        raise ValueError(f"{run.name}: deep.train {exc}") from None
    if unknown:
        raise ValueError(f"{run.name}: deep.train takes no {' '.join(unknown)}")
    resolve(parsed)


def runs_part(
    runs: list[TrainingRun],
    scale: Scale,
    out: Path,
    deadline: float,
    save: Callable[[dict], None],
    concurrent: bool = False,
) -> dict:
    """Each run in turn while time is left, or all at once (`concurrent`, sharing the device);
    `save(part)` as each ends, so the results grow."""
    if concurrent and deadline - time.monotonic() >= scale.min_run:
        started = [start(run.command, out / "runs" / run.name / "log.txt") for run in runs]
        done = []
        for run, proc in zip(runs, started, strict=True):
            done.append(_run_record(run, wait(proc, deadline, 30.0), out / "runs" / run.name))
            save(_runs_status(done, len(runs)))
        return _runs_status(done, len(runs), concurrent)
    done = []
    for run in runs:
        if deadline - time.monotonic() < scale.min_run:
            done.append({"name": run.name, "status": "not run (time budget)"})
            continue
        outcome = run_until(run.command, deadline, out / "runs" / run.name / "log.txt")
        done.append(_run_record(run, outcome, out / "runs" / run.name))
        save(_runs_status(done, len(runs)))
    return _runs_status(done, len(runs))


def _runs_status(done: list[dict], total: int, concurrent: bool = False) -> dict:
    finished = sum(r["status"] == "finished" for r in done)
    note = "the runs shared the device (--concurrent): wall times are not those of one run alone"
    return {
        "status": f"{finished} of {total} finished",
        "runs": list(done),
        **({"concurrent": True, "note": note} if concurrent else {}),
    }


def _run_record(run: TrainingRun, outcome: dict, copy_to: Path) -> dict:
    """What the run folder says, and copies of its small files in the results folder."""
    record = {"name": run.name, "command": shlex.join(run.command), **outcome}
    record["wall_s"] = record.pop("seconds")
    if outcome["status"] != "finished":  # why, in the results themselves
        record["log_tail"] = _tail(copy_to / "log.txt", 3)
    for name in ("run.json", "config.yaml", "summary.json", "history.csv"):
        if (run.folder / name).is_file():
            shutil.copyfile(run.folder / name, copy_to / name)
    summary = _read_summary(run.folder / "summary.json")
    if summary is None:
        return record
    groups = summary.get("group_acc") or {}
    return record | {
        "epochs_done": summary.get("epochs_done"),
        "epochs": summary.get("epochs"),
        "test_acc": summary.get("last_test_acc"),
        "best_test_acc": summary.get("best_test_acc"),
        **{g: groups.get(g) for g in ("head", "medium", "tail")},
        "nc": summary.get("nc"),
        "nc_epoch": summary.get("nc_epoch"),
        "train_seconds": summary.get("train_seconds"),
        "images_per_second": summary.get("images_per_second"),
        "device_name": (summary.get("environment") or {}).get("device_name"),
    }


def _tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _read_summary(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- part 5


def lpm_part(scale: Scale, out: Path, deadline: float, device: torch.device) -> dict:
    """`benchmarks lpm_scale` on the device in a subprocess, grouped solves with a float32
    phase and in float64 throughout (every certificate a float64 lower bound): the rows of its
    results.json."""
    classes = [str(k) for k in scale.lpm_classes]
    command = [sys.executable, "-m", "benchmarks", "lpm_scale", "--", "--device", device.type]
    command += ["--classes", *classes, "--full-max", "300", "--limit", f"{scale.lpm_limit:g}"]
    command += ["--precision", "float32", "float64", "--out", str(out / "lpm")]
    limit = min(deadline, time.monotonic() + scale.lpm_limit)
    outcome = run_until(command, limit, out / "lpm.log", grace=5.0)
    shown = shlex.join(["python", "-m", "benchmarks", *command[3:]])
    path = out / "lpm" / "results.json"
    if outcome["status"] != "finished" or not path.is_file():
        return {**outcome, "status": outcome["status"], "command": shown}
    rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
    status = "certified" if all(r["certified"] for r in rows) else "not all certified"
    note = f"{device.type}, certificates in float64, ImageNet-LT profile, see lpm.log"
    return {**outcome, "status": status, "command": shown, "note": note, "rows": rows}
