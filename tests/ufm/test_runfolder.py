"""ufm.runfolder: the run-folder convention, its writers, its one reader and the figure seam."""

from __future__ import annotations

import json
import math
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest

from ufm import runfolder
from ufm.runfolder import (
    RunFolderError,
    draw_figures,
    history_name,
    read_run,
    run_kind,
    start_run,
    write_geometry,
    write_history,
    write_summary,
)


def _finished(path: Path, kind: str = "ufm") -> Path:
    start_run(path, kind, {"seed": 3, "losses": ("ce", "dr")}, command=["python", "-m", "x"])
    write_history(path, [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": None, "acc": 0.9}])
    write_geometry(path, {"cosine_w": np.eye(3)})
    write_summary(path, {"value": float("nan"), "runs": [1, 2], "array": np.arange(2)})
    return path


def test_round_trip(tmp_path):
    run = read_run(_finished(tmp_path / "r", "deep"))
    assert (run.kind, run.format, run.name) == ("deep", 1, None)
    assert run.run["command"] == ["python", "-m", "x"] and "version" in run.run
    assert run.config == {"seed": 3, "losses": ["ce", "dr"]}
    assert run.summary == {"value": None, "runs": [1, 2], "array": [0, 1]}  # NaN -> null
    assert run.history.rows[0] == {"epoch": "1", "loss": "0.5", "acc": ""}
    assert math.isnan(run.history.column("loss")[1]) and run.history.column("acc")[1] == 0.9
    np.testing.assert_array_equal(run.geometry["cosine_w"], np.eye(3))
    assert run.finished


def test_run_json_is_written_first_and_summary_last(tmp_path):
    start_run(tmp_path, "sweep", "a: 1\n", name="minority-collapse")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "run.json"]
    run = read_run(tmp_path)
    assert (run.kind, run.name, run.config) == ("sweep", "minority-collapse", {"a": 1})
    assert not run.finished
    with pytest.raises(RunFolderError, match="has not finished"):
        _ = run.summary


def test_unknown_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="run kind"):
        start_run(tmp_path, "other", {})


def test_legacy_ufm_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"config": {"seed": 1}, "version": {}}))
    (tmp_path / "history.csv").write_text("configuration,iteration\netf+ce,0\n")
    (tmp_path / "summary.json").write_text('{"runs": []}')
    run = read_run(tmp_path)
    assert (run.kind, run.format, run.config, run.summary) == ("ufm", 0, {"seed": 1}, {"runs": []})
    assert run.history.rows == [{"configuration": "etf+ce", "iteration": "0"}]


def test_legacy_deep_folder(tmp_path):
    (tmp_path / "config.yaml").write_text("seed: 2\n")
    (tmp_path / "metrics.csv").write_text("epoch,loss\n1,0.25\n")
    run = read_run(tmp_path)
    assert (run.kind, run.format, run.config) == ("deep", 0, {"seed": 2})
    assert run.history.path.name == "metrics.csv" and run.history.column("loss")[0] == 0.25
    assert history_name(tmp_path) == "metrics.csv"  # a legacy run goes on in its own table
    assert history_name(_finished(tmp_path / "new", "deep")) == "history.csv"


def test_not_a_run_folder(tmp_path):
    with pytest.raises(RunFolderError, match="not a folder"):
        run_kind(tmp_path / "absent")
    with pytest.raises(RunFolderError, match="not a run folder"):
        run_kind(tmp_path)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("run.json", "{not json", "run.json is not valid JSON"),
        ("run.json", '{"kind": "nope", "format": 1}', "expected a mapping with a kind"),
        ("run.json", '{"kind": "ufm", "format": 7}', "format 7"),
        ("summary.json", '{"runs": [', "summary.json is not valid JSON"),
        ("summary.json", "[1, 2]", "expected a mapping of results"),
        ("history.csv", "epoch,loss\n1,0.5\n2", "line 3: the last row is cut short"),
        ("history.csv", "epoch,loss\n1,0.5,7\n", "line 2: 3 fields where the header has 2"),
        ("config.yaml", "a: [1,\n", "not valid YAML"),
        ("geometry.npz", "not a zip", "not a readable geometry file"),
    ],
)
def test_corrupt_files_are_one_clear_error(tmp_path, name, text, message):
    run_dir = _finished(tmp_path / "r")
    (run_dir / name).write_text(text)
    with pytest.raises(RunFolderError, match=message) as err:
        run = read_run(run_dir)
        run.config, run.summary, run.history, run.geometry  # noqa: B018
    assert "\n" not in str(err.value) and str(run_dir) in str(err.value)


def test_missing_pieces_name_the_file(tmp_path):
    run_dir = _finished(tmp_path / "r")
    (run_dir / "history.csv").unlink()
    (run_dir / "geometry.npz").unlink()
    run = read_run(run_dir)
    with pytest.raises(RunFolderError, match=r"history\.csv is missing"):
        _ = run.history
    with pytest.raises(RunFolderError, match=r"geometry\.npz is missing"):
        _ = run.geometry
    with pytest.raises(RunFolderError, match="column 'absent' is missing"):
        read_run(_finished(tmp_path / "s")).history.column("absent")
    with pytest.raises(RunFolderError, match="key 'counts' is missing"):
        run.key(run.summary, "counts")


def _fake_draw(path: Path) -> list[Path]:
    out = Path(path) / "figures" / "fake.png"
    out.parent.mkdir()
    out.write_bytes(b"png")
    return [out]


def _failing_draw(path: Path) -> list[Path]:
    raise RunFolderError(f"{path}: column 'x' is missing")


def _entry_points(monkeypatch, value: str | None) -> None:
    found = [] if value is None else [EntryPoint("ufm", value, runfolder.FIGURE_ENTRY_POINTS)]
    monkeypatch.setattr(runfolder, "entry_points", lambda **_: found)


def test_draw_figures_through_an_entry_point(tmp_path, monkeypatch):
    run_dir = _finished(tmp_path / "r")
    _entry_points(monkeypatch, f"{__name__}:_fake_draw")
    lines: list[str] = []
    assert draw_figures(run_dir, echo=lines.append) == [run_dir / "figures" / "fake.png"]
    assert lines == [f"figures: {run_dir / 'figures'} (1 files)"]


def test_draw_figures_without_an_entry_point(tmp_path, monkeypatch):
    run_dir = _finished(tmp_path / "r")
    _entry_points(monkeypatch, None)
    lines: list[str] = []
    assert draw_figures(run_dir, echo=lines.append) == []
    assert len(lines) == 1 and lines[0].startswith("figures: not drawn (")
    assert lines[0].endswith(f"draw them with python -m figures {run_dir}")


def test_a_failing_figure_costs_one_line(tmp_path, monkeypatch):
    run_dir = _finished(tmp_path / "r")
    _entry_points(monkeypatch, f"{__name__}:_failing_draw")
    lines: list[str] = []
    assert draw_figures(run_dir, echo=lines.append) == []
    assert lines == [
        f"figures: not drawn ({run_dir}: column 'x' is missing); draw them with python -m "
        f"figures {run_dir}"
    ]
    assert draw_figures(run_dir, echo=None) == []  # silent
