"""The run folder: everything a run produced, self-describing, written atomically.

runs/deep/<name>/
    config.yaml         the complete config (python -m deep.train --config it to rerun)
    metrics.csv         one row per epoch: loss, learning rate, accuracies, NC metrics, times
    summary.json        final (or latest) results, class counts and groups, environment
    geometry.npz        the last layer at every NC evaluation (see `geometry_arrays`)
    checkpoints/last.pt the latest epoch, to resume from (epoch_NNNN.pt with run.save_every)
"""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deep.config import Config, config_to_yaml
from ufm.io import atomic_write_bytes, atomic_write_text, check_output_dir

__all__ = ["GeometryError", "RunFolder", "geometry_arrays", "load_geometry", "metrics_csv"]


class RunFolder:
    """A run folder's paths (config.yaml, metrics.csv, summary.json, checkpoints/) and its
    atomic writers; `check_new` refuses to overwrite an existing run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    metrics = property(lambda self: self.path / "metrics.csv")
    summary = property(lambda self: self.path / "summary.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    last_checkpoint = property(lambda self: self.path / "checkpoints" / "last.pt")
    geometry = property(lambda self: self.path / "geometry.npz")

    def check_new(self) -> None:
        """Refuse a folder that already holds something (a finished or resumable run), a file
        in its place, or a place that cannot be written."""
        if self.path.is_dir() and any(self.path.iterdir()):
            raise ValueError(
                f"run folder {self.path} exists and is not empty; pass --resume {self.path} to "
                f"continue it, or another --out"
            )
        check_output_dir(self.path)

    def check_restartable(self) -> None:
        """Refuse to start a folder again from epoch 1 when it holds results of epochs that
        its checkpoint no longer covers (they would be overwritten)."""
        results = [p.name for p in (self.metrics, self.summary) if p.exists()]
        if results:
            raise ValueError(
                f"cannot resume {self.path}: it holds {' and '.join(results)} but no "
                f"{self.last_checkpoint.relative_to(self.path)}, so it would restart at epoch 1 "
                f"and overwrite them; restore the checkpoint, or start a new run with another --out"
            )

    def create(self, cfg: Config) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config, config_to_yaml(cfg))

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        atomic_write_text(self.metrics, metrics_csv(history))

    def write_geometry(self, snapshots: list[dict[str, Any]]) -> None:
        buf = io.BytesIO()
        np.savez(buf, **geometry_arrays(snapshots))
        atomic_write_bytes(self.geometry, buf.getvalue())

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.summary, json.dumps(_json_safe(summary), indent=2) + "\n")

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch_{epoch:04d}.pt"


def metrics_csv(history: list[dict[str, Any]]) -> str:
    """Rows as CSV, nested dicts (the NC metrics) spread into their own columns; the header is
    every key in order of first appearance, and a value an epoch lacks is left empty."""
    rows = [_flat(row) for row in history]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return out.getvalue()


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update(value)
        elif not isinstance(value, list):
            out[key] = value
    return out


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class GeometryError(ValueError):
    """A run folder without a usable geometry.npz."""


def geometry_arrays(snapshots: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Snapshots (one per NC evaluation) stacked along a first axis of evaluations.

    Keys (E evaluations, K classes, d feature dimensions): epoch (E,); cosine_w, cosine_h,
    cosine_h_uncentred (E, K, K): cosines of the classifier rows, of the class means centred at
    the mean of class means, and of the class means as they are; norm_w, norm_h,
    norm_h_uncentred (E, K); means, w (E, K, d); b (E, K); counts (K,); e_w, e_h (the LPM's
    (1/K) sum ||w_k||^2 and class-averaged (1/K) sum_k (1/n_k) sum_i ||h_ki||^2), e_h_samples,
    e_h_means, features_sq_norm (E,); and the training accuracy and loss at each (E,).
    """
    keys = list(snapshots[0])
    out = {}
    for key in keys:
        values = [snap[key] for snap in snapshots]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values).numpy()
        else:
            out[key] = np.asarray(values)
    out["counts"] = out["counts"][-1].astype(np.int64)
    return out


GEOMETRY_KEYS = ("epoch", "cosine_w", "cosine_h", "norm_w", "counts", "e_w", "e_h", "means", "w")


def load_geometry(path: str | Path) -> dict[str, np.ndarray]:
    """geometry.npz of a deep.train run folder; a GeometryError says what is missing."""
    folder = RunFolder(path)
    if not folder.geometry.is_file():
        raise GeometryError(
            f"{folder.path} has no geometry.npz: the run was written before deep.train saved "
            f"its last-layer geometry, or has not reached its first NC evaluation; rerun it "
            f"(or --resume it, if it has epochs left) to compare it with a prediction"
        )
    try:
        with np.load(folder.geometry, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise GeometryError(f"{folder.geometry} is not a readable geometry file: {exc}") from None
    missing = [key for key in GEOMETRY_KEYS if key not in arrays]
    if missing:
        raise GeometryError(f"{folder.geometry} lacks {', '.join(missing)}; rerun the run")
    return arrays
