"""What the figures need from run folders, read through `ufm.runfolder.read_run`, the one
reader of the run-folder convention (format 1, and the legacy layouts of ufm and deep).

Loaders return plain dataclasses of numpy arrays built from the reader's `RunRecord` and never
draw. Anything a figure needs and the folder lacks raises `FigureDataError` (the reader's
`RunFolderError`) naming the folder, the file and the missing piece, so that the command line
can print one line instead of a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ufm.runfolder import GEOMETRY, History, RunFolderError, RunRecord, read_run, run_kind

__all__ = [
    "DeepRun",
    "FigureDataError",
    "UfmRun",
    "detect_kind",
    "load_deep_run",
    "load_geometry",
    "load_ufm_run",
]

FigureDataError = RunFolderError  # what a figure lacks is a run folder's problem


def detect_kind(path: str | Path) -> str:
    """'ufm', 'deep' or 'sweep' (`ufm.runfolder.run_kind`); FigureDataError otherwise."""
    return run_kind(path)


def _history(run: RunRecord, what: str) -> History:
    """The run's history.csv (metrics.csv in a legacy deep folder), with at least one row."""
    path = run.history_path
    if not path.is_file():
        raise FigureDataError(f"{run.path}: {path.name} is missing; {what}")
    if not len(run.history):
        raise FigureDataError(f"{path}: no rows; {what}")
    return run.history


@dataclass
class UfmRun:
    """What the figures of one ufm.simulate run use."""

    path: Path
    counts: np.ndarray  # (K,) class counts n_k
    minority: np.ndarray  # indices of the minority group
    config: dict[str, Any]
    runs: list[dict[str, Any]]  # summary.json "runs", one per configuration
    history: dict[str, dict[str, np.ndarray]]  # configuration -> iteration/seconds/gap arrays
    geometry: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Configuration names ('etf+ce', ...) in the order of summary.json."""
        return [f"{r['classifier']}+{r['loss']}" for r in self.runs]

    def entry(self, name: str) -> dict[str, Any]:
        return self.runs[self.names.index(name)]


_HISTORY_WHAT = "the convergence figure needs the history of python -m ufm.simulate"
_GEOMETRY_WHAT = (
    "the geometry heatmaps need the cosine matrices that python -m ufm.simulate writes "
    "there; rerun the simulation to get them"
)


def _load_history(run: RunRecord) -> dict[str, dict[str, np.ndarray]]:
    history = _history(run, _HISTORY_WHAT)
    missing = {"configuration", "iteration", "seconds", "gap"} - set(history.rows[0])
    if missing:
        raise FigureDataError(f"{history.path}: columns {sorted(missing)} are missing")
    names = [row["configuration"] for row in history.rows]
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in dict.fromkeys(names):
        rows = np.array([n == name for n in names])
        out[name] = {col: history.column(col)[rows] for col in ("iteration", "seconds", "gap")}
    return out


def load_geometry(path: Path, names: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Cosine matrices and norms per configuration from geometry.npz."""
    if not (Path(path) / GEOMETRY).is_file():
        raise FigureDataError(f"{path}: {GEOMETRY} is missing; {_GEOMETRY_WHAT}")
    arrays = read_run(path).geometry
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        fields = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{name}.")}
        if "cosine_w" not in fields or "cosine_h" not in fields:
            raise FigureDataError(f"{Path(path) / GEOMETRY}: no cosine matrices for {name}")
        out[name] = fields
    return out


def load_ufm_run(path: str | Path, *, geometry: bool = True) -> UfmRun:
    """Read a ufm.simulate run folder (summary, history and, if asked, geometry.npz)."""
    record = read_run(path)
    summary = record.summary
    run = UfmRun(
        path=record.path,
        counts=np.asarray(record.key(summary, "counts")),
        minority=np.asarray(summary.get("minority", []), dtype=np.int64),
        config=record.key(summary, "config"),
        runs=record.key(summary, "runs"),
        history=_load_history(record),
    )
    if geometry:
        run.geometry = load_geometry(run.path, run.names)
    return run


@dataclass
class DeepRun:
    """What the training figures of one deep.train run use."""

    path: Path
    label: str  # legend entry: head + loss (+ what tells runs apart)
    config: dict[str, Any]
    summary: dict[str, Any]
    columns: dict[str, np.ndarray]  # history.csv, one array per column, NaN where empty
    history_file: Path  # history.csv (metrics.csv in a folder of the older layout)

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise FigureDataError(f"{self.history_file}: column {name!r} is missing")
        return self.columns[name]

    @property
    def counts(self) -> np.ndarray:
        if "counts" not in self.summary:
            raise FigureDataError(f"{self.path / 'summary.json'}: key 'counts' is missing")
        return np.asarray(self.summary["counts"])


def run_label(config: dict[str, Any]) -> str:
    """'ETF + DR' or 'linear + CE' from a deep config; the folder name is the fallback."""
    head = (config.get("head") or {}).get("name")
    loss = (config.get("loss") or {}).get("name")
    if not head or not loss:
        return ""
    return f"{'ETF' if head == 'etf' else head} + {loss.upper()}"


def load_deep_run(path: str | Path) -> DeepRun:
    """Read a deep.train run folder: its config, history (one row per epoch) and summary."""
    record = read_run(path)
    config = record.config
    history = _history(record, "the training figures need one row per epoch")
    label = run_label(config) or record.path.name
    return DeepRun(record.path, label, config, record.summary, history.columns, history.path)
