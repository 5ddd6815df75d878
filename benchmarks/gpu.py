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

This module is the command (its options, the checks before any part, the order and the time
budget); the parts and their sizes are in `benchmarks._gpu_parts`, the subprocesses with a
deadline in `benchmarks._gpu_runner`, results.json and results.md in `benchmarks._gpu_report`.
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import os
import platform
import shlex
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks._gpu_parts import (
    FULL,
    PAPER_METHODS,
    PARTS,
    TINY,
    Scale,
    check_run,
    lpm_part,
    one_line,
    paper_runs,
    runs_part,
    sweep_runs,
    tests_part,
    throughput_part,
    throughput_session,
)
from benchmarks._gpu_report import Results
from deep.datasets import DataError, DataRequest, load_dataset
from deep.distributed import resolve_device
from deep.session import Session
from ufm.io import code_version

__all__ = ["build_parser", "main", "unpack"]


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
        results.part("throughput", {"status": f"error: {one_line(session)}"})
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
        value = {"status": f"error: {one_line(exc)}"}
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
