"""Figures refuse cut or padded CSV rows (naming file and line) and unusable --out places."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from figures.__main__ import main
from tests.figures.conftest import write_deep_run


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("figures"))
    return dst


@pytest.mark.parametrize("cut", ["mid-number", "mid-row"])
def test_a_history_cut_mid_row_is_refused(ufm_run, tmp_path, capsys, cut) -> None:
    run = _copy(ufm_run, tmp_path / "run")
    history = run / "history.csv"
    text = history.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    lines = text.count("\n")
    if cut == "mid-number":  # 9.9e-10 read as 9.9: every field present, the last one cut
        history.write_text(text.rstrip("\n")[: len(text.rstrip("\n")) - 4])
        expected = f"line {lines}: the last row is cut short"
    else:  # a row of three fields, then the file goes on
        history.write_text(text + ",".join(last.split(",")[:3]) + "\n")
        expected = f"line {lines + 1}: 3 fields where the header has 5"
    assert main([str(run), "--out", str(tmp_path / "figs")]) == 2
    line = _one_error(capsys)
    assert str(history) in line and expected in line
    assert not (tmp_path / "figs").exists()


def test_a_metrics_row_with_extra_fields_is_refused(tmp_path, capsys) -> None:
    run = write_deep_run(tmp_path / "deep", "etf", "dr")
    metrics = run / "metrics.csv"
    lines = metrics.read_text().splitlines()
    lines[2] += ",0.5"
    metrics.write_text("\n".join(lines) + "\n")
    assert main([str(run), "--out", str(tmp_path / "figs")]) == 2
    line = _one_error(capsys)
    assert f"{metrics}, line 3" in line and "fields where the header has" in line


def test_an_out_that_is_a_file_or_unwritable(ufm_run, tmp_path, capsys) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    for out, message in ((a_file, "is a file, not a folder"), ("/proc/x", "cannot write there")):
        assert main([str(ufm_run), "--out", str(out)]) == 2
        assert message in _one_error(capsys)
    assert a_file.read_text() == "mine"
