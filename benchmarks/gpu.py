"""Every GPU number of the project from one command: `python -m benchmarks gpu`.

    python -m benchmarks gpu --out DIR            # one CUDA GPU, within --budget (480 s)
    python -m benchmarks gpu --tiny --out DIR     # the same parts at toy size, on the CPU
    make gpu-check ARGS="--out DIR"               # PYTHONPATH=. python3 -m benchmarks gpu ...

It needs torch, numpy, scipy, matplotlib, pyyaml, tqdm, pillow and pytest only (not cvxpy, not
an installed package). The parts run in this order, the cheap and certain ones first; a part
that the time left cannot hold is skipped, a training run still going at the deadline is
interrupted (its run folder keeps the epochs it finished):

1. tests: `pytest -m gpu` in a subprocess; passed / failed / skipped counts and the log.
2. throughput: images/s of the deep.train pipeline (resident uint8 data, batched augmentation
   and mixup on the device, channels_last) against the raw step of the same ResNet-32 on one
   resident batch (`benchmarks.train_throughput`), fp32 and bf16, eager and compiled, on
   CIFAR-10-LT (rho = 100) with the paper preset; target pipeline >= 0.9 x raw.
3. paper: the paper preset (ResNet-32, 200 epochs, batch 128, mixup) on CIFAR-10-LT, rho = 100,
   methods ce, etf-dr and etf-dr-balanced, seed 0, each `python -m deep.train` as deep.table
   runs a cell: wall time, images/s, top-1, head / medium / tail accuracy, final NC metrics.
4. sweep: further deep.train runs (--sweep ARGS, repeatable), e.g. the terminal-phase
   minority-collapse runs; by default the `collapse` preset of deep.config when it exists.
5. lpm: with the time left, the certified LPM convex form on the device (`benchmarks
   lpm_scale --device cuda`, the ImageNet-LT profile at K = 100, 300, 1000, grouped with a
   float32 phase then float64 and grouped in float64 throughout, and, up to K = 300, K x K):
   seconds, iterations, relative gap of each certified solve (every certificate float64).

Data: `--data-root` (default data/cifar10-folder) is an image folder, ROOT/train/CLASS/*.jpg
and ROOT/test/CLASS/*, such as the JPEG copy of CIFAR-10; when it is missing and `--archive`
(default data/cifar10-jpeg.tar.xz) exists, the archive is unpacked there first. It is read once
before any GPU work, so missing or broken data stops the command with the loader's message.
`--dataset cifar10 --data-root DIR` takes the published python archive instead.

Results (`--out`, default runs/gpu-check/<time>/results): results.json and results.md,
rewritten atomically as each part ends (a run cut off returns what finished), tests.log and
tests.xml, and per training run its run.json, config.yaml, summary.json, history.csv and log.
The run folders themselves, with their checkpoints, stay under `--runs`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import itertools
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.train_throughput import images_per_second, pipeline_batches
from deep.config import PRESETS, parse_assignment, resolve_config
from deep.datasets import DataError, DataRequest, load_dataset
from deep.distributed import DistInfo, resolve_device
from deep.session import Session, TrainStep, build_session
from deep.table_plan import Plan
from deep.train import build_parser as train_parser
from deep.train import resolve
from ufm.io import atomic_write_json, atomic_write_text, code_version

__all__ = [
    "FULL",
    "PARTS",
    "TINY",
    "Scale",
    "TrainingRun",
    "main",
    "results_markdown",
    "run_until",
    "runs_part",
]

REPO = Path(__file__).resolve().parents[1]
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks gpu",
        description="The project's GPU check: GPU tests, training throughput and the paper's "
        "CIFAR-10-LT runs, written to one results folder as each part ends.",
    )
    p.add_argument("--tiny", action="store_true", help="toy sizes, runs on the CPU (the test)")
    p.add_argument(
        "--out", type=Path, help="results folder (default runs/gpu-check/<time>/results)"
    )
    p.add_argument("--runs", type=Path, help="training run folders (default <out>/../runs)")
    p.add_argument("--budget", type=float, help="total seconds (default 480; --tiny 600)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"some of {','.join(PARTS)}")
    p.add_argument("--dataset", default="folder", help="folder (default) or cifar10")
    p.add_argument("--data-root", type=Path, default=Path("data/cifar10-folder"))
    p.add_argument("--archive", type=Path, default=Path("data/cifar10-jpeg.tar.xz"))
    p.add_argument("--imbalance", type=float, help="rho (default 100; --tiny 10)")
    p.add_argument("--methods", default=",".join(PAPER_METHODS), help="methods of part 3")
    p.add_argument("--compile-runs", action="store_true", help="deep.train --compile in 3 and 4")
    p.add_argument(
        "--concurrent", action="store_true", help="start the runs of parts 3 and 4 all at once"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="for every training run"
    )
    p.add_argument(
        "--sweep",
        action="append",
        default=None,
        metavar="ARGS",
        help="deep.train arguments of one part-4 run, quoted (repeatable); the data, --out and "
        "--set values come first",
    )
    p.add_argument("--tests", default="tests", help="what pytest -m gpu collects")
    return p


# ----------------------------------------------------------------------------- results


class Results:
    """results.json and results.md in the results folder, rewritten whole after every part."""

    def __init__(self, folder: Path, header: dict[str, Any]) -> None:
        self.folder = folder
        self.data: dict[str, Any] = header | {"parts": {}}

    def part(self, name: str, value: dict[str, Any]) -> None:
        self.data["parts"][name] = value
        self.write()

    def write(self) -> None:
        atomic_write_json(self.folder / "results.json", self.data)
        atomic_write_text(self.folder / "results.md", results_markdown(self.data))


def results_markdown(results: dict[str, Any]) -> str:
    """The results as Markdown: a line on the machine, then one section per part."""
    dev = results["device"]
    lines = [
        f"# GPU check, {results['started']}{' (--tiny)' if results['tiny'] else ''}",
        "",
        f"{dev['name']}, torch {dev['torch']}, CUDA {dev['cuda']}, python {dev['python']}; "
        f"budget {results['budget_s']:g} s; code {results['version'].get('commit', '?')}",
        f"`{results['command']}`",
    ]
    if not results.get("finished"):
        lines.append("**Not finished**: still running, or stopped before its end.")
    parts = results["parts"]
    for name in PARTS:
        if name in parts:
            part = parts[name]
            lines += ["", f"## {name}: {part['status']}", ""]
            lines += _SECTIONS[name](part) if _DATA_KEY[name] in part else [part.get("note", "")]
    return "\n".join(lines) + "\n"


def _tests_md(part: dict[str, Any]) -> list[str]:
    counts = ", ".join(f"{part.get(k, 0)} {k}" for k in ("passed", "failed", "errors", "skipped"))
    return [f"`{part['command']}`: {counts}, {part['seconds']:.1f} s (log: tests.log)"]


def _throughput_md(part: dict[str, Any]) -> list[str]:
    lines = [
        part.get("setting", ""),
        "",
        "| precision | compile | pipeline img/s | raw step img/s | pipeline / raw | warm-up s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in part["rows"]:
        if "error" in r:
            lines.append(f"| {r['precision']} | {r['compile']} | error: {r['error']} | | | |")
            continue
        lines.append(
            f"| {r['precision']} | {r['compile']} | {r['pipeline']:.0f} | {r['raw']:.0f} | "
            f"{r['ratio']:.3f} | {r['warmup_s']:.1f} |"
        )
    return lines


def _runs_md(part: dict[str, Any]) -> list[str]:
    lines = [
        "| run | status | epochs | wall s | train s | img/s | top-1 | head | medium | tail | NC1 | "
        "ETF dist. | min. cos W | min. cos H |",
        "| --- " * 14 + "|",
    ]
    for r in part["runs"]:
        nc = r.get("nc") or {}
        cells = [
            r["name"],
            r["status"],
            f"{r.get('epochs_done', 0)}/{r.get('epochs', '?')}",
            _fmt(r.get("wall_s"), ".0f"),
            _fmt(r.get("train_seconds"), ".0f"),
            _fmt(r.get("images_per_second"), ".0f"),
            *(_fmt(_percent(r.get(k)), ".1f") for k in ("test_acc", "head", "medium", "tail")),
            _fmt(nc.get("nc1"), ".3g"),
            _fmt(nc.get("etf_distance"), ".3f"),
            _fmt(nc.get("minority_cosine_w"), "+.3f"),
            _fmt(nc.get("minority_cosine_h"), "+.3f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"- {r['name']}: {r['log_tail'][-1]}" for r in part["runs"] if r.get("log_tail")]
    return [*lines, part.get("note", "")]


def _percent(x: float | None) -> float | None:
    return None if x is None else 100 * x


def _fmt(x: float | None, spec: str) -> str:
    return "" if x is None else format(x, spec)


def _lpm_md(part: dict[str, Any]) -> list[str]:
    lines = [
        f"`{part['command']}` ({part['note']})",
        "",
        "| K | groups | solver | precision | device | certified | seconds | iterations "
        "| relative gap | value |",
        "| --- " * 10 + "|",
    ]
    for r in part["rows"]:
        value = "" if r.get("value") is None else f"{r['value']:.10f}"
        lines.append(
            f"| {r['classes']} | {r['groups']} | {r['solver']} | {r.get('precision', 'float64')} "
            f"| {r['device']} | "
            f"{r['certified']} | {r['seconds']:.2f} | {r['iterations']} | "
            f"{r['relative_gap']:.1e} | {value} |"
        )
    return lines


_SECTIONS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "tests": _tests_md,
    "throughput": _throughput_md,
    "paper": _runs_md,
    "sweep": _runs_md,
    "lpm": _lpm_md,
}
_DATA_KEY = {
    "tests": "command",
    "throughput": "rows",
    "paper": "runs",
    "sweep": "runs",
    "lpm": "rows",
}


# ----------------------------------------------------------------------------- subprocesses


def _env() -> dict[str, str]:
    """This environment with the repository on the path: nothing needs to be installed."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    env.pop("WORLD_SIZE", None)
    return env


