"""ufm.simulate and proofs_checks refuse bad selections and output places before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

import proofs_checks.__main__ as checks_cli
from ufm import simulate

SMALL = ["--n-max", "60", "--imbalance", "4", "--classes", "3", "--dim", "4", "--no-figures"]


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _never(*args, **kwargs):
    raise AssertionError("work started before the output place was checked")


def test_simulate_never_writes_into_another_runs_folder(tmp_path, capsys, monkeypatch) -> None:
    deep_run = tmp_path / "deep-run"
    (deep_run / "checkpoints").mkdir(parents=True)
    (deep_run / "summary.json").write_text('{"best_test_acc": 0.9}')
    monkeypatch.setattr(simulate, "run_configuration", _never)
    assert simulate.main([*SMALL, "--out", str(deep_run)]) == 2
    assert "exists and is not empty" in _one_error(capsys)
    assert (deep_run / "summary.json").read_text() == '{"best_test_acc": 0.9}'
    assert sorted(p.name for p in deep_run.iterdir()) == ["checkpoints", "summary.json"]


@pytest.mark.parametrize("kind", ["file", "proc"])
def test_simulate_out_that_is_not_a_folder(tmp_path, capsys, monkeypatch, kind) -> None:
    target = tmp_path / "notes.txt" if kind == "file" else Path("/proc/nc-verify-x")
    if kind == "file":
        target.write_text("mine")
    monkeypatch.setattr(simulate, "run_configuration", _never)
    assert simulate.main([*SMALL, "--out", str(target)]) == 2
    assert ("is a file" if kind == "file" else "cannot write there") in _one_error(capsys)
    if kind == "file":
        assert target.read_text() == "mine"


@pytest.mark.parametrize("flag", ["--losses", "--classifiers"])
@pytest.mark.parametrize("value", [",", " , ,", ""])
def test_simulate_empty_selection_is_refused(tmp_path, capsys, flag, value) -> None:
    out = tmp_path / "run"
    assert simulate.main([*SMALL, flag, value, "--out", str(out)]) == 2
    assert f"{flag} selects nothing" in _one_error(capsys)
    assert not out.exists()


def test_simulate_prints_a_line_per_configuration(tmp_path, capsys) -> None:
    assert simulate.main([*SMALL, "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    for name in ("etf+ce", "etf+dr", "learnable+ce", "learnable+dr"):
        assert f"  {name}: " in out and "iterations" in out


def test_simulate_prints_progress_during_a_long_solve(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(simulate, "PROGRESS_SECONDS", 0.0)  # every iteration counts as long
    args = [*SMALL, "--classifiers", "etf", "--losses", "ce", "--out", str(tmp_path / "run")]
    assert simulate.main(args) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "iteration " in ln]
    assert lines and lines[0].startswith("  etf+ce: iteration ") and "objective" in lines[0]
    cfg = simulate.parse_args([*SMALL, "--out", str(tmp_path / "lib")])
    simulate.run_simulation(cfg, echo=False)  # the library call prints nothing
    assert capsys.readouterr().out == ""


def test_simulate_help_shows_the_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        simulate.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in (("--seed", "0"), ("--max-iter", "20000"), ("--profile", "exp")):
        assert f"(default: {default})" in text.split(flag, 2)[-1].split("--", 1)[0], flag
    assert "(default: float64)" in text


@pytest.mark.parametrize("value", [",", " ,"])
def test_proofs_checks_empty_only_is_refused(capsys, monkeypatch, value) -> None:
    monkeypatch.setattr(checks_cli, "run_checks", _never)
    assert checks_cli.main(["--only", value]) == 2
    assert "--only names no check" in _one_error(capsys)


def test_proofs_checks_json_place_is_checked_before_the_checks(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(checks_cli, "run_checks", _never)
    for target, message in (
        (tmp_path, "is a folder"),
        (Path("/proc/nc-verify-x/out.json"), "cannot write there"),
    ):
        assert checks_cli.main(["--only", "etf_geometry", "--json", str(target)]) == 2
        assert message in _one_error(capsys)
