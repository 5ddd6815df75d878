"""A deep.train run folder: the run-folder convention of `ufm.runfolder` (format 1), kind
"deep", written atomically.

runs/deep/<name>/
    run.json            kind "deep", the command line, the code version (written first)
    config.yaml         the complete config (python -m deep.train --config it to rerun)
    history.csv         one row per epoch: loss, learning rate, accuracies, NC metrics, times
    summary.json        final (or latest) results, class counts and groups, environment
    geometry.npz        the last layer at every NC evaluation (see `geometry_arrays`)
    checkpoints/last.pt the latest epoch, to resume from (epoch_NNNN.pt with run.save_every)

A folder written before format 1 (no run.json, metrics.csv for history.csv) is resumed in its
own layout: its epochs go on into metrics.csv, and no run.json is added.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deep.config import Config, config_to_yaml
from ufm import runfolder
from ufm.io import check_output_dir
from ufm.runfolder import RunFolderError, history_name, read_run

__all__ = ["GeometryError", "RunFolder", "geometry_arrays", "history_rows", "load_geometry"]


class RunFolder:
    """A deep run folder's paths (config.yaml, history.csv, summary.json, checkpoints/) and its
    atomic writers (`ufm.runfolder`); `check_new` refuses to overwrite an existing run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / runfolder.CONFIG)
    history = property(lambda self: self.path / history_name(self.path))
    summary = property(lambda self: self.path / runfolder.SUMMARY)
    checkpoints = property(lambda self: self.path / "checkpoints")
    last_checkpoint = property(lambda self: self.path / "checkpoints" / "last.pt")
    geometry = property(lambda self: self.path / runfolder.GEOMETRY)

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
        results = [p.name for p in (self.history, self.summary) if p.exists()]
        if results:
            raise ValueError(
                f"cannot resume {self.path}: it holds {' and '.join(results)} but no "
                f"{self.last_checkpoint.relative_to(self.path)}, so it would restart at epoch 1 "
                f"and overwrite them; restore the checkpoint, or start a new run with another --out"
            )

    def create(self, cfg: Config, command: Sequence[str] | None = None) -> None:
        """run.json (kind "deep", `command`: the argv that started the run), config.yaml and
        checkpoints/."""
        runfolder.start_run(self.path, "deep", config_to_yaml(cfg), command=command)
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def write_history(self, history: list[dict[str, Any]]) -> None:
        runfolder.write_history(self.path, history_rows(history), name=self.history.name)

    def write_geometry(self, snapshots: list[dict[str, Any]]) -> None:
        runfolder.write_geometry(self.path, geometry_arrays(snapshots))

    def write_summary(self, summary: dict[str, Any]) -> None:
        runfolder.write_summary(self.path, summary)

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch_{epoch:04d}.pt"


def history_rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The epochs' rows as history.csv holds them: nested dicts (the NC metrics) spread into
    their own columns, lists (per-class values) left to summary.json."""
    return [_flat(row) for row in history]


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update(value)
        elif not isinstance(value, list):
            out[key] = value
    return out


class GeometryError(RunFolderError):
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
    """geometry.npz of a deep.train run folder, read by `ufm.runfolder.read_run`; a
    GeometryError says what is missing."""
    folder = RunFolder(path)
    if not folder.geometry.is_file():
        raise GeometryError(
            f"{folder.path} has no geometry.npz: the run was written before deep.train saved "
            f"its last-layer geometry, or has not reached its first NC evaluation; rerun it "
            f"(or --resume it, if it has epochs left) to compare it with a prediction"
        )
    try:
        arrays = read_run(folder.path).geometry
    except RunFolderError as exc:
        raise GeometryError(str(exc)) from None
    missing = [key for key in GEOMETRY_KEYS if key not in arrays]
    if missing:
        raise GeometryError(f"{folder.geometry} lacks {', '.join(missing)}; rerun the run")
    return arrays
