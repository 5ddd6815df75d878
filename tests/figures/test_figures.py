"""Every figure function on small fixture run folders: non-empty PNG and PDF, and a clear
FigureDataError (never a traceback from the command line) when a folder lacks something."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from figures import __main__ as cli
from figures.runs import FigureDataError, detect_kind, load_deep_run, load_ufm_run
from figures.simulation import draw_ufm_run
from figures.style import new_figure, save_figure
from figures.sweep_figures import SWEEP_FIGURES, draw_sweep_folder, draw_sweeps
from figures.training import compare_folder, draw_deep_run, draw_training_runs
from tests.figures.conftest import write_deep_run
from ufm.runfolder import SUMMARY, read_run


def assert_figures(paths: list[Path], names: set[str]) -> None:
    """Both formats of every name exist, with the right magic bytes and some content."""
    assert {p.stem for p in paths} == names
    for path in paths:
        data = path.read_bytes()
        magic = b"\x89PNG" if path.suffix == ".png" else b"%PDF"
        assert data.startswith(magic), path
        assert len(data) > 2000, path
    assert sorted(p.suffix for p in paths) == [".pdf"] * len(names) + [".png"] * len(names)


def test_save_figure_writes_png_and_pdf(tmp_path: Path) -> None:
    fig = new_figure(3.0, 2.0)
    fig.subplots().plot([0, 1], [1, 0])
    assert_figures(save_figure(fig, tmp_path, "line"), {"line"})
    assert not list(tmp_path.glob(".*.tmp"))


def test_ufm_run_figures(ufm_run: Path, tmp_path: Path) -> None:
    paths = draw_ufm_run(ufm_run, tmp_path)
    assert_figures(paths, {"ufm_convergence", "ufm_geometry"})


def test_ufm_run_geometry_matches_the_summary(ufm_run: Path) -> None:
    run = load_ufm_run(ufm_run)
    for name in run.names:
        cos = run.geometry[name]["cosine_w"]
        minority = run.minority
        block = cos[np.ix_(minority, minority)][~np.eye(len(minority), dtype=bool)]
        metrics = run.entry(name)["metrics"]
        assert block.mean() == pytest.approx(metrics["minority_cosine_w"], abs=1e-12)


def test_ufm_run_without_geometry_draws_convergence_then_says_so(
    ufm_run: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old-run"
    shutil.copytree(ufm_run, old)
    (old / "geometry.npz").unlink()
    with pytest.raises(FigureDataError, match=r"geometry\.npz is missing"):
        draw_ufm_run(old)
    assert (old / "figures" / "ufm_convergence.png").is_file()


def test_unfinished_ufm_run_is_a_clear_error(ufm_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "running"
    shutil.copytree(ufm_run, run)
    (run / "summary.json").unlink()
    with pytest.raises(FigureDataError, match=r"summary\.json is missing"):
        draw_ufm_run(run)


def test_simulate_draws_its_own_figures(tmp_path: Path) -> None:
    from ufm.simulate import SimulateConfig, run_simulation

    cfg = SimulateConfig(imbalance=4, classes=4, n_max=40, dim=6, out=str(tmp_path / "r"))
    cfg.losses, cfg.classifiers = ("ce",), ("etf", "learnable")
    run_dir, _ = run_simulation(cfg, echo=False)
    names = {p.stem for p in (run_dir / "figures").iterdir()}
    assert names == {"ufm_convergence", "ufm_geometry"}


def test_training_figures_compare_runs(deep_runs: list[Path], tmp_path: Path) -> None:
    paths = draw_training_runs(deep_runs, tmp_path)
    assert_figures(paths, {"training_accuracy", "training_nc", "training_per_class"})


def test_one_training_run_draws_into_its_folder(deep_runs: list[Path], tmp_path: Path) -> None:
    run = tmp_path / "one"
    shutil.copytree(deep_runs[0], run)
    paths = draw_deep_run(run)
    assert {p.parent for p in paths} == {run / "figures"}
    assert_figures(paths, {"training_accuracy", "training_nc", "training_per_class"})


def test_training_run_without_nc_metrics_is_a_clear_error(tmp_path: Path) -> None:
    run = write_deep_run(tmp_path / "no-nc", "etf", "dr")
    lines = (run / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, col in enumerate(header) if col not in ("nc1", "etf_distance")]
    text = "\n".join(",".join(line.split(",")[i] for i in keep) for line in lines)
    (run / "metrics.csv").write_text(text + "\n")
    with pytest.raises(FigureDataError, match="no column nc1, etf_distance"):
        draw_training_runs([run], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing drawn from an incomplete set


def test_training_runs_on_different_classes_are_refused(tmp_path: Path) -> None:
    a = write_deep_run(tmp_path / "a", "etf", "dr")
    b = write_deep_run(tmp_path / "b", "linear", "ce", counts=[500] * 10)
    with pytest.raises(FigureDataError, match="different class counts"):
        draw_training_runs([a, b], tmp_path / "out")


def test_same_label_runs_are_told_apart(tmp_path: Path) -> None:
    runs = [write_deep_run(tmp_path / f"seed{s}", "etf", "dr", seed=s) for s in (0, 1)]
    labels = [load_deep_run(r).label for r in runs]
    assert labels == ["ETF + DR", "ETF + DR"]
    from figures.training import _labels

    assert _labels([load_deep_run(r) for r in runs]) == ["ETF + DR (seed0)", "ETF + DR (seed1)"]


def test_detect_kind(ufm_run: Path, deep_runs: list[Path], tmp_path: Path) -> None:
    assert detect_kind(ufm_run) == "ufm"
    assert detect_kind(deep_runs[0]) == "deep"
    with pytest.raises(FigureDataError, match="not a run folder"):
        detect_kind(tmp_path)
    with pytest.raises(FigureDataError, match="not a folder"):
        detect_kind(tmp_path / "absent")


@pytest.mark.parametrize("name", list(SWEEP_FIGURES))
def test_sweep_small_is_computed_once_then_drawn_from_its_folder(
    name: str, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    cache = tmp_path / "cache"
    paths = draw_sweeps([name], size="small", cache_dir=cache, out=lambda n: tmp_path / "out")
    assert paths
    assert_figures(paths, {p.stem for p in paths})
    folder = cache / f"{name}-small"
    assert (read_run(folder).kind, read_run(folder).name) == ("sweep", name)
    assert f"{name}: computed in" in capfd.readouterr().out
    again = draw_sweeps([name], size="small", cache_dir=cache, out=lambda n: tmp_path / "again")
    assert {p.name for p in again} == {p.name for p in paths}
    assert f"{name}: cached: {folder}" in capfd.readouterr().out


def test_sweep_figures_are_drawn_from_the_folder_alone(tmp_path: Path) -> None:
    draw_sweeps(["geometry"], size="small", cache_dir=tmp_path)
    folder = tmp_path / "geometry-small"
    assert {p.name for p in draw_sweep_folder("geometry", folder)} == {
        "geometry_k3_k4.png",
        "geometry_k3_k4.pdf",
    }
    assert (folder / "figures" / "geometry_k3_k4.png").is_file()
    (folder / SUMMARY).unlink()
    with pytest.raises(FigureDataError, match="has not finished"):
        draw_sweep_folder("geometry", folder)
    with pytest.raises(FigureDataError, match="not a run folder of the sweep 'seli'"):
        draw_sweep_folder("seli", tmp_path / "geometry-small")


def test_cli_draws_runs_and_sweeps(
    ufm_run: Path, deep_runs: list[Path], tmp_path: Path, capsys
) -> None:
    out = tmp_path / "figs"
    argv = [str(ufm_run), *map(str, deep_runs), "--out", str(out)]
    argv += ["--sweep", "geometry", "--size", "small", "--cache-dir", str(tmp_path / "c")]
    assert cli.main(argv) == 0
    assert (out / ufm_run.name / "ufm_geometry.pdf").is_file()
    assert (out / "training" / "training_nc.png").is_file()
    assert (out / "geometry" / "geometry_k3_k4.png").is_file()
    assert "training_accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["empty-folder", "missing-summary", "nothing-asked"])
def test_cli_errors_are_one_line(case: str, ufm_run: Path, tmp_path: Path, capsys) -> None:
    if case == "empty-folder":
        argv = [str(tmp_path)]
    elif case == "missing-summary":
        run = tmp_path / "run"
        shutil.copytree(ufm_run, run)
        (run / "summary.json").unlink()
        argv = [str(run)]
    else:
        argv = []
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_compare_folder_names_the_runs(tmp_path: Path) -> None:
    folder = compare_folder([tmp_path / "a", tmp_path / "b"], base=tmp_path)
    assert folder == tmp_path / "a_vs_b"
