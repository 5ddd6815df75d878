"""What a newcomer trips over: threads, progress on a log file, help text, resumed commands,
and deep.table's validation and exit status."""

from __future__ import annotations

import json

import pytest
import torch

from deep import loop, table
from deep.train import build_parser, main
from tests.deep.test_table import _plan, _write_run
from tests.deep.test_train import _args
from ufm.runtime import default_threads


def test_threads_default_to_half_the_cpus_and_are_recorded(idx_root, tmp_path, capsys) -> None:
    assert default_threads(processes=1) >= 1
    assert default_threads(processes=10**6) == 1
    before = torch.get_num_threads()
    out = tmp_path / "run"
    assert main(_args("fashion-mnist", idx_root, out, "--epochs", "1", "--threads", "1")) == 0
    assert "(1 thread)" in capsys.readouterr().out  # the header says how many
    summary = json.loads((out / "summary.json").read_text())
    assert summary["environment"]["threads"] == 1
    assert "threads: 1" in (out / "config.yaml").read_text()  # a resume uses the same number
    assert torch.get_num_threads() == before  # the caller's setting is given back
    assert main(_args("fashion-mnist", idx_root, tmp_path / "r2", "--threads", "0")) == 2
    assert "run.threads must be >= 1" in capsys.readouterr().err


def test_progress_lines_when_stderr_is_not_a_terminal(idx_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(loop, "PLAIN_PROGRESS_SECONDS", 0.0)
    args = [a for a in _args("fashion-mnist", idx_root, tmp_path / "r", "--epochs", "1")]
    args.remove("--no-progress")
    assert main(args) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("epoch 1/1: ")]
    assert lines and "step 1/" in lines[0] and "loss " in lines[0]
    assert main([*_args("fashion-mnist", idx_root, tmp_path / "q", "--epochs", "1")]) == 0
    assert "epoch 1/1: step" not in capsys.readouterr().err  # --no-progress: silent


def test_help_names_where_the_defaults_come_from() -> None:
    text = " ".join(build_parser().format_help().split())
    for flag in ("--epochs", "--lr", "--seed", "--batch-size", "--dataset"):
        after = text.split(flag, 2)[-1].split(" --", 1)[0]
        assert "(default: from the preset;" in after, flag
    assert "--print-config shows every value" in text
    assert "half the CPUs" in text


def test_table_help_shows_its_defaults() -> None:
    text = " ".join(table.build_parser().format_help().split())
    assert "(default: all)" in text and "(default: 3)" in text


