"""ufm.sweeps: each sweep is a run folder of kind "sweep" (config = parameters, summary =
results), reused while its parameters match, computed again when they change or the folder is
corrupt or unfinished; the small size equals a direct computation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ufm.runfolder import CONFIG, RUN, SUMMARY, read_run
from ufm.runtime import torch_threads
from ufm.sweeps import SWEEPS, Sweep, run_sweep, sweep_folder
from ufm.sweeps.__main__ import main


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """A registered sweep "toy" that records its calls: results = {"value": 2 x}."""
    calls: list[dict] = []

    def compute(params: dict) -> dict:
        calls.append(params)
        return {"value": [2 * params["x"]], "pair": (1, 2)}

    sizes = {"default": {"x": 1, "tol": 1e-9}, "small": {"x": 2, "tol": 1e-9}}
    monkeypatch.setitem(SWEEPS, "toy", Sweep("toy", "a toy", sizes, compute))
    return calls


def test_a_sweep_is_a_run_folder_of_kind_sweep(toy: list[dict], tmp_path: Path) -> None:
    folder = run_sweep("toy", size="small", cache_dir=tmp_path, command=["x"])
    assert folder == sweep_folder("toy", "small", tmp_path) == tmp_path / "toy-small"
    assert sorted(p.name for p in folder.iterdir()) == sorted([RUN, CONFIG, SUMMARY])
    run = read_run(folder)
    assert (run.kind, run.name, run.run["command"]) == ("sweep", "toy", ["x"])
    assert run.config == {"x": 2, "tol": 1e-9}
    assert run.summary == {"value": [4], "pair": [1, 2]}
    assert run_sweep("toy", cache_dir=tmp_path) == tmp_path / "toy"


def test_a_folder_with_the_same_parameters_is_reused(toy: list[dict], tmp_path: Path) -> None:
    lines: list[str] = []
    run_sweep("toy", cache_dir=tmp_path)
    run_sweep("toy", cache_dir=tmp_path, echo=lines.append)
    assert len(toy) == 1
    assert lines == [f"cached: {tmp_path / 'toy'}"]
    run_sweep("toy", cache_dir=tmp_path, recompute=True)
    assert len(toy) == 2


def test_new_parameters_are_computed_again(
    toy: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_sweep("toy", cache_dir=tmp_path)
    monkeypatch.setitem(SWEEPS["toy"].sizes, "default", {"x": 5, "tol": 1e-9})
    folder = run_sweep("toy", cache_dir=tmp_path)
    assert len(toy) == 2
    assert read_run(folder).summary == {"value": [10], "pair": [1, 2]}


@pytest.mark.parametrize("damage", ["corrupt-summary", "unfinished", "corrupt-run", "old-cache"])
def test_a_corrupt_or_unfinished_folder_is_computed_again(
    damage: str, toy: list[dict], tmp_path: Path
) -> None:
    folder = run_sweep("toy", cache_dir=tmp_path)
    if damage == "corrupt-summary":
        (folder / SUMMARY).write_text("{not json")
    elif damage == "unfinished":
        (folder / SUMMARY).unlink()
    elif damage == "corrupt-run":
        (folder / RUN).write_text("[]")
    else:  # the cache file of sweeps before run folders: neither read nor kept
        for name in (RUN, CONFIG, SUMMARY):
            (folder / name).unlink()
        (folder / "data.json").write_text(json.dumps({"params": {"x": 1}, "results": {}}))
    run_sweep("toy", cache_dir=tmp_path)
    assert len(toy) == 2
    assert read_run(folder).summary == {"value": [2], "pair": [1, 2]}
    assert not (folder / "data.json").exists()


@pytest.mark.parametrize("name", list(SWEEPS))
def test_small_results_equal_a_direct_computation(name: str, tmp_path: Path) -> None:
    sweep = SWEEPS[name]
    folder = run_sweep(name, size="small", cache_dir=tmp_path)
    with torch_threads(1):
        direct = sweep.compute(sweep.sizes["small"])
    assert read_run(folder).summary == json.loads(json.dumps(direct))
    assert read_run(folder).config == json.loads(json.dumps(sweep.sizes["small"]))


def test_command_line(toy: list[dict], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["toy", "--size", "small", "--cache-dir", str(tmp_path)]) == 0
    assert main(["toy", "--size", "small", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("toy: computed in ") and out[1].startswith("toy: cached: ")
    assert main(["toy", "--threads", "0", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --threads must be >= 1") and "Traceback" not in err
