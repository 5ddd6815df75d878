"""Atomic, self-describing output: run folders whose files are either whole or absent.

Every file is written to a temporary sibling, flushed to disk and renamed over its target
(`os.replace` is atomic on POSIX), so a run killed at any moment leaves either the previous
complete file or none, never half of one. What a run folder holds, and its one reader, are
`ufm.runfolder`'s.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_write_text",
    "check_new_output_dir",
    "check_output_dir",
    "check_output_file",
    "code_commit",
    "code_version",
    "current_umask",
    "new_run_dir",
    "read_json",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write (by any library, e.g. torch.save); when the
    block ends without error it is flushed to disk and renamed over `path`, otherwise deleted.

    >>> with atomic_path("ckpt.pt") as tmp:
    ...     torch.save(state, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes the file 0600; results on a shared machine follow the umask, as open() does.
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def current_umask() -> int:
    """The process's umask, read without changing it where /proc allows (threads see no
    transient 0)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> None:
    """Refuse an output folder that cannot be created or written, before any work is done.

    The missing parts of `path` are created, a probe file is written and everything the probe
    made is removed again; a file in the way, a read-only or pseudo file system (/proc) or a
    missing permission raises a one-line ValueError naming `flag`.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file, not a folder; give a folder path")
    made: list[Path] = []
    try:
        for part in reversed([path, *path.parents]):
            if not part.exists():
                part.mkdir()
                made.append(part)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ValueError(
            f"{flag} {path}: cannot write there ({exc.strerror or exc}); choose another folder"
        ) from None
    finally:
        for part in reversed(made):
            with contextlib.suppress(OSError):
                part.rmdir()


def check_new_output_dir(path: str | os.PathLike, flag: str = "--out") -> None:
    """`check_output_dir`, and refuse a folder that already holds files (another run's
    results would be overwritten)."""
    path = Path(path)
    check_output_dir(path, flag)
    if path.is_dir() and any(path.iterdir()):
        raise ValueError(
            f"{flag} {path} exists and is not empty (it may hold another run's results); "
            f"choose a new folder"
        )


def check_output_file(path: str | os.PathLike, flag: str) -> None:
    """Refuse an output file whose folder cannot be written, or that names a folder."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name such as {path / 'out'}")
    try:
        check_output_dir(path.parent, flag)
    except ValueError as exc:
        raise ValueError(f"{exc} (for the file {path})") from None


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a folder.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (temporary file in the same folder, fsync, rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """UTF-8 `text` to `path`, atomically (see `atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy / torch arrays and scalars
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """JSON with 2-space indent; numpy/torch values become lists or numbers."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def atomic_write_csv(
    path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> Path:
    """A CSV file of `header` and `rows`, atomically; a reader sees all rows or the old file."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def read_json(path: str | Path) -> Any:
    """Read a JSON file with a clear error when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the run may be incomplete") from err


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, timeout=5, check=True
    ).stdout.strip()


def code_commit() -> str | None:
    """The commit of the code that runs, with '+dirty' when tracked files have local edits;
    None outside a git checkout."""
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def code_version() -> dict[str, str]:
    """Package version and, inside a git checkout, the commit and whether it had local edits."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        info = {"package": version("nc-verify")}
    except PackageNotFoundError:
        info = {"package": "unknown"}
    if commit := code_commit():
        sha, _, dirty = commit.partition("+")
        info |= {"commit": sha, "dirty": str(bool(dirty)).lower()}
    return info


def new_run_dir(base: str | Path, name: str | None = None) -> Path:
    """A fresh folder base/<name or timestamp>; a numeric suffix avoids clobbering."""
    base = Path(base)
    stem = name or datetime.now().strftime("%Y%m%d-%H%M%S")
    path, i = base / stem, 1
    while path.exists():
        i += 1
        path = base / f"{stem}-{i}"
    path.mkdir(parents=True)
    return path