def test_a_resumed_summary_names_both_commands(idx_root, tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    first = _args("fashion-mnist", idx_root, out, "--epochs", "2")

    calls = []

    def interrupted_in_epoch_two(s):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second epoch
        return real(s)

    real = loop.run_epoch
    monkeypatch.setattr(loop, "run_epoch", interrupted_in_epoch_two)
    assert main(first) == 130
    monkeypatch.setattr(loop, "run_epoch", real)
    assert main(["--resume", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_test_acc_chosen_on"] == "test"
    # The papers' shot groups beside the thirds: counts 12 ... 2 here, so all few-shot.
    assert summary["groups"]["few_shot"] == list(range(10)) and summary["groups"]["many_shot"] == []
    assert summary["group_acc"]["few_shot"] == pytest.approx(summary["last_test_acc"])
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert {"many_shot_acc", "medium_shot_acc", "few_shot_acc"} <= set(header)
    env = summary["environment"]
    assert "--no-figures" in env["command"].split() and "--epochs 2" in env["command"]
    assert env["resume_command"] == f"python -m deep.train --resume {out}"
    assert not (out / "figures").exists()  # --no-figures of the first command still holds


def test_table_validates_every_cell_before_running_any(tmp_path, capsys, monkeypatch) -> None:
    def never(*args, **kwargs):
        raise AssertionError("a cell ran")

    monkeypatch.setattr(table, "run_cells", never)
    root = tmp_path / "t"
    assert table.main(["--set", "optim.lr=abc", "--root", str(root), "--methods", "ce"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optim.lr must be float, got 'abc'" in err[0]
    assert not root.exists()
    assert table.main(["--seeds", "0", "--root", str(root), "--dry-run"]) == 2
    assert "for seed 0 alone pass --seeds 0," in capsys.readouterr().err
    assert table.main(["--seeds", "0,", "--methods", "ce", "--root", str(root), "--dry-run"]) == 0
    assert table.main(["--root", "/proc/x", "--methods", "ce"]) == 2
    assert "--root /proc/x: cannot write there" in capsys.readouterr().err


def test_table_fails_when_every_cell_conflicts(tmp_path, capsys) -> None:
    plan = _plan(tmp_path, methods=("ce",), seeds=(0, 1))
    for cell in plan.cells():
        _write_run(plan, cell, None, preset="paper")
    args = ["--methods", "ce", "--seeds", "2", "--root", str(tmp_path), "--preset", "quick"]
    assert table.main(args) == 1
    assert "every cell's folder" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["-h"], ["--help"]])
def test_benchmarks_help(argv, capsys) -> None:
    from benchmarks.__main__ import main as bench

    assert bench(argv) == 0
    out = capsys.readouterr().out
    assert "usage: python -m benchmarks" in out and "ufm_solvers" in out


def test_hold_out_is_balanced_disjoint_and_seeded() -> None:
    from deep.longtail import hold_out

    labels = torch.tensor([0] * 10 + [1] * 4 + [2] * 7)[torch.randperm(21)]
    pool, held = hold_out(labels, 3, seed=5)
    assert torch.bincount(labels[held]).tolist() == [3, 3, 3]
    assert set(pool.tolist()).isdisjoint(held.tolist())
    assert sorted(pool.tolist() + held.tolist()) == list(range(21))
    again, held_again = hold_out(labels, 3, seed=5)
    assert torch.equal(held, held_again) and torch.equal(pool, again)
    assert not torch.equal(held, hold_out(labels, 3, seed=6)[1])
    pool0, held0 = hold_out(labels, 0, seed=5)
    assert torch.equal(pool0, torch.arange(21)) and len(held0) == 0
    with pytest.raises(ValueError, match=r"class 1 \(4 training images\) nothing to train on"):
        hold_out(labels, 4, seed=5)


def test_a_validation_split_chooses_the_best_epoch(idx_root, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    extra = ["--epochs", "2", "--set", "data.val_per_class=3"]
    assert main(_args("fashion-mnist", idx_root, out, *extra)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert max(summary["counts"]) == 12 - 3  # held out before the subset is drawn
    rows = (out / "history.csv").read_text().splitlines()
    header = rows[0].split(",")
    val = [float(r.split(",")[header.index("val_acc")]) for r in rows[1:]]
    test = [float(r.split(",")[header.index("test_acc")]) for r in rows[1:]]
    best = max(range(2), key=lambda i: val[i])
    assert summary["best_val_acc"] == pytest.approx(val[best])
    assert summary["best_val_epoch"] == best + 1
    assert summary["test_acc_at_best_val"] == pytest.approx(test[best])
    assert (
        main(_args("fashion-mnist", idx_root, tmp_path / "r2", "--set", "data.val_per_class=12"))
        == 2
    )
    assert "nothing to train on" in capsys.readouterr().err


def test_without_a_validation_split_the_subset_is_unchanged(idx_root, tmp_path) -> None:
    """val_per_class = 0 draws the very same training subset as before the option existed."""
    from deep.config import resolve_config
    from deep.distributed import DistInfo
    from deep.longtail import longtail_indices
    from deep.session import build_session

    cfg = resolve_config("quick", [{"data.root": str(idx_root), "data.verify": False,
                                    "data.download": False, "data.imbalance": 5.0,
                                    "optim.batch_size": 16}])  # fmt: skip
    s = build_session(cfg, DistInfo(), torch.device("cpu"))
    assert s.val is None
    chosen = longtail_indices(s.data.train_labels, s.counts, cfg.data.subset_seed)
    assert torch.equal(s.train.labels, s.data.train_labels[chosen])
    assert torch.equal(s.train.images, s.data.train_images[chosen])
