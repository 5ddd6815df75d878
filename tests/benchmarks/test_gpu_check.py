"""`python -m benchmarks gpu`: the toy version end to end, its refusals and its time budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import benchmarks.gpu as gpu
from benchmarks.__main__ import _split
from benchmarks._gpu_parts import PAPER_METHODS, PARTS, TINY, TrainingRun, _sweep_args, runs_part
from benchmarks._gpu_report import results_markdown
from benchmarks._gpu_runner import run_until
from deep.methods import METHODS
from tests.deep import fakes

REPO = Path(__file__).resolve().parents[2]
TEN_CLASSES = tuple(f"class{k}" for k in range(10))


@pytest.fixture(scope="module")
def ten_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAR-like image folder at toy size: 10 classes of 20 training images."""
    root = tmp_path_factory.mktemp("folder10")
    return fakes.write_folder_dataset(root, TEN_CLASSES, per_class=20, test_per_class=2, size=16)


def _blocked_cvxpy(folder: Path) -> Path:
    """A folder whose `cvxpy` cannot be imported, as on the bare GPU machine."""
    (folder / "cvxpy").mkdir(parents=True)
    (folder / "cvxpy" / "__init__.py").write_text("raise ImportError('cvxpy is blocked')\n")
    return folder


@pytest.mark.slow
def test_tiny_check_runs_every_part_and_writes_readable_results(ten_classes, tmp_path) -> None:
    out, runs = tmp_path / "results", tmp_path / "runs"
    blocker = _blocked_cvxpy(tmp_path / "blocked")
    env = dict(os.environ, PYTHONPATH=f"{blocker}{os.pathsep}{REPO}", OMP_NUM_THREADS="1")
    command = [
        sys.executable, "-m", "benchmarks", "gpu", "--tiny", "--out", str(out),
        "--runs", str(runs), "--data-root", str(ten_classes),
        "--tests", "tests/deep/test_cuda_path.py", "--sweep", "--head linear --loss ce --seed 1",
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    results = json.loads((out / "results.json").read_text())
    assert results["finished"] and results["tiny"]
    parts = results["parts"]
    assert list(parts) == list(PARTS)

    tests = parts["tests"]  # three GPU tests: passed on a GPU, skipped without one
    assert tests["failed"] == tests["errors"] == 0 and tests["passed"] + tests["skipped"] == 3
    assert (out / "tests.log").read_text().strip()

    rows = parts["throughput"]["rows"]
    measured = {(r["precision"], r["compile"]) for r in rows}
    assert {("fp32", "no"), ("bf16", "no"), ("fp32", "default"), ("bf16", "default")} <= measured
    for r in rows:
        assert r["pipeline"] > 0 and r["raw"] > 0
        assert r["ratio"] == pytest.approx(r["pipeline"] / r["raw"])

    paper = parts["paper"]["runs"]
    assert [r["name"] for r in paper] == [f"folder-10-{m}-s0" for m in PAPER_METHODS]
    for run, method in zip(paper, PAPER_METHODS, strict=True):
        assert run["status"] == "finished" and run["epochs_done"] == run["epochs"] == 2
        assert 0 <= run["test_acc"] <= 1 and run["nc"]["nc1"] >= 0
        config = yaml.safe_load((out / "runs" / run["name"] / "config.yaml").read_text())
        assert config["preset"] == "paper" and config["model"]["arch"] == "resnet8"
        assert (config["head"]["name"], config["loss"]["name"]) == (
            METHODS.get(method).head,
            METHODS.get(method).loss,
        )
        summary = json.loads((out / "runs" / run["name"] / "summary.json").read_text())
        assert summary["last_test_acc"] == run["test_acc"]
        assert not (out / "runs" / run["name"] / "checkpoints").exists()  # they stay in --runs
        assert (runs / "paper" / run["name"] / "checkpoints" / "last.pt").is_file()

    (sweep,) = parts["sweep"]["runs"]
    assert sweep["status"] == "finished" and "--seed 1" in sweep["command"]
    config = yaml.safe_load((out / "runs" / sweep["name"] / "config.yaml").read_text())
    assert config["run"]["seed"] == 1 and config["loss"]["name"] == "ce"

    lpm = parts["lpm"]  # the certified LPM on the device (the CPU here), float64
    assert lpm["status"] == "certified", lpm
    assert {(r["classes"], r["solver"]) for r in lpm["rows"]} == {
        (k, solver) for k in (10, 30) for solver in ("grouped", "full")
    }
    assert all(r["relative_gap"] <= 1e-8 and r["device"] == "cpu" for r in lpm["rows"])

    table = (out / "results.md").read_text()
    for name in PARTS:
        assert f"## {name}: {parts[name]['status']}" in table
    for run in [*paper, sweep]:
        assert f"| {run['name']} | finished | 2/2 |" in table


def test_gpu_path_imports_without_cvxpy() -> None:
    code = (
        "import sys; sys.modules['cvxpy'] = None\n"  # import cvxpy now raises ImportError
        "import benchmarks.gpu, benchmarks.train_throughput, deep.train, deep.table, deep.loop\n"
        "import figures.training, figures.runs\n"
        "print('imported')"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "imported" in proc.stdout, proc.stderr


def test_without_a_gpu_the_full_check_is_one_line_and_exit_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a CUDA GPU" in err[0] and "--tiny" in err[0]
    assert not (tmp_path / "out").exists()


def test_missing_data_is_the_loaders_message_before_any_part(tmp_path, capsys) -> None:
    missing = tmp_path / "no-data"
    argv = ["--tiny", "--data-root", str(missing), "--archive", str(tmp_path / "no.tar.xz")]
    assert gpu.main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{missing / 'train'} is missing" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--parts", "tests,speed"], "--parts takes some of tests,throughput,paper,sweep,lpm"),
        (["--budget", "-1"], "--budget must be a number of seconds >= 0, got -1.0"),
        (["--parts", "paper", "--imbalance", "0.5"], "data.imbalance must be"),
        (["--parts", "paper", "--methods", "ce,nope"], "unknown method 'nope'"),
        (["--parts", "paper", "--set", "optim.lr=-1"], "optim.lr must be"),
        (["--parts", "sweep", "--sweep", "--epochs many"], "invalid int value: 'many'"),
        (["--parts", "sweep", "--sweep=--no-such-flag"], "takes no --no-such-flag"),
    ],
)
def test_bad_options_are_one_message_before_anything_runs(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert gpu.main(["--tiny", *argv, "--out", str(out), "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_a_spent_budget_skips_the_parts_and_still_writes_results(ten_classes, tmp_path) -> None:
    out = tmp_path / "out"
    argv = ["--tiny", "--budget", "0", "--parts", "tests,paper"]
    argv += ["--data-root", str(ten_classes), "--out", str(out), "--runs", str(tmp_path / "r")]
    assert gpu.main(argv) == 0
    parts = json.loads((out / "results.json").read_text())["parts"]
    assert parts["tests"]["status"] == "skipped"
    assert [r["status"] for r in parts["paper"]["runs"]] == ["not run (time budget)"] * 3
    assert not (tmp_path / "r").exists()
    assert "## paper: 0 of 3 finished" in (out / "results.md").read_text()


def test_the_archive_is_unpacked_whole_when_the_folder_is_missing(ten_classes, tmp_path):
    import tarfile

    archive = tmp_path / "data.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        for split in ("train", "test"):
            tar.add(ten_classes / split, arcname=split)
    target = tmp_path / "data" / "folder"
    gpu.unpack(archive, target)
    assert sorted(p.name for p in (target / "train").iterdir()) == sorted(TEN_CLASSES)
    assert [p.name for p in target.parent.iterdir()] == ["folder"]  # no staging folder left
    (tmp_path / "broken.tar.xz").write_bytes(archive.read_bytes()[:200])
    with pytest.raises(ValueError, match="cannot be unpacked"):
        gpu.unpack(tmp_path / "broken.tar.xz", tmp_path / "other")
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    ("code", "seconds", "status", "returncode"),
    [
        ("print('hello')", 120, "finished", 0),
        ("raise SystemExit(3)", 120, "failed", 3),
        ("import time; time.sleep(120)", 1, "stopped", None),
    ],
)
def test_run_until_stops_a_process_at_its_deadline(
    tmp_path, code, seconds, status, returncode
) -> None:
    log = tmp_path / "log.txt"
    deadline = time.monotonic() + seconds
    outcome = run_until([sys.executable, "-c", code], deadline, log, grace=10)
    assert outcome["status"] == status
    if returncode is not None:
        assert outcome["returncode"] == returncode
    if status == "finished":
        assert log.read_text() == "hello\n"


def test_benchmark_arguments_follow_the_names() -> None:
    assert _split(["gpu", "--tiny", "--out", "x"]) == (["gpu"], ["--tiny", "--out", "x"])
    assert _split(["a", "b", "--", "--steps", "5"]) == (["a", "b"], ["--steps", "5"])
    assert _split([]) == ([], [])


def test_a_failed_training_run_is_reported_with_its_last_words(tmp_path) -> None:
    run = TrainingRun("broken", [sys.executable, "-c", "raise SystemExit('boom')"], tmp_path)
    saved: list[dict] = []
    part = runs_part([run], TINY, tmp_path / "out", time.monotonic() + 120, saved.append)
    (record,) = part["runs"]
    assert part["status"] == "0 of 1 finished" and saved[-1] == part
    assert record["status"] == "failed" and record["returncode"] == 1
    assert record["log_tail"] == ["boom"]
    assert "- broken: boom" in results_markdown(
        {
            "device": {"name": "cpu", "torch": "", "cuda": None, "python": ""},
            "started": "now",
            "tiny": True,
            "budget_s": 1.0,
            "version": {},
            "command": "python -m benchmarks gpu",
            "parts": {"paper": part},
        }
    )


def test_the_default_sweep_is_the_collapse_preset_when_there_is_one(monkeypatch) -> None:
    from deep.config import PRESETS

    monkeypatch.setitem(PRESETS, "collapse", PRESETS["paper"])
    full = _sweep_args(gpu.build_parser().parse_args([]))
    tiny = _sweep_args(gpu.build_parser().parse_args(["--tiny"]))
    assert [a.split()[:2] for a in full] == [["--preset", "collapse"]] * 2
    assert {("--head linear --loss ce" in a, "--head etf --loss dr" in a) for a in full} == {
        (True, False),
        (False, True),
    }
    assert all("data.max_per_class=null" in a for a in full)  # full size on the GPU
    assert not any("max_per_class" in a for a in tiny)  # the toy size stays toy
    given = gpu.build_parser().parse_args(["--sweep", "--seed 3"])
    assert _sweep_args(given) == ["--seed 3"]
    monkeypatch.delitem(PRESETS, "collapse")
    assert _sweep_args(gpu.build_parser().parse_args([])) == []


def test_concurrent_runs_start_together_and_each_meets_the_deadline(tmp_path) -> None:
    python = sys.executable
    runs = [
        TrainingRun("quick", [python, "-c", "print('done')"], tmp_path / "a"),
        TrainingRun("long", [python, "-c", "import time; time.sleep(120)"], tmp_path / "b"),
    ]
    saved: list[dict] = []
    deadline = time.monotonic() + 3
    part = runs_part(runs, TINY, tmp_path / "out", deadline, saved.append, True)
    assert [r["status"] for r in part["runs"]] == ["finished", "stopped"]
    assert part["concurrent"] and "shared the device" in part["note"]
    assert part["status"] == "1 of 2 finished" and len(saved) == 2