def run_until(command: list[str], deadline: float, log: Path, grace: float = 30.0) -> dict:
    """Run `command` in the repository root, output to `log`, until it ends or `deadline`
    (time.monotonic()); at the deadline it gets SIGINT (deep.train stops after writing its last
    epoch), then `grace` seconds, then SIGKILL. Returns status (finished, failed or stopped),
    returncode and seconds."""
    return _wait(_start(command, log), deadline, grace)


def _start(command: list[str], log: Path) -> tuple[subprocess.Popen, float]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    return proc, time.monotonic()


def _wait(started: tuple[subprocess.Popen, float], deadline: float, grace: float) -> dict:
    proc, start = started
    stopped = False
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        stopped = True
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    status = "stopped" if stopped else ("finished" if proc.returncode == 0 else "failed")
    return {"status": status, "returncode": proc.returncode, "seconds": time.monotonic() - start}


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
            rows.append({"precision": precision, "compile": mode or "no", "error": _short(exc)})
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


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


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
        started = [_start(run.command, out / "runs" / run.name / "log.txt") for run in runs]
        done = []
        for run, proc in zip(runs, started, strict=True):
            done.append(_run_record(run, _wait(proc, deadline, 30.0), out / "runs" / run.name))
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


# ----------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    """The documented driver: checks, then each part in order within the budget."""
    started = time.monotonic()  # the budget counts from here, the data's preparation included
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    scale = TINY if args.tiny else FULL
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = args.out or Path("runs") / "gpu-check" / stamp / "results"
    runs = args.runs or out.parent / "runs"
    try:
        parts = _parts(args.parts)
        budget = _budget(args.budget, scale)
        if not (args.tiny or torch.cuda.is_available()):
            raise _NoGpu
        planned = {name: make(args, scale, runs) for name, make in _RUNS.items() if name in parts}
        for run in itertools.chain(*planned.values()):
            check_run(run)
        device = resolve_device("auto")
        session = _prepare_data(args, scale, parts, device)  # before any GPU work
    except _NoGpu:
        print(
            "benchmarks.gpu: error: this check needs a CUDA GPU and none is visible; the toy "
            "version runs on the CPU: python -m benchmarks gpu --tiny (make gpu-check "
            "ARGS=--tiny)",
            file=sys.stderr,
        )
        return 2
    except ValueError as exc:  # DataError, ConfigError, a bad --parts
        print(f"benchmarks.gpu: error: {exc}", file=sys.stderr)
        return 2
    deadline = started + budget
    results = Results(out, _header(args, argv, device, budget))
    results.write()
    _say(f"results: {out}")
    if device.type == "cuda":  # as deep.train sets them: fixed shapes, TF32 for fp32 matmuls
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    if "tests" in parts:
        _part(results, "tests", deadline, lambda: tests_part(args, scale, out, deadline))
    if isinstance(session, Exception):  # not the data's fault: the GPU's, say
        results.part("throughput", {"status": f"error: {_short(session)}"})
    elif session is not None:
        _part(
            results,
            "throughput",
            deadline,
            functools.partial(throughput_part, session, scale, deadline),
        )
    del session
    _release(device)
    for name, planned_runs in planned.items():
        if not planned_runs:
            results.part(name, {"status": "skipped", "note": _NO_SWEEP})
            continue
        save = functools.partial(results.part, name)  # each run checks the time left itself
        body = functools.partial(
            runs_part, planned_runs, scale, out, deadline, save, args.concurrent
        )
        _part(results, name, None, body)
    if "lpm" in parts:
        _part(results, "lpm", deadline, functools.partial(lpm_part, scale, out, deadline, device))
    results.data["finished"] = True
    results.data["seconds"] = time.monotonic() - started
    results.write()
    _say(f"done in {results.data['seconds']:.0f} s: {out / 'results.md'}")
    return 0 if _all_good(results.data["parts"]) else 1


