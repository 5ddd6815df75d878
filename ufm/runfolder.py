"""The run folder: one convention for every run (ufm.simulate, deep.train, the theory sweeps),
its atomic writers and its one reader.

Format 1:

    <run>/
      run.json       {"kind": "ufm" | "deep" | "sweep", "format": 1, "name": <sweep or null>,
                      "created": ISO-8601 time, "command": [argv...] or null,
                      "version": ufm.io.code_version()}                 written first
      config.yaml    the complete configuration (deep: rerunnable with deep.train --config)
      history.csv    one row per iteration (ufm) or epoch (deep); a sweep has none
      summary.json   the results, written last: a folder without it has not finished
      geometry.npz   arrays (last-layer geometry of deep runs, per-configuration cosines of ufm)
      figures/       drawn from the files above, by the figures package only
      checkpoints/   deep only

Folders written before format 1 are read, never written: a ufm folder holds config.json
({"config": ..., "version": ...}) and history.csv, a deep folder config.yaml and metrics.csv,
and neither has run.json; their kind is inferred from those names.

Every file is written atomically (`ufm.io`), so a folder holds whole files or none of them;
everything the reader cannot use raises `RunFolderError`, one line naming the folder, the
file and what to do.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ufm.io import atomic_write_bytes, atomic_write_text, code_version

__all__ = [
    "CONFIG",
    "FIGURE_ENTRY_POINTS",
    "FORMAT",
    "GEOMETRY",
    "HISTORY",
    "KINDS",
    "RUN",
    "SUMMARY",
    "History",
    "RunFolderError",
    "RunRecord",
    "draw_figures",
    "history_name",
    "is_run_folder",
    "read_run",
    "run_kind",
    "start_run",
    "sweep_folder",
    "write_geometry",
    "write_history",
    "write_summary",
]

FORMAT = 1
KINDS = ("ufm", "deep", "sweep")
RUN = "run.json"
CONFIG = "config.yaml"
HISTORY = "history.csv"
SUMMARY = "summary.json"
GEOMETRY = "geometry.npz"
LEGACY_UFM_CONFIG = "config.json"  # ufm.simulate before format 1
LEGACY_DEEP_HISTORY = "metrics.csv"  # deep.train before format 1
FIGURE_ENTRY_POINTS = "nc_verify.figures"  # entry-point group: run kind -> drawing function


class RunFolderError(ValueError):
    """A run folder that is missing, unfinished, or holds a file that cannot be read."""


# --- writing -------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON/YAML-ready: arrays and tensors become lists or numbers, tuples lists, paths
    strings, and NaN or infinities null (JSON has no spelling for them)."""
    if hasattr(value, "tolist"):  # numpy / torch arrays and scalars
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def start_run(
    path: str | Path,
    kind: str,
    config: Mapping[str, Any] | str,
    *,
    name: str | None = None,
    command: Iterable[str] | None = None,
) -> Path:
    """Begin a run folder: run.json first, then config.yaml (`config` a mapping, or YAML text
    that the caller serialised itself). Returns the folder."""
    if kind not in KINDS:
        raise ValueError(f"run kind must be one of {', '.join(KINDS)}, got {kind!r}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    run = {
        "kind": kind,
        "format": FORMAT,
        "name": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": None if command is None else [str(word) for word in command],
        "version": code_version(),
    }
    atomic_write_text(path / RUN, json.dumps(run, indent=2) + "\n")
    if not isinstance(config, str):
        config = yaml.safe_dump(_plain(config), sort_keys=False)
    atomic_write_text(path / CONFIG, config)
    return path


def write_summary(path: str | Path, obj: Mapping[str, Any]) -> Path:
    """summary.json, atomically (the last file of a run: its presence means finished)."""
    return atomic_write_text(Path(path) / SUMMARY, json.dumps(_plain(obj), indent=2) + "\n")


def history_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows as CSV text; the header is every key in order of first appearance, and a value a
    row lacks (or None) is left empty."""
    rows = list(rows)
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return out.getvalue()


def write_history(
    path: str | Path, rows: Iterable[Mapping[str, Any]], *, name: str = HISTORY
) -> Path:
    """history.csv (`name`: metrics.csv only to go on with a legacy deep folder), atomically:
    a reader sees every row or the previous file."""
    return atomic_write_text(Path(path) / name, history_csv(rows))


def write_geometry(path: str | Path, arrays: Mapping[str, Any]) -> Path:
    """geometry.npz of named arrays, atomically."""
    buf = io.BytesIO()
    np.savez(buf, **{key: np.asarray(value) for key, value in arrays.items()})
    return atomic_write_bytes(Path(path) / GEOMETRY, buf.getvalue())


# --- reading -------------------------------------------------------------------------------


def _one_line(err: BaseException) -> str:
    """An exception's text on one line (YAML and JSON errors span several)."""
    return " ".join(str(err).split())


