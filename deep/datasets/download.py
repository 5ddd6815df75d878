"""Downloads verified by checksum, written atomically, with a clear error when offline."""

from __future__ import annotations

import contextlib
import hashlib
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from deep.datasets.base import DataError
from ufm.io import atomic_path

__all__ = ["fetch", "md5_of_bytes", "md5_of_file"]

_CHUNK = 1 << 20  # [bytes]


def md5_of_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def md5_of_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


Opener = Callable[..., BinaryIO]


def fetch(
    url: str,
    dest: Path,
    md5: str | None,
    *,
    opener: Opener = urllib.request.urlopen,
    timeout: float = 60.0,  # [s] per network operation
) -> Path:
    """Download `url` to `dest`, check its MD5, and only then move it into place.

    Raises DataError (and leaves nothing at `dest`) when the download fails or the checksum
    differs.
    """
    made = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest) as tmp:
            _download(url, tmp, opener, timeout)
            if md5 is not None and (got := md5_of_file(tmp)) != md5:
                raise DataError(
                    f"download of {url} has MD5 {got}, expected {md5}: the file is corrupt "
                    f"or not the published one; nothing was kept"
                )
    except BaseException as exc:
        for folder in made:  # innermost first: the folders this call created, if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, urllib.error.URLError | OSError):
            raise DataError(f"could not download {url}: {exc}") from None
        raise
    return dest


def _download(url: str, target: Path, opener: Opener, timeout: float) -> None:
    name = url.rstrip("/").rsplit("/", 1)[-1]
    with opener(url, timeout=timeout) as response, open(target, "wb") as out:
        size = int(getattr(response, "headers", {}).get("Content-Length") or 0)  # [bytes]
        with tqdm(total=size or None, unit="B", unit_scale=True, desc=name, leave=False) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
