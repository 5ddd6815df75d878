"""The `python -m ufm.simulate` command: output contract, bad input, killed runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ufm import simulate
from ufm.simulate import SimulateConfig, run_simulation

SMALL = ["--n-max", "120", "--imbalance", "10", "--classes", "5", "--dim", "8", "--no-figures"]
RUN_KEYS = {
    "classifier",
    "loss",
    "objective",
    "optimum",
    "gap",
    "certified",
    "iterations",
    "seconds",
    "metrics",
}
METRIC_KEYS = {"nc1", "etf_distance", "self_duality", "minority_cosine_w", "minority_cosine_h"}


def test_summary_contract(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert simulate.main([*SMALL, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == [120, 67, 37, 21, 12]
    assert summary["config"]["imbalance"] == 10.0
    configs = {(r["classifier"], r["loss"]) for r in summary["runs"]}
    assert configs == {("etf", "ce"), ("etf", "dr"), ("learnable", "ce"), ("learnable", "dr")}
    for run in summary["runs"]:
        assert RUN_KEYS <= run.keys() and METRIC_KEYS <= run["metrics"].keys()
        assert run["certified"] is True
        assert run["gap"] <= 1e-9 * max(1.0, abs(run["optimum"]))
    notes = [r.get("note", "") for r in summary["runs"]]
    assert sum("degenerate" in n for n in notes) == 1
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["n_max"] == 120 and "package" in config["version"]
    header = (out / "history.csv").read_text().splitlines()[0]
    assert header == "configuration,iteration,seconds,objective,gap"


def test_step_profile_and_selection(tmp_path: Path) -> None:
    cfg = SimulateConfig(
        profile="step",
        classes=6,
        minority_classes=2,
        n_max=100,
        imbalance=5,
        dim=8,
        losses=("ce",),
        classifiers=("learnable",),
        out=str(tmp_path / "s"),
        figures=False,
    )
    _, summary = run_simulation(cfg, echo=False)
    assert summary["counts"] == [100] * 4 + [20] * 2 and summary["minority"] == [4, 5]
    assert len(summary["runs"]) == 1


def test_balanced_dr_is_compared_with_zero(tmp_path: Path) -> None:
    """Every dot-regression weighting reaches 0; the learnable one is reported degenerate."""
    cfg = SimulateConfig(
        classes=4, n_max=30, imbalance=5, dim=6, losses=("dr-balanced",), figures=False
    )
    cfg.out = str(tmp_path / "b")
    _, summary = run_simulation(cfg, echo=False)
    for run in summary["runs"]:
        assert run["optimum"] == 0.0 and run["certified"]
        assert 0.0 <= run["objective"] <= 1e-9
        assert ("note" in run) == (run["classifier"] == "learnable")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--imbalance", "-3"], "ratio"),
        (["--imbalance", "nan"], "ratio"),
        (["--dim", "3", "--classes", "10"], "--dim"),
        (["--classes", "1"], "--classes"),
        (["--losses", "ce,hinge"], "unknown loss"),
        (["--classifiers", "etf,frozen"], "unknown classifier"),
        (["--e-h", "0"], "--e-h"),
        (["--device", "cuda:7"], "CUDA"),
    ],
)
def test_bad_arguments_one_clear_line(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if "cuda" in " ".join(args):
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is present")
    code = simulate.main([*SMALL, "--out", str(tmp_path / "bad"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "bad").exists()  # checked before anything is written


def test_killed_run_leaves_no_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "killed"
    calls = []

    def dying(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt  # killed during the second configuration
        calls.append(1)
        return real(*args, **kwargs)

    real = simulate.run_configuration
    monkeypatch.setattr(simulate, "run_configuration", dying)
    assert simulate.main([*SMALL, "--out", str(out)]) == 130  # Ctrl-C: a message, no traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0]
    assert not (out / "summary.json").exists()  # not half-written
    assert not list(out.glob(".*.tmp"))
    json.loads((out / "config.json").read_text())  # whatever exists is whole


def test_module_entry_point(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ufm.simulate",
            *SMALL,
            "--out",
            str(tmp_path / "cli"),
            "--losses",
            "ce",
            "--classifiers",
            "etf",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "etf + ce" in proc.stdout and "wrote" in proc.stdout


@pytest.mark.slow
def test_default_problem_meets_its_targets(tmp_path: Path) -> None:
    """`--imbalance 100` at full size: fixed-ETF gaps <= 1e-9, learnable + CE <= 1e-6 rel."""
    cfg = SimulateConfig(out=str(tmp_path / "default"), figures=False)
    _, summary = run_simulation(cfg, echo=False)
    runs = {(r["classifier"], r["loss"]): r for r in summary["runs"]}
    assert summary["counts"][-1] == 50 and sum(summary["counts"]) == 12406
    assert runs["etf", "ce"]["gap"] <= 1e-9 and runs["etf", "dr"]["gap"] <= 1e-9
    assert runs["learnable", "ce"]["relative_gap"] <= 1e-6
    assert runs["learnable", "ce"]["metrics"]["minority_cosine_w"] > 0.99  # minority collapse
    assert runs["etf", "ce"]["metrics"]["minority_cosine_w"] == pytest.approx(-1 / 9)