def _legacy_kind(path: Path) -> str | None:
    if (path / LEGACY_UFM_CONFIG).is_file() or (path / HISTORY).is_file():
        return "ufm"
    if (path / LEGACY_DEEP_HISTORY).is_file() or (path / CONFIG).is_file():
        return "deep"
    return None


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise RunFolderError(f"{path.parent}: {path.name} is missing; {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunFolderError(
            f"{path} is not valid JSON ({_one_line(err)}); the run may be incomplete: rerun it"
        ) from None


def _run_json(path: Path) -> dict[str, Any] | None:
    """run.json as a mapping, None for a legacy folder without one."""
    if not (path / RUN).exists():
        return None
    run = _read_json(path / RUN, "")
    if not isinstance(run, dict) or run.get("kind") not in KINDS:
        raise RunFolderError(
            f"{path / RUN}: expected a mapping with a kind of {', '.join(KINDS)}; the file was "
            f"edited or is not this package's: restore it or rerun the run"
        )
    if run.get("format") != FORMAT:
        raise RunFolderError(
            f"{path / RUN}: format {run.get('format')!r}, this code reads format {FORMAT}; "
            f"read it with the version that wrote it, or rerun it"
        )
    return run


def run_kind(path: str | Path) -> str:
    """'ufm', 'deep' or 'sweep': run.json's kind, else inferred from a legacy folder's file
    names; RunFolderError for anything else."""
    path = Path(path)
    if not path.is_dir():
        raise RunFolderError(f"{path}: not a folder")
    run = _run_json(path)
    kind = run["kind"] if run else _legacy_kind(path)
    if kind is None:
        raise RunFolderError(
            f"{path}: not a run folder (it has no {RUN}; a run folder of an older version has "
            f"config.json and history.csv (ufm) or config.yaml and metrics.csv (deep))"
        )
    return kind


def is_run_folder(path: str | Path) -> bool:
    """Whether `path` is a run folder of any kind (format 1 or older); a damaged run.json
    still marks one (reading it then says what is wrong)."""
    path = Path(path)
    return path.is_dir() and ((path / RUN).exists() or _legacy_kind(path) is not None)


def sweep_folder(name: str, size: str, root: str | Path) -> Path:
    """Where a theory sweep of `size` is written: root/<name> for the default size,
    root/<name>-<size> otherwise."""
    return Path(root) / (name if size == "default" else f"{name}-{size}")


def _number(text: str | None) -> float:
    """A CSV cell as a float; empty, missing or non-numeric cells are NaN."""
    if text is None or text.strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


@dataclass
class History:
    """The per-iteration (ufm) or per-epoch (deep) table of a run: `rows` as read (strings),
    `columns` one float array per column with NaN where a cell is empty or not a number."""

    path: Path
    rows: list[dict[str, str]]

    def __len__(self) -> int:
        return len(self.rows)

    @cached_property
    def columns(self) -> dict[str, np.ndarray]:
        names = list(self.rows[0]) if self.rows else []
        return {name: np.array([_number(r.get(name)) for r in self.rows]) for name in names}

    def column(self, name: str) -> np.ndarray:
        """One column as floats (N,); RunFolderError naming the file if it is absent."""
        if name not in self.columns:
            raise RunFolderError(f"{self.path}: column {name!r} is missing")
        return self.columns[name]


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV written by this package; a row cut short or padded (a copy or a write
    interrupted mid-row, an edit) is an error naming its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RunFolderError(f"{path}: cannot be read as UTF-8 text ({_one_line(err)})") from None
    if text and not text.endswith("\n"):  # every writer here ends each row with a newline
        line = text.count("\n") + 1
        raise RunFolderError(
            f"{path}, line {line}: the last row is cut short (no line end); the file was "
            f"truncated: restore it or delete that line"
        )
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    try:
        for row in reader:
            if None in row or None in row.values():
                fields = sum(v is not None for k, v in row.items() if k is not None)
                fields += len(row.get(None) or [])
                raise RunFolderError(
                    f"{path}, line {reader.line_num}: {fields} fields where the header has "
                    f"{len(reader.fieldnames or [])}; the file was cut or edited"
                )
            rows.append(row)
    except csv.Error as err:
        raise RunFolderError(f"{path}, line {reader.line_num}: not CSV ({err})") from None
    return rows


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise RunFolderError(f"{path}: not valid YAML ({_one_line(err)})") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path}: expected a mapping of settings")
    return data


