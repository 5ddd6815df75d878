"""Reading run folders: what kind a folder is, and what its figures need from it.

Two kinds of run folder exist (README):

- ufm (`python -m ufm.simulate`): config.json, history.csv, summary.json, geometry.npz;
- deep (`python -m deep.train`): config.yaml, metrics.csv (one row per epoch), summary.json.

Loaders return plain dataclasses of numpy arrays and never draw. Anything a figure needs and
the folder lacks raises `FigureDataError` naming the folder, the file and the missing piece,
so that the command line can print one line instead of a traceback.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ufm.io import read_json

__all__ = [
    "DeepRun",
    "FigureDataError",
    "UfmRun",
    "detect_kind",
    "load_deep_run",
    "load_geometry",
    "load_ufm_run",
]


class FigureDataError(ValueError):
    """A run folder lacks a file, a column or a key that a figure needs."""


def detect_kind(path: str | Path) -> str:
    """'ufm' or 'deep', from the files a run folder holds; FigureDataError otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise FigureDataError(f"{path}: not a folder")
    if (path / "history.csv").is_file() or (path / "config.json").is_file():
        return "ufm"
    if (path / "metrics.csv").is_file() or (path / "config.yaml").is_file():
        return "deep"
    raise FigureDataError(
        f"{path}: not a run folder (a ufm run has config.json and history.csv, a deep run "
        f"config.yaml and metrics.csv)"
    )


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FigureDataError(f"{path.parent}: {path.name} is missing; {what}")
    return path


def _json(path: Path, what: str) -> Any:
    try:
        return read_json(_require(path, what))
    except ValueError as err:
        raise FigureDataError(str(err)) from err


def _key(obj: dict[str, Any], key: str, where: Path) -> Any:
    if key not in obj:
        raise FigureDataError(f"{where}: key {key!r} is missing")
    return obj[key]


def _read_csv(path: Path, what: str) -> list[dict[str, str]]:
    """Rows of a CSV written by this package; a row cut short or padded (a copy or a write
    interrupted mid-row, an edit) is an error naming its line, never a point on a figure."""
    try:
        text = _require(path, what).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise FigureDataError(f"{path}: cannot be read as UTF-8 text ({err})") from None
    if text and not text.endswith("\n"):  # every writer here ends each row with a newline
        line = text.count("\n") + 1
        raise FigureDataError(
            f"{path}, line {line}: the last row is cut short (no line end); the file was "
            f"truncated: restore it or delete that line"
        )
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    for row in reader:
        if None in row or None in row.values():
            fields = sum(v is not None for k, v in row.items() if k is not None)
            fields += len(row.get(None) or [])
            raise FigureDataError(
                f"{path}, line {reader.line_num}: {fields} fields where the header has "
                f"{len(reader.fieldnames or [])}; the file was cut or edited"
            )
        rows.append(row)
    if not rows:
        raise FigureDataError(f"{path}: no rows; {what}")
    return rows


def _number(text: str | None) -> float:
    """A CSV cell as a float; empty or missing cells are NaN."""
    if text is None or text.strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


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


def _load_history(path: Path) -> dict[str, dict[str, np.ndarray]]:
    rows = _read_csv(path / "history.csv", _HISTORY_WHAT)
    missing = {"configuration", "iteration", "seconds", "gap"} - set(rows[0])
    if missing:
        raise FigureDataError(f"{path / 'history.csv'}: columns {sorted(missing)} are missing")
    out: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        series = out.setdefault(row["configuration"], {"iteration": [], "seconds": [], "gap": []})
        for col in series:
            series[col].append(_number(row[col]))
    return {name: {k: np.asarray(v) for k, v in s.items()} for name, s in out.items()}


def load_geometry(path: Path, names: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Cosine matrices and norms per configuration from geometry.npz."""
    with np.load(_require(path / "geometry.npz", _GEOMETRY_WHAT)) as data:
        arrays = {key: data[key] for key in data.files}
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        fields = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{name}.")}
        if "cosine_w" not in fields or "cosine_h" not in fields:
            raise FigureDataError(f"{path / 'geometry.npz'}: no cosine matrices for {name}")
        out[name] = fields
    return out


def load_ufm_run(path: str | Path, *, geometry: bool = True) -> UfmRun:
    """Read a ufm.simulate run folder (summary, history and, if asked, geometry.npz)."""
    path = Path(path)
    what = "the run has not finished (summary.json is written last)"
    summary = _json(path / "summary.json", what)
    runs = _key(summary, "runs", path / "summary.json")
    run = UfmRun(
        path=path,
        counts=np.asarray(_key(summary, "counts", path / "summary.json")),
        minority=np.asarray(summary.get("minority", []), dtype=np.int64),
        config=_key(summary, "config", path / "summary.json"),
        runs=runs,
        history=_load_history(path),
    )
    if geometry:
        run.geometry = load_geometry(path, run.names)
    return run


@dataclass
class DeepRun:
    """What the training figures of one deep.train run use."""

    path: Path
    label: str  # legend entry: head + loss (+ what tells runs apart)
    config: dict[str, Any]
    summary: dict[str, Any]
    columns: dict[str, np.ndarray]  # metrics.csv, one array per column, NaN where empty

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise FigureDataError(f"{self.path / 'metrics.csv'}: column {name!r} is missing")
        return self.columns[name]

    @property
    def counts(self) -> np.ndarray:
        return np.asarray(_key(self.summary, "counts", self.path / "summary.json"))


def _load_yaml(path: Path) -> dict[str, Any]:
    what = "a deep.train run folder starts with its config"
    try:
        data = yaml.safe_load(_require(path, what).read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise FigureDataError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(data, dict):
        raise FigureDataError(f"{path}: expected a mapping of settings")
    return data


def run_label(config: dict[str, Any]) -> str:
    """'ETF + DR' or 'linear + CE' from a deep config; the folder name is the fallback."""
    head = (config.get("head") or {}).get("name")
    loss = (config.get("loss") or {}).get("name")
    if not head or not loss:
        return ""
    return f"{'ETF' if head == 'etf' else head} + {loss.upper()}"


def load_deep_run(path: str | Path) -> DeepRun:
    """Read a deep.train run folder: config.yaml, metrics.csv and summary.json."""
    path = Path(path)
    config = _load_yaml(path / "config.yaml")
    rows = _read_csv(path / "metrics.csv", "the training figures need one row per epoch")
    columns = {name: np.array([_number(r.get(name)) for r in rows]) for name in rows[0]}
    summary = _json(path / "summary.json", "the run has written no summary yet")
    return DeepRun(path, run_label(config) or path.name, config, summary, columns)