_NO_SWEEP = (
    "no sweep runs: pass --sweep 'DEEP.TRAIN ARGS' (repeatable); deep.config has no `collapse` "
    "preset to default to"
)


class _NoGpu(Exception):
    pass


_RUNS = {"paper": paper_runs, "sweep": sweep_runs}


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


def _budget(given: float | None, scale: Scale) -> float:
    if given is None:
        return scale.budget
    if not 0 <= given < float("inf"):
        raise ValueError(f"--budget must be a number of seconds >= 0, got {given}")
    return given


def _parts(text: str) -> list[str]:
    parts = [p for p in text.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise ValueError(f"--parts takes some of {','.join(PARTS)}, got {text!r}")
    return parts


def _prepare_data(
    args: argparse.Namespace, scale: Scale, parts: list[str], device: torch.device
) -> Session | Exception | None:
    """Unpack the archive if needed and read the data (CPU): the throughput part's session,
    or a plain load when only training runs need the data. Bad data raises (a ValueError);
    any other failure to build the session is returned, to be that part's result."""
    if not {"throughput", "paper", "sweep"} & set(parts):
        return None
    if args.dataset == "folder" and not args.data_root.exists() and args.archive.is_file():
        _say(f"unpacking {args.archive} into {args.data_root}")
        unpack(args.archive, args.data_root)
    if "throughput" in parts:
        try:
            return throughput_session(args, scale, device)
        except ValueError:
            raise
        except Exception as exc:
            return exc
    load_dataset(args.dataset, DataRequest(root=args.data_root, download=False))
    return None


def unpack(archive: Path, target: Path) -> None:
    """Extract a tar archive into `target`, whole or not at all (a staging folder, renamed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        os.replace(staging, target)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{archive} cannot be unpacked (truncated or corrupt?): {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _part(results: Results, name: str, deadline: float | None, body: Callable[[], dict]) -> None:
    """Run one part, timed, unless `deadline` has passed; an exception becomes the part's
    status, never the end of the check."""
    if deadline is not None and time.monotonic() >= deadline:
        results.part(name, {"status": "skipped", "note": "the time budget was spent"})
        return
    _say(f"part {name} ...")
    start = time.perf_counter()
    try:
        value = body()
    except Exception as exc:
        value = {"status": f"error: {_short(exc)}"}
    value["part_seconds"] = time.perf_counter() - start
    results.part(name, value)
    _say(f"part {name}: {value['status']} ({value['part_seconds']:.0f} s)")


def _all_good(parts: dict[str, dict]) -> bool:
    bad = ("failed", "error", "stopped")
    return not any(str(p.get("status", "")).startswith(bad) for p in parts.values())


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _header(
    args: argparse.Namespace, argv: list[str] | None, device: torch.device, budget: float
) -> dict:
    cuda = device.type == "cuda"
    cpu_name = platform.processor() or platform.machine()
    return {
        "command": shlex.join(["python", "-m", "benchmarks", "gpu", *(argv or sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tiny": args.tiny,
        "budget_s": budget,
        "device": {
            "name": torch.cuda.get_device_name(device) if cuda else cpu_name,
            "capability": list(torch.cuda.get_device_capability(device)) if cuda else None,
            "memory_gb": torch.cuda.get_device_properties(device).total_memory / 2**30
            if cuda
            else None,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
        },
        "version": code_version(),
        "finished": False,
    }


def _say(text: str) -> None:
    print(f"benchmarks.gpu: {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
