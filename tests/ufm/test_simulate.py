"""The `python -m ufm.simulate` command: output contract, bad input, killed runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ufm import simulate
from ufm.runfolder import read_run
from ufm.simulate import SimulateConfig, run_simulation

SMALL = ["--n-max", "120", "--imbalance", "10", "--classes", "5", "--dim", "8", "--no-figures"]
RUN_KEYS = {
    "classifier",
    "loss",
    "objective",
    "optimum",
    "lower_bound",
    "gap",
    "certified",
    "reference_certified",
    "status",
    "certified_distance",
    "feature_distance",
    "iterations",
    "seconds",
    "metrics",
}
ROUNDING = 1e-12  # float64 objectives of ~1e3 terms, relative to max(1, |f|)
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
        assert run["certified"] is True and run["reference_certified"] is True
        assert run["status"] == "converged" and run["converged"] is True
        scale = max(1.0, abs(run["lower_bound"]))
        # Two-sided: the objective lies in [lower bound, lower bound + tol], up to rounding.
        assert run["gap"] == run["objective"] - run["lower_bound"]
        assert -ROUNDING * scale <= run["gap"] <= 1e-9 * scale
        assert run["lower_bound"] <= run["optimum"] <= run["objective"] + ROUNDING * scale
    assert summary["converged"] is True
    notes = [r.get("note", "") for r in summary["runs"]]
    assert sum("degenerate" in n for n in notes) == 1
    run = read_run(out)
    assert (run.kind, run.format) == ("ufm", 1) and "package" in run.run["version"]
    assert run.config["n_max"] == 120 and run.config["counts"] == summary["counts"]
    header = (out / "history.csv").read_text().splitlines()[0]
    assert header == "configuration,iteration,seconds,objective,gap"


def test_an_objective_below_the_lower_bound_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reference solved at the wrong E_H (half the run's) claims a lower bound above what the
    run reaches: one error line, no summary, instead of a negative gap marked certified."""
    real = simulate.solve_lpm_convex

    def wrong_energy(counts, e_w, e_h, **kwargs):
        return real(counts, e_w, e_h / 2, **kwargs)

    monkeypatch.setattr(simulate, "solve_lpm_convex", wrong_energy)
    out = tmp_path / "wrong"
    code = simulate.main(
        [*SMALL, "--out", str(out), "--classifiers", "learnable", "--losses", "ce"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "below the certified lower bound" in err[0] and "learnable + ce" in err[0]
    assert not (out / "summary.json").exists()


def test_certified_feature_distance_from_the_growth_bounds(tmp_path: Path) -> None:
    """Fixed ETF: the gap certifies a feature distance of order gap^(1/2) (CE, quadratic growth)
    and only gap^(1/4) (DR, quartic growth); the distance measured to h* respects it."""
    cfg = SimulateConfig(
        classes=5, n_max=60, imbalance=10, dim=8, classifiers=("etf", "learnable"), figures=False
    )
    cfg.out = str(tmp_path / "d")
    _, summary = run_simulation(cfg, echo=False)
    runs = {(r["classifier"], r["loss"]): r for r in summary["runs"]}
    c = math.sqrt(cfg.e_w * cfg.e_h)
    dr, ce = runs["etf", "dr"], runs["etf", "ce"]
    n = sum(summary["counts"])

    def raised(run: dict) -> float:  # the gap plus the rounding of the two values
        top = max(abs(run["objective"]), abs(run["lower_bound"]))
        return max(run["gap"], 0.0) + 2.0**-52 * (8 + math.log2(n)) * top

    assert dr["certified_distance"] == pytest.approx(
        (8 * cfg.e_h * c * raised(dr) / cfg.e_w) ** 0.25, rel=1e-12
    )
    tail = 4 * math.exp(-5 * c / 4)  # (K-1) exp(-K c/(K-1))
    nu = tail / (1 + tail) * (5 / 4) * math.sqrt(cfg.e_w) / (2 * math.sqrt(cfg.e_h))
    assert ce["certified_distance"] == pytest.approx(math.sqrt(raised(ce) / nu), rel=1e-12)
    assert dr["certified_distance"] > 100 * ce["certified_distance"]  # gap^(1/4) vs gap^(1/2)
    for run in (dr, ce):
        assert 0.0 <= run["feature_distance"] <= run["certified_distance"]
    for key in (("learnable", "ce"), ("learnable", "dr")):
        assert runs[key]["certified_distance"] is None and runs[key]["feature_distance"] is None
    table = simulate.format_table(summary["runs"])
    assert "dist<=" in table.splitlines()[0]


def test_a_row_that_did_not_converge_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-iter 1: the reference optima are still certified, but no row is; the table says
    so per row, one line names the rows, and the exit status is 1."""
    out = tmp_path / "short"
    code = simulate.main([*SMALL, "--out", str(out), "--max-iter", "1"])
    captured = capsys.readouterr()
    assert code == 1
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("not converged: 4 of 4 configurations")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["converged"] is False
    for run in summary["runs"]:
        assert run["converged"] is False and run["certified"] is False
        assert run["reference_certified"] is True and run["status"] == "max_iter"
    rows = [line for line in captured.out.splitlines() if line.startswith(("etf", "learnable"))]
    assert len(rows) == 4 and all("max_iter" in row for row in rows)
    assert all(" yes " not in row.split("max_iter")[0] for row in rows)


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
        assert run["lower_bound"] == 0.0 and run["gap"] == run["objective"]
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
    json.loads((out / "run.json").read_text())  # whatever exists is whole
    yaml.safe_load((out / "config.yaml").read_text())


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
    for run in summary["runs"]:  # two-sided: never below the certified lower bound
        assert -ROUNDING * max(1.0, abs(run["lower_bound"])) <= run["gap"] <= 1e-9
    assert runs["learnable", "ce"]["relative_gap"] <= 1e-6
    assert runs["learnable", "ce"]["metrics"]["minority_cosine_w"] > 0.99  # minority collapse
    assert runs["etf", "ce"]["metrics"]["minority_cosine_w"] == pytest.approx(-1 / 9)
