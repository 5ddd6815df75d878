"""Fixture run folders for the figure tests: a tiny ufm.simulate run (format 1) and synthetic
deep runs in the layout deep.train wrote before run.json (config.yaml, metrics.csv,
summary.json), which ufm.runfolder still reads."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from ufm.simulate import SimulateConfig, run_simulation

COUNTS = [600, 360, 216, 130, 78, 47, 28, 17, 10, 6]  # exponential, K = 10, ratio 100
NC_EVERY = 3


@pytest.fixture(scope="session")
def ufm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ufm.simulate run of a small problem (K = 5, n_max = 60), without figures."""
    out = tmp_path_factory.mktemp("ufm") / "run"
    cfg = SimulateConfig(imbalance=10, classes=5, n_max=60, dim=8, out=str(out), figures=False)
    run_simulation(cfg, echo=False)
    return out


def _curve(epochs: np.ndarray, start: float, end: float, rate: float) -> np.ndarray:
    return end + (start - end) * np.exp(-rate * epochs)


def _rows(head: str, epochs: int, rng: np.random.Generator) -> list[dict[str, object]]:
    """One row per epoch with the columns deep.train writes; NC metrics every NC_EVERY epochs."""
    k = len(COUNTS)
    e = np.arange(1, epochs + 1, dtype=float)
    acc = _curve(e, 0.3, 0.8 if head == "etf" else 0.72, 0.4)
    rows = []
    for i, epoch in enumerate(e):
        per_class = np.clip(
            acc[i] + np.linspace(0.15, -0.3, k) * (0.3 if head == "etf" else 1), 0, 1
        )
        row: dict[str, object] = {
            "epoch": int(epoch),
            "lr": 0.1,
            "train_loss": float(_curve(epoch, 2.0, 0.1, 0.3)),
            "test_acc": float(acc[i]),
            "head_acc": float(per_class[:3].mean()),
            "medium_acc": float(per_class[3:7].mean()),
            "tail_acc": float(per_class[7:].mean()),
        }
        row |= {f"acc_class_{c}": float(a) for c, a in enumerate(per_class)}
        measured = int(epoch) % NC_EVERY == 0 or int(epoch) == epochs
        cos_w = -1 / (k - 1) if head == "etf" else float(_curve(epoch, 0.0, 0.9, 0.3))
        nc = {
            "nc1": float(_curve(epoch, 2.0, 0.05, 0.3) * (1 + 0.05 * rng.random())),
            "etf_distance": 1e-8 if head == "etf" else float(_curve(epoch, 0.9, 0.5, 0.2)),
            "minority_cosine_w": cos_w,
            "minority_cosine_h": cos_w + 0.02,
            "self_duality": float(_curve(epoch, 1.0, 0.3, 0.2)),
        }
        row |= {key: (value if measured else "") for key, value in nc.items()}
        rows.append(row)
    return rows


def write_deep_run(
    path: Path, head: str, loss: str, epochs: int = 7, seed: int = 0, counts: list[int] = COUNTS
) -> Path:
    """A synthetic deep.train run folder with plausible curves (K = 10 classes)."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    config = {
        "preset": "quick",
        "data": {"dataset": "fashion-mnist", "profile": "exp", "imbalance": 100.0},
        "head": {"name": head},
        "loss": {"name": loss},
        "run": {"seed": seed, "nc_every": NC_EVERY},
    }
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    rows = _rows(head, epochs, rng)
    with (path / "metrics.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    last = rows[-1]
    k = len(COUNTS)
    summary = {
        "best_test_acc": max(r["test_acc"] for r in rows),
        "last_test_acc": last["test_acc"],
        "per_class_acc": [last[f"acc_class_{c}"] for c in range(k)],
        "group_acc": {g: last[f"{g}_acc"] for g in ("head", "medium", "tail")},
        "counts": counts,
        "classes": [f"class{c}" for c in range(k)],
        "nc": {key: last[key] for key in ("nc1", "etf_distance", "minority_cosine_w")},
        "seconds": 12.0,
        "images_per_second": 300.0,
    }
    (path / "summary.json").write_text(json.dumps(summary))
    return path


@pytest.fixture(scope="session")
def deep_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two synthetic training runs: fixed ETF + DR and learnable + CE."""
    base = tmp_path_factory.mktemp("deep")
    return [
        write_deep_run(base / "etf-dr", "etf", "dr"),
        write_deep_run(base / "linear-ce", "linear", "ce", seed=1),
    ]
