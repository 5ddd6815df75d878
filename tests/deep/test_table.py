"""python -m deep.table: dry-run commands, aggregation of synthetic run folders (mean ± std, n,
missing and conflicting cells), and a real table of two methods on tiny data."""

from __future__ import annotations

import csv
import json
import math
import shlex
from pathlib import Path

from deep.config import resolve_config
from deep.rundir import RunFolder
from deep.table import main
from deep.table_plan import Cell, Plan
from deep.table_results import inspect_cell, mean_std
from deep.train import build_parser as train_parser
from deep.train import resolve


def _plan(root: Path, **kw) -> Plan:
    base = {
        "datasets": ("fashion-mnist",),
        "imbalances": (100.0,),
        "methods": ("ce", "allnc", "ldam-drw"),
        "seeds": (0, 1, 2),
        "root": root,
        "preset": "quick",
    }
    return Plan(**(base | kw))


def _summary(acc: float, status: str = "finished", done: int = 20) -> dict:
    return {
        "status": status,
        "epochs_done": done,
        "epochs": 20,
        "last_test_acc": acc,
        "group_acc": {"head": acc + 0.1, "medium": acc, "tail": acc - 0.2},
        "nc": {"nc1": 10 * acc, "minority_cosine_w": -acc, "minority_cosine_h": acc / 2},
    }


def _write_run(plan: Plan, cell: Cell, summary: dict | None, preset: str | None = None) -> None:
    cfg = plan.expected_config(cell)
    if preset:  # a run of another configuration in the cell's folder
        cfg = resolve_config(preset, [{"run.out": cfg.run.out}])
    folder = RunFolder(plan.folder(cell).path)
    folder.create(cfg)
    if summary is not None:
        folder.write_summary(summary)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_mean_std_is_the_sample_statistics_of_the_finite_values() -> None:
    mean, std, n = mean_std([0.8, 0.7, 0.9, math.nan])
    assert n == 3 and math.isclose(mean, 0.8) and math.isclose(std, 0.1)
    assert math.isnan(mean_std([0.5])[1]) and mean_std([])[2] == 0


def test_dry_run_prints_one_training_command_per_cell(tmp_path, capsys) -> None:
    root = tmp_path / "table"
    args = ["--datasets", "fashion-mnist,cifar10", "--imbalance", "100,10", "--methods",
            "ce,allnc,logit-adjusted", "--seeds", "2", "--preset", "quick", "--root", str(root),
            "--dry-run"]  # fmt: skip
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * 2 * 3 * 2 and not root.exists()
    plan = _plan(root, datasets=("fashion-mnist", "cifar10"), imbalances=(100.0, 10.0),
                 methods=("ce", "allnc", "logit-adjusted"), seeds=(0, 1))  # fmt: skip
    for line, cell in zip(lines, plan.cells(), strict=True):
        argv = shlex.split(line)
        assert argv[1:3] == ["-m", "deep.train"]
        cfg, _ = resolve(train_parser().parse_args(argv[3:]))
        assert cfg == plan.expected_config(cell)
        assert (cfg.data.dataset, cfg.data.imbalance, cfg.run.seed) == (
            cell.dataset, cell.imbalance, cell.seed)  # fmt: skip
        assert cfg.run.out == str(root / cell.name) and cfg.preset == "quick"
    assert lines[0].endswith("--out " + str(root / "fashion-mnist-100-ce-s0") + " --no-progress")
    assert 'loss.options={"tau": 1.0}' in shlex.split(lines[2])


def test_dry_run_resumes_started_cells_and_flags_conflicting_ones(tmp_path, capsys) -> None:
    plan = _plan(tmp_path, methods=("ce",), seeds=(0, 1, 2))
    started, conflicting, _ = plan.cells()
    _write_run(plan, started, _summary(0.5, "running", 3))
    _write_run(plan, conflicting, None, preset="paper")
    args = ["--methods", "ce", "--root", str(tmp_path), "--preset", "quick", "--dry-run",
            "--nproc", "2"]  # fmt: skip
    assert main(args) == 0
    resume, conflict, fresh = capsys.readouterr().out.splitlines()
    assert shlex.split(resume)[1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "deep.train",
        "--resume", str(tmp_path / started.name), "--no-progress"]  # fmt: skip
    assert conflict.startswith(f"# {conflicting.name}: holds another configuration (")
    assert "--out " + str(tmp_path / "fashion-mnist-100-ce-s2") in fresh


