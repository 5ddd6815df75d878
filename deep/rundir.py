"""The run folder: everything a run produced, self-describing, written atomically.

runs/deep/<name>/
    config.yaml         the complete config (python -m deep.train --config it to rerun)
    metrics.csv         one row per epoch: loss, learning rate, accuracies, NC metrics, times
    summary.json        final (or latest) results, class counts and groups, environment
    checkpoints/last.pt the latest epoch, to resume from (epoch_NNNN.pt with run.save_every)
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from deep.config import Config, config_to_yaml
from ufm.io import atomic_write_text, check_output_dir

__all__ = ["RunFolder", "metrics_csv"]


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