@dataclass
class RunRecord:
    """One run folder as read by `read_run`: what it is (`kind`, `name`, `format`: 0 for a
    legacy folder), and its files, each read when first used and raising RunFolderError when it
    is missing or unreadable."""

    path: Path
    kind: str
    name: str | None = None
    format: int = FORMAT
    run: dict[str, Any] = field(default_factory=dict)  # run.json ({} for a legacy folder)

    @property
    def finished(self) -> bool:
        """Whether summary.json exists (it is written last; a deep run rewrites it after every
        epoch, and its "status" says whether every epoch ran)."""
        return (self.path / SUMMARY).is_file()

    @cached_property
    def config(self) -> dict[str, Any]:
        """The configuration: config.yaml (legacy ufm folders: config.json's "config")."""
        legacy = self.path / LEGACY_UFM_CONFIG
        if self.format == 0 and self.kind == "ufm" and legacy.is_file():
            data = _read_json(legacy, "")
            if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
                raise RunFolderError(f"{legacy}: key 'config' is missing")
            return data["config"]
        config = self.path / CONFIG
        if not config.is_file():
            raise RunFolderError(
                f"{self.path}: {CONFIG} is missing; a run folder starts with its config"
            )
        return _read_yaml(config)

    @cached_property
    def summary(self) -> dict[str, Any]:
        """summary.json; RunFolderError while the run has not finished."""
        summary = _read_json(
            self.path / SUMMARY, "the run has not finished (summary.json is written last)"
        )
        if not isinstance(summary, dict):
            raise RunFolderError(f"{self.path / SUMMARY}: expected a mapping of results")
        return summary

    @property
    def history_path(self) -> Path:
        """history.csv, or metrics.csv in a legacy deep folder that has it."""
        legacy = self.path / LEGACY_DEEP_HISTORY
        if self.kind == "deep" and not (self.path / HISTORY).exists() and legacy.exists():
            return legacy
        return self.path / HISTORY

    @cached_property
    def history(self) -> History:
        """history.csv (or a legacy deep folder's metrics.csv); RunFolderError if absent."""
        path = self.history_path
        if not path.is_file():
            raise RunFolderError(f"{self.path}: {path.name} is missing")
        return History(path, read_csv_rows(path))

    @cached_property
    def geometry(self) -> dict[str, np.ndarray]:
        """geometry.npz, every array; RunFolderError if absent or unreadable."""
        path = self.path / GEOMETRY
        if not path.is_file():
            raise RunFolderError(f"{self.path}: {GEOMETRY} is missing")
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise RunFolderError(
                f"{path} is not a readable geometry file: {_one_line(exc)}"
            ) from None

    def key(self, obj: Mapping[str, Any], key: str, file: str = SUMMARY) -> Any:
        """`obj[key]`, or a RunFolderError naming this folder's `file` and the key."""
        if key not in obj:
            raise RunFolderError(f"{self.path / file}: key {key!r} is missing")
        return obj[key]


def read_run(path: str | Path) -> RunRecord:
    """The run folder at `path` (format 1 or legacy); its files are read when first used."""
    path = Path(path)
    kind = run_kind(path)
    run = _run_json(path) or {}
    return RunRecord(
        path=path,
        kind=kind,
        name=run.get("name"),
        format=int(run.get("format", 0)),
        run=run,
    )


def history_name(path: str | Path) -> str:
    """The per-epoch table a deep folder goes on writing: metrics.csv in a legacy folder that
    has one (so that its rows stay in one file), history.csv otherwise."""
    path = Path(path)
    legacy = not (path / RUN).exists() and (path / LEGACY_DEEP_HISTORY).exists()
    return LEGACY_DEEP_HISTORY if legacy else HISTORY


# --- figures -------------------------------------------------------------------------------


def draw_figures(path: str | Path, echo: Callable[[str], Any] | None = print) -> list[Path]:
    """Draw a run's figures into <run>/figures through the entry point named after its kind in
    the group "nc_verify.figures" (declared in pyproject.toml), so that the computation never
    imports the drawing code.

    Never raises: a missing entry point (the package is not installed, e.g. PYTHONPATH=. only)
    or a figure that fails costs one `echo` line and no result. Returns the files drawn.
    """
    path = Path(path)
    say = echo or (lambda line: None)
    redo = f"draw them with python -m figures {path}"
    try:
        kind = run_kind(path)
        found = entry_points(group=FIGURE_ENTRY_POINTS, name=kind)
        if not found:
            say(
                f"figures: not drawn (no {FIGURE_ENTRY_POINTS} entry point {kind!r}: "
                f"nc-verify is not installed); {redo}"
            )
            return []
        draw = next(iter(found)).load()
        paths = list(draw(path))
    except Exception as exc:  # a figure is never worth a result
        message = _one_line(exc) or type(exc).__name__
        say(f"figures: not drawn ({message}); {redo}")
        return []
    if paths:
        say(f"figures: {path / 'figures'} ({len(paths)} files)")
    return paths
