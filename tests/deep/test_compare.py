"""deep meets ufm: geometry.npz in run folders, deep.compare, its verdicts and figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from deep.compare import compare_run, run_comparison
from deep.compare import main as compare_main
from deep.config import config_from_dict
from deep.rundir import GEOMETRY_KEYS, RunFolder, load_geometry
from deep.train import main as train_main
from deep.verdicts import VERDICTS
from figures.collapse import draw_comparison
from ufm.metrics import last_layer_geometry
from ufm.prediction import etf_prediction

K = 10
MINORITY = list(range(5, 10))


def test_a_terminal_phase_run_writes_geometry_that_compare_reads(idx_root, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "--preset", "collapse", "--dataset", "fashion-mnist", "--data-root", str(idx_root),
        "--imbalance", "5", "--head", "linear", "--loss", "ce", "--epochs", "3",
        "--nc-every", "1", "--set", "data.max_per_class=10", "--set", "run.test_every=2",
        "--batch-size", "16",
        "--set", "data.verify=false", "--set", "data.download=false", "--out", str(out),
        "--no-progress", "--no-figures",
    ]  # fmt: skip
    assert train_main(args) == 0
    geometry = load_geometry(out)
    assert list(geometry["epoch"]) == [1, 2, 3]
    assert geometry["cosine_w"].shape == (3, K, K) and geometry["w"].shape[:2] == (3, K)
    assert list(geometry["counts"]) == [10] * 5 + [2] * 5
    np.testing.assert_allclose(np.diagonal(geometry["cosine_h"], axis1=1, axis2=2), 1.0)
    assert np.all(geometry["e_h"] > 0) and np.all(geometry["e_w"] > 0)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["terminal_phase"]) >= {"reached", "since_epoch"}
    assert 0.0 <= summary["train_acc"] <= 1.0
    rows = (out / "history.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "train_acc" in header and "train_eval_loss" in header
    test_col = header.index("test_acc")
    assert [r.split(",")[test_col] != "" for r in rows[1:]] == [False, True, True]

    result = compare_run(out, lpm_seconds=2.0)
    assert result["counts"] == [10] * 5 + [2] * 5 and result["minority"] == MINORITY
    for name, pred in result["predictions"].items():
        assert ("w" in pred) == pred["certified"], name  # no number from an uncertified one
    assert result["predictions"]["seli"]["certified"]

    cmp_dir = tmp_path / "cmp"
    assert compare_main([str(out), "--out", str(cmp_dir), "--lpm-seconds", "2"]) == 0
    assert "Verdicts" in capsys.readouterr().out
    saved = json.loads((cmp_dir / "comparison.json").read_text())
    assert saved["kind"] == "deep-compare" and len(saved["runs"]) == 1
    names = sorted(p.name for p in draw_comparison(cmp_dir))
    assert "minority_collapse_fashion-mnist.png" in names


def test_a_run_without_geometry_is_one_message(idx_root, tmp_path, capsys) -> None:
    folder = _fabricated(tmp_path / "old", "linear", 10, 0, *_geometry(0.0, -1 / 9))
    (folder / "geometry.npz").unlink()
    assert compare_main([str(folder), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no geometry.npz" in err[0]
    assert not (tmp_path / "o").exists()


def test_a_geometry_of_another_k_is_refused(tmp_path, capsys) -> None:
    folder = _fabricated(tmp_path / "mixed", "linear", 10, 0, *_geometry(0.0, -1 / 9))
    summary = json.loads((folder / "summary.json").read_text())
    summary["counts"] = summary["counts"][:8]
    (folder / "summary.json").write_text(json.dumps(summary))
    assert compare_main([str(folder), "--out", str(tmp_path / "o")]) == 2
    assert "K=10 classes" in capsys.readouterr().err


def test_verdicts_fail_on_runs_that_violate_them(tmp_path) -> None:
    # ETF + DR whose minority class means collapse, learnable + CE whose classifiers do not.
    bad = _sweep(tmp_path / "bad", etf_h=0.8, ce_w=(0.0, 0.0))
    good = _sweep(tmp_path / "good", etf_h=-1 / 9, ce_w=(0.0, 0.95))
    status = {
        name: {v["name"]: v["status"] for v in run_comparison(runs, (1.0, 5.0))["verdicts"]["fake"]}
        for name, runs in (("bad", bad), ("good", good))
    }
    assert set(status["bad"]) == set(VERDICTS)
    assert set(status["bad"].values()) <= {"PASS", "FAIL", "UNDECIDED"}
    assert status["bad"]["etf_minority_means_stay"] == "FAIL"
    assert status["good"]["etf_minority_means_stay"] == "PASS"
    assert status["bad"]["learnable_minority_rises"] == "FAIL"
    assert status["good"]["learnable_minority_rises"] == "PASS"
    assert status["bad"]["learnable_minority_collapses"] == "FAIL"
    assert status["good"]["learnable_minority_collapses"] == "PASS"


def test_the_fixed_head_prediction_is_the_etf(tmp_path) -> None:
    folder = _fabricated(tmp_path / "etf", "etf", 10, 0, *_geometry(-1 / 9, -1 / 9))
    result = compare_run(folder)
    etf = result["predictions"]["etf"]
    assert etf["certified"] and "w" not in etf  # a fixed head is the ETF by construction
    assert etf["h"]["max_abs"] < 1e-9
    np.testing.assert_allclose(etf["cosine_h"], etf_prediction(K).cosine_h)


# ----------------------------------------------------------------------------- fabricated runs


def _block_cosines(minority_cos: float) -> np.ndarray:
    """A (K, K) cosine target: ETF everywhere, `minority_cos` inside the minority block."""
    cos = np.where(np.eye(K, dtype=bool), 1.0, -1.0 / (K - 1))
    block = np.ix_(MINORITY, MINORITY)
    cos[block] = np.where(np.eye(len(MINORITY), dtype=bool), 1.0, minority_cos)
    return cos


def _rows_with_cosines(cos: np.ndarray) -> np.ndarray:
    """Rows (K, K+1) whose pairwise cosines are `cos` (nearest PSD), centred columns added."""
    vals, vecs = np.linalg.eigh(cos)
    rows = vecs * np.sqrt(np.clip(vals, 0, None))
    return np.hstack([rows, np.zeros((K, 1))])


def _geometry(w_cos: float, h_cos: float) -> tuple[np.ndarray, np.ndarray]:
    w = _rows_with_cosines(_block_cosines(w_cos))
    means = _rows_with_cosines(_block_cosines(h_cos))
    return w, means - means.mean(0)


def _fabricated(path: Path, head: str, ratio: float, seed: int, w, means) -> Path:
    counts = [100] * 5 + [max(int(100 / ratio), 1)] * 5
    cfg = config_from_dict(
        {"head": {"name": head}, "loss": {"name": "dr" if head == "etf" else "ce"}}
    )
    cfg.data.dataset, cfg.data.imbalance, cfg.run.seed = "fake", float(ratio), seed
    cfg.optim.weight_decay = 5e-4
    folder = RunFolder(path)
    folder.create(cfg)
    y = torch.repeat_interleave(torch.arange(K), torch.tensor(counts))
    h = torch.as_tensor(means)[y] * 3.0  # perfectly collapsed features
    geometry = last_layer_geometry(h, y, torch.as_tensor(w) * 2.0, num_classes=K)
    snapshot = {key: value.cpu() for key, value in geometry.items()}
    snapshot |= {"epoch": 50, "train_acc": 1.0, "train_acc_min_class": 1.0, "train_eval_loss": 0.0}
    folder.write_geometry([snapshot])
    summary = {
        "counts": counts,
        "minority": MINORITY,
        "dataset": "fake",
        "last_test_acc": 0.5,
        "nc": {"nc1": 0.01},
        "terminal_phase": {
            "reached": True,
            "since_epoch": 30,
            "nc1_at_start": 0.1,
            "nc1_last": 0.01,
        },
    }
    folder.write_summary(summary)
    assert set(GEOMETRY_KEYS) <= set(load_geometry(path))
    return path


def _sweep(root: Path, etf_h: float, ce_w: tuple[float, float]) -> list[Path]:
    runs = []
    for seed in (0, 1):
        for ratio, w_cos in zip((1, 100), ce_w, strict=True):
            jitter = 0.01 * seed
            runs.append(
                _fabricated(
                    root / f"ce-{ratio}-{seed}",
                    "linear",
                    ratio,
                    seed,
                    *_geometry(w_cos - jitter, 0.0),
                )
            )
            runs.append(
                _fabricated(
                    root / f"etf-{ratio}-{seed}", "etf", ratio, seed, *_geometry(-1 / 9, etf_h)
                )
            )
    return runs


def test_figures_of_a_sweep_need_its_comparison_first(tmp_path, capsys) -> None:
    from figures.__main__ import main as figures_main

    root = tmp_path / "sweep"
    _fabricated(root / "ce-10-0", "linear", 10, 0, *_geometry(0.0, -1 / 9))
    assert figures_main([str(root)]) == 2
    assert "python -m deep.compare" in capsys.readouterr().err
    assert compare_main([str(root), "--lpm-seconds", "5"]) == 0
    assert (root / "comparison" / "comparison.json").is_file()
    capsys.readouterr()
    assert figures_main([str(root)]) == 0
    assert (root / "comparison" / "figures" / "minority_collapse_fake.png").is_file()