def test_table_aggregates_finished_runs_and_lists_the_rest(tmp_path) -> None:
    plan = _plan(tmp_path)
    cells = {c.name: c for c in plan.cells()}
    for seed, acc in enumerate([0.8, 0.7, 0.9]):
        _write_run(plan, cells[f"fashion-mnist-100-ce-s{seed}"], _summary(acc))
    _write_run(plan, cells["fashion-mnist-100-allnc-s0"], _summary(0.6))
    _write_run(plan, cells["fashion-mnist-100-allnc-s1"], _summary(0.1, "running", 5))
    _write_run(plan, cells["fashion-mnist-100-ldam-drw-s0"], _summary(0.99), preset="paper")
    assert inspect_cell(plan, cells["fashion-mnist-100-ldam-drw-s0"]).status == "conflict"

    assert main(["--root", str(tmp_path), "--methods", "ce,allnc,ldam-drw", "--collect-only",
                 "--preset", "quick"]) == 0  # fmt: skip
    rows = {r["method"]: r for r in _read_csv(tmp_path / "results.csv")}
    ce, allnc, ldam = rows["ce"], rows["allnc"], rows["ldam-drw"]
    assert (ce["n"], ce["n_expected"], ce["seeds"]) == ("3", "3", "0 1 2")
    assert math.isclose(float(ce["overall_mean"]), 0.8)
    assert math.isclose(float(ce["overall_std"]), 0.1)
    assert math.isclose(float(ce["tail_mean"]), 0.6) and math.isclose(float(ce["nc1_std"]), 1.0)
    assert math.isclose(float(ce["minority_cos_w_mean"]), -0.8)
    assert (allnc["n"], allnc["overall_mean"], allnc["overall_std"]) == ("1", "0.6", "")
    assert (ldam["n"], ldam["overall_mean"]) == ("0", "")
    assert json.loads(rows["ce"]["options"]) == {}

    text = (tmp_path / "results.md").read_text()
    assert "| ce | 3/3 | 80.0 ± 10.0 | 90.0 ± 10.0 | 80.0 ± 10.0 | 60.0 ± 10.0 | 8 ± 1 |" in text
    assert "| allnc | 1/3 | 60.0 | 70.0 |" in text and "| ldam-drw | 0/3 | – |" in text
    assert "5 of 9 runs have not finished" in text
    assert "- `fashion-mnist-100-allnc-s1`: incomplete, 5 of 20 epochs" in text
    assert "- `fashion-mnist-100-allnc-s2`: missing, not started" in text
    assert "- `fashion-mnist-100-ldam-drw-s0`: conflict, holds another configuration (" in text
    runs = _read_csv(tmp_path / "runs.csv")
    assert len(runs) == 9 and {r["status"] for r in runs} == {
        "finished", "incomplete", "missing", "conflict"}  # fmt: skip


def test_bad_input_is_one_message(tmp_path, capsys) -> None:
    assert main(["--methods", "ce,focal", "--root", str(tmp_path), "--dry-run"]) == 2
    assert "unknown method 'focal'; choose one of:" in capsys.readouterr().err
    assert main(["--imbalance", "0.5", "--root", str(tmp_path), "--dry-run"]) == 2
    assert main(["--seeds", "1,1", "--root", str(tmp_path), "--dry-run"]) == 2
    assert "distinct seeds" in capsys.readouterr().err


def test_a_real_table_runs_resumes_and_tabulates(idx_root, tmp_path, capsys) -> None:
    root = tmp_path / "table"
    args = [
        "--methods", "ce,ldam-drw", "--imbalance", "4", "--seeds", "1", "--root", str(root),
        "--preset", "quick", "--data-root", str(idx_root), "--in-process",
        "--set", "data.verify=false", "--set", "data.download=false",
        "--set", "model.arch=resnet8", "--set", "optim.epochs=1", "--set", "optim.batch_size=16",
    ]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("deep.table: fashion-mnist-4-") == 2 and "None: all 2 runs finished." in out
    rows = _read_csv(root / "results.csv")
    assert [(r["method"], r["n"]) for r in rows] == [("ce", "1"), ("ldam-drw", "1")]
    assert all(0 <= float(r["overall_mean"]) <= 1 for r in rows)
    assert main(args) == 0  # everything finished: nothing runs again
    assert "deep.table: fashion-mnist-4-" not in capsys.readouterr().out


def test_the_collapse_preset_on_a_step_profile(tmp_path, capsys) -> None:
    plan = _plan(tmp_path, preset="collapse", profile="step", methods=("ce", "etf-dr"))
    cfg, _ = resolve(train_parser().parse_args(plan.train_args(plan.cells()[0])))
    assert cfg.preset == "collapse" and cfg.data.profile == "step"
    assert cfg.data.max_per_class == 100 and cfg.augment.mixup_alpha == 0
    assert cfg.optim.weight_decay == 5e-4 and cfg.run.test_every > 1
    argv = ["--preset", "collapse", "--profile", "exp", "--methods", "ce", "--seeds", "0,1"]
    assert main([*argv, "--root", str(tmp_path / "t"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("--profile exp" in line for line in lines)
