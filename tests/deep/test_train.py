"""End to end: `python -m deep.train` on tiny data in each real format, bad input, exact
resume after a kill, and two processes under torchrun."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from deep.train import main
from tests.deep import fakes
from ufm.metrics import nc_metrics

REPO = Path(__file__).resolve().parents[2]
TIMING = {"train_seconds", "images_per_second", "eval_seconds", "nc_seconds"}


def _args(dataset: str, root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--dataset", dataset, "--data-root", str(root), "--out", str(out), "--arch", "resnet8",
        "--epochs", "2", "--batch-size", "16", "--nc-every", "1", "--imbalance", "5",
        "--set", "data.verify=false", "--set", "data.download=false", "--no-progress",
        "--no-figures", *extra,
    ]  # fmt: skip


def _expected_nc_keys(num_classes: int) -> set[str]:
    h = torch.randn(3 * num_classes, 4, dtype=torch.float64)
    y = torch.arange(num_classes).repeat(3)
    w = torch.randn(num_classes, 4, dtype=torch.float64)
    return set(nc_metrics(h, y, w, w[:, 0], num_classes=num_classes, minority=[0, 1]))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def roots(cifar10_root: Path, idx_root: Path, folder_root: Path) -> dict[str, Path]:
    return {"cifar10": cifar10_root, "fashion-mnist": idx_root, "folder": folder_root}


@pytest.mark.parametrize(("dataset", "k"), [("cifar10", 10), ("fashion-mnist", 10), ("folder", 3)])
def test_each_format_trains_and_writes_a_run_folder(roots, tmp_path, capsys, dataset, k) -> None:
    out = tmp_path / "run"
    assert main(_args(dataset, roots[dataset], out)) == 0
    assert "using the quick preset because no GPU is present" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints", "config.yaml", "geometry.npz", "history.csv", "run.json", "summary.json",
    ]  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "best_test_acc",
        "last_test_acc",
        "per_class_acc",
        "counts",
        "nc",
        "seconds",
        "images_per_second",
    ):
        assert summary[key] is not None, key
    assert summary["status"] == "finished" and summary["epochs_done"] == 2
    assert len(summary["per_class_acc"]) == len(summary["counts"]) == k
    assert set(summary["nc"]) == _expected_nc_keys(k)
    rows = _read_csv(out / "history.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {
        "train_loss",
        "lr",
        "test_acc",
        "head_acc",
        "medium_acc",
        "tail_acc",
        "acc_class_0",
        "nc1",
        "minority_cosine_w",
        "minority_cosine_h",
        "images_per_second",
    } <= set(rows[0])
    assert float(rows[-1]["test_acc"]) == pytest.approx(summary["last_test_acc"])


def test_a_finished_run_draws_its_figures(idx_root, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = [a for a in _args("fashion-mnist", idx_root, out) if a != "--no-figures"]
    assert main(args) == 0
    assert f"figures: {out / 'figures'}" in capsys.readouterr().out
    drawn = sorted(p.name for p in (out / "figures").iterdir())
    stems = {p.rsplit(".", 1)[0] for p in drawn}
    assert stems and drawn == sorted(f"{s}.{ext}" for s in stems for ext in ("pdf", "png"))
    assert all((out / "figures" / name).stat().st_size > 1000 for name in drawn)


@pytest.mark.parametrize(
    ("head", "loss"), [("linear", "ce"), ("etf", "dr-balanced"), ("linear", "dr")]
)
def test_heads_and_losses_with_mixup(idx_root, tmp_path, head, loss) -> None:
    out = tmp_path / "run"
    extra = ["--head", head, "--loss", loss, "--epochs", "1", "--set", "augment.mixup_alpha=1.0"]
    assert main(_args("fashion-mnist", idx_root, out, *extra)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and 0.0 <= summary["last_test_acc"] <= 1.0
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ("head.weight" in ckpt["model"]) == (head == "etf")  # the ETF buffer travels along
    assert ("head.fc.bias" in ckpt["model"]) == (head == "linear")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dataset", "mnist"], "unknown dataset 'mnist'; choose one of: cifar10"),
        (["--head", "quadratic"], "unknown head 'quadratic'; choose one of: cosine, etf"),
        (["--loss", "focal"], "unknown loss 'focal'; choose one of: allnc, balanced-softmax"),
        (["--arch", "resnet18"], "unknown backbone 'resnet18'"),
        (["--imbalance", "0.5"], "data.imbalance must be a finite ratio >= 1"),
        (
            ["--imbalance", "nan"],
            "data.imbalance must be a finite ratio >= 1 (1 = balanced), got nan",
        ),
        (["--set", "optim.lr=-1"], "optim.lr must be a finite number > 0"),
        (["--set", "optim.lrr=1"], "unknown config key optim.lrr"),
        (["--batch-size", "500"], "fewer than one batch of 500"),
    ],
)
def test_bad_input_is_one_message_and_nothing_written(idx_root, tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert main(_args("fashion-mnist", idx_root, out, *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deep.train: error:") and message in err[0]
    assert not out.exists()


def test_bad_data_is_one_message_and_nothing_written(tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    truncated = fakes.write_idx_dataset(tmp_path / "truncated")
    labels = truncated / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:20])
    corrupt = fakes.write_cifar10(tmp_path / "corrupt").parent
    (corrupt / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"\x80\x02}q\x00(X")
    folder = fakes.write_folder_dataset(tmp_path / "folder")
    (folder / "train" / "emu").mkdir()
    (folder / "test" / "emu").mkdir()
    cases = [
        ("fashion-mnist", empty, "Fashion-MNIST not found: expected train-images-idx3-ubyte.gz"),
        ("cifar10", empty, "CIFAR-10 not found: expected"),
        ("fashion-mnist", truncated, "train-labels-idx1-ubyte.gz is truncated or corrupt"),
        ("cifar10", corrupt, "data_batch_2 is not a readable CIFAR pickle"),
        ("folder", folder, "train/emu has no images"),
    ]
    for dataset, root, message in cases:
        out = tmp_path / f"run-{dataset}"
        assert main(_args(dataset, root, out)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not out.exists()


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def test_a_real_process_exits_non_zero(tmp_path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "deep.train", "--head", "nope", "--out", str(out)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "unknown head 'nope'" in proc.stderr
    assert not out.exists()


def test_existing_run_folder_is_not_overwritten(idx_root, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(_args("fashion-mnist", idx_root, out)) == 2
    assert "--resume" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def _final_state(out: Path) -> dict:
    return torch.load(out / "checkpoints" / "last.pt", weights_only=True)


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


@pytest.mark.slow
def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path) -> None:
    root = fakes.write_idx_dataset(tmp_path / "data", per_class=40, test_per_class=4)
    extra = [
        "--epochs",
        "6",
        "--imbalance",
        "2",
        "--set",
        "augment.mixup_alpha=1.0",
        "--loss",
        "dr-balanced",
    ]
    reference = tmp_path / "reference"
    assert main(_args("fashion-mnist", root, reference, *extra)) == 0

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "deep.train", *_args("fashion-mnist", root, killed, *extra)]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints" / "last.pt").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = _final_state(killed)["epoch"]
    assert 1 <= stopped_at < 6, "the run finished before it could be killed"

    assert main(["--resume", str(killed), "--no-progress", "--no-figures"]) == 0
    a, b = _final_state(reference), _final_state(killed)
    assert a["epoch"] == b["epoch"] == 6
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for key, state in a["optimizer"]["state"].items():
        assert torch.equal(
            state["momentum_buffer"], b["optimizer"]["state"][key]["momentum_buffer"]
        )
    assert _without_timing(a["history"]) == _without_timing(b["history"])
    assert _without_timing(_read_csv(reference / "history.csv")) == _without_timing(
        _read_csv(killed / "history.csv")
    )
    assert json.loads((killed / "summary.json").read_text())["status"] == "finished"


def test_resume_takes_no_other_options_and_finished_runs_stay(idx_root, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(_args("fashion-mnist", idx_root, out, "--epochs", "1")) == 0
    assert main(["--resume", str(out), "--lr", "0.5"]) == 2
    assert "drop --lr" in capsys.readouterr().err
    before = (out / "checkpoints" / "last.pt").read_bytes()
    assert main(["--resume", str(out), "--no-figures"]) == 0
    assert "finished all 1 epochs already" in capsys.readouterr().out
    assert (out / "checkpoints" / "last.pt").read_bytes() == before
    assert main(["--resume", str(tmp_path / "nothing")]) == 2


def test_resume_notices_changed_data(tmp_path, capsys) -> None:
    root = fakes.write_idx_dataset(tmp_path / "data")
    out = tmp_path / "run"
    assert main(_args("fashion-mnist", root, out, "--epochs", "1")) == 0
    fakes.write_idx_dataset(root, per_class=30)
    assert main(["--resume", str(out)]) == 2
    assert "the dataset's files changed" in capsys.readouterr().err


def test_resume_on_another_kind_of_device_is_refused(idx_root, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(_args("fashion-mnist", idx_root, out, "--epochs", "1")) == 0
    ckpt = _final_state(out)
    assert ckpt["rng"]["per_process"][0]["device"] == "cpu"
    ckpt["rng"]["per_process"][0]["device"] = "cuda"  # as a GPU run would have written it
    torch.save(ckpt, out / "checkpoints" / "last.pt")
    assert main(["--resume", str(out)]) == 2
    assert "written by a run on cuda" in capsys.readouterr().err


def test_print_config(capsys) -> None:
    assert main(["--preset", "paper", "--dataset", "cifar100", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "width: 2" in text and "arch: resnet32" in text


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_under_torchrun_write_one_run_folder(idx_root, tmp_path) -> None:
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "deep.train",
        *_args("fashion-mnist", idx_root, out, "--epochs", "2"),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("deep.train: wrote") == 1  # rank 0 alone reports and writes
    summary = json.loads((out / "summary.json").read_text())
    assert summary["environment"]["world_size"] == 2 and summary["status"] == "finished"
    assert set(summary["nc"]) == _expected_nc_keys(10)
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]
    ckpt = _final_state(out)
    assert len(ckpt["rng"]["per_process"]) == 2


@pytest.mark.gpu
def test_cuda_run_uses_bf16_and_the_resident_pipeline(cuda, idx_root, tmp_path) -> None:
    out = tmp_path / "run"
    assert (
        main(
            _args(
                "fashion-mnist",
                idx_root,
                out,
                "--device",
                "cuda",
                "--set",
                "augment.mixup_alpha=1.0",
            )
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["environment"]["amp"] == "bf16" and summary["status"] == "finished"
