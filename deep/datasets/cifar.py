"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) from their python-pickle archives.

The archives are checked against the published MD5 sums, downloaded when missing and a network
is there, extracted member by member, and unpickled by an allow-list unpickler that accepts only
what those archives contain (numpy arrays, lists, bytes): a crafted archive cannot run code.
Registered as `cifar10` and `cifar100`.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deep.datasets.base import DATASETS, DataError, DataRequest, ImageData, as_image_data
from deep.datasets.download import fetch, md5_of_file

__all__ = ["CIFAR10", "CIFAR100", "CifarSpec", "load_cifar", "read_cifar_batch"]


@dataclass(frozen=True)
class CifarSpec:
    """The published layout of one CIFAR python archive."""

    name: str
    title: str
    folder: str  # folder inside the archive
    archive: str
    url: str
    archive_md5: str
    train: tuple[tuple[str, str], ...]  # (file, MD5)
    test: tuple[tuple[str, str], ...]
    meta: tuple[str, str]
    label_key: bytes
    names_key: bytes

    def files(self) -> tuple[tuple[str, str], ...]:
        return (*self.train, *self.test, self.meta)


_CIFAR_PAGE = "https://www.cs.toronto.edu/~kriz/"  # where Krizhevsky publishes both archives


def _published(classes: int, folder: str, **layout: Any) -> CifarSpec:
    """The spec of CIFAR-`classes` as published: its name, title, archive and URL follow."""
    archive = f"cifar-{classes}-python.tar.gz"
    return CifarSpec(
        name=f"cifar{classes}",
        title=f"CIFAR-{classes}",
        folder=folder,
        archive=archive,
        url=_CIFAR_PAGE + archive,
        **layout,
    )


CIFAR10 = _published(
    10,
    "cifar-10-batches-py",
    archive_md5="c58f30108f718f92721af3b95e74349a",
    train=(
        ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
        ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
        ("data_batch_4", "634d18415352ddfa80567beed471001a"),
        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    ),
    test=(("test_batch", "40351d587109b95175f43aff81a1287e"),),
    meta=("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
    label_key=b"labels",
    names_key=b"label_names",
)

CIFAR100 = _published(
    100,
    "cifar-100-python",
    archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
    train=(("train", "16019d7e3df5f24257cddd939b257f8d"),),
    test=(("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),),
    meta=("meta", "7973b15100ade9c7d40fb424638fde48"),
    label_key=b"fine_labels",
    names_key=b"fine_label_names",
)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # What python 3 writes for bytes under pickle protocol 2; only this codec is allowed.
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"codec {encoding!r} is not allowed in a CIFAR archive")
    return text.encode("latin1")


_NP_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's array rebuilder, whatever its module
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _Refused(pickle.UnpicklingError):
    pass


class _AllowListUnpickler(pickle.Unpickler):
    """Resolves only the globals a CIFAR archive needs; anything else is an error."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


_MEMO_LIMIT = 1 << 20  # a CIFAR pickle memoizes one entry per object: tens of thousands
_MEMO_OPS = {"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"}


def _check_opcodes(data: bytes) -> None:
    """Walk the opcodes without running any: damage shows as an unknown opcode, a cut
    argument, or a memo index no archive has (the C unpickler would allocate gigabytes of memo
    for it before failing). Raises ValueError."""
    for op, arg, pos in pickletools.genops(data):
        if op.name in _MEMO_OPS and int(arg) > _MEMO_LIMIT:
            raise ValueError(f"memo index {arg} at byte {pos}")


def _unpickle(path: Path) -> dict:
    try:
        data = path.read_bytes()
        _check_opcodes(data)
        obj = _AllowListUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _Refused as exc:
        raise DataError(
            f"refused to load {path}: it asks for {exc}, which no CIFAR archive contains"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # a damaged pickle fails in many ways (bad lengths
        # give OverflowError or MemoryError); every one is a corrupt file, not a bug here
        detail = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise DataError(
            f"{path} is not a readable CIFAR pickle (truncated or corrupt?): {detail}"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not the dict of a CIFAR batch")
    return obj


def read_cifar_batch(
    path: Path, label_key: bytes, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 32, 32, 3) uint8 and labels (n,) of one CIFAR batch file."""
    batch = _unpickle(path)
    data, labels = batch.get(b"data"), batch.get(label_key)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3072
    ):
        raise DataError(f"{path}: b'data' must be a uint8 array of shape (n, 3072)")
    try:
        labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{path}: {label_key!r} must be a list of integer labels") from None
    if labels.shape != (len(data),) or (
        len(labels) and not 0 <= labels.min() <= labels.max() < num_classes
    ):
        raise DataError(f"{path}: {label_key!r} must hold {len(data)} labels in [0, {num_classes})")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels  # (n, 32, 32, 3)


def load_cifar(spec: CifarSpec, request: DataRequest) -> ImageData:
    """Read a CIFAR archive from `request.root` (default data/<name>), fetching it if allowed."""
    root = request.root or Path("data") / spec.name
    folder = _cifar_folder(spec, root, request)
    if request.verify:
        for file, md5 in spec.files():
            if (got := md5_of_file(folder / file)) != md5:
                raise DataError(
                    f"{folder / file} has MD5 {got}, expected {md5}: the file is corrupt or not "
                    f"the published {spec.title}; replace it, or pass --set data.verify=false "
                    f"for a re-packed archive"
                )
    names = _unpickle(folder / spec.meta[0]).get(spec.names_key)
    if not isinstance(names, list) or not names:
        raise DataError(f"{folder / spec.meta[0]}: no class names under {spec.names_key!r}")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    parts = {
        split: [read_cifar_batch(folder / f, spec.label_key, len(classes)) for f, _ in files]
        for split, files in (("train", spec.train), ("test", spec.test))
    }
    train, test = (
        (np.concatenate([x for x, _ in parts[s]]), np.concatenate([y for _, y in parts[s]]))
        for s in ("train", "test")
    )
    return as_image_data(spec.name, classes, train, test, folder)


def _cifar_folder(spec: CifarSpec, root: Path, request: DataRequest) -> Path:
    """The folder holding the batch files: found, or extracted from the (fetched) archive."""
    for folder in (root / spec.folder, root):
        if all((folder / f).is_file() for f, _ in spec.files()):
            return folder
    archive = root / spec.archive
    if not archive.is_file():
        if not request.download:
            raise DataError(_cifar_missing(spec, root, "downloads are off (data.download=false)"))
        try:
            fetch(spec.url, archive, spec.archive_md5)
        except DataError as exc:
            raise DataError(_cifar_missing(spec, root, str(exc))) from None
    elif request.verify and (got := md5_of_file(archive)) != spec.archive_md5:
        raise DataError(
            f"{archive} has MD5 {got}, expected {spec.archive_md5}: it is truncated or corrupt; "
            f"delete it to download it again"
        )
    _extract(spec, archive, root)
    return root / spec.folder


def _cifar_missing(spec: CifarSpec, root: Path, reason: str) -> str:
    files = ", ".join(f for f, _ in spec.files())
    return (
        f"{spec.title} not found: expected {root / spec.folder}/{{{files}}} or the archive "
        f"{root / spec.archive} (MD5 {spec.archive_md5}) from {spec.url}; {reason}. "
        f"Put the archive there or pass --data-root FOLDER"
    )


def _extract(spec: CifarSpec, archive: Path, root: Path) -> None:
    """Extract the expected members into a temporary folder, then rename it into place."""
    wanted = {f"{spec.folder}/{f}" for f, _ in spec.files()}
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name in wanted and m.isfile()]
            if len(members) != len(wanted):
                found = sorted(m.name for m in members)
                raise DataError(f"{archive} lacks some of {sorted(wanted)}; it has {found}")
            tar.extractall(staging, members=members, filter="data")
        os.replace(staging / spec.folder, root / spec.folder)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{archive} is truncated or corrupt: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


DATASETS.add("cifar10", lambda request: load_cifar(CIFAR10, request))
DATASETS.add("cifar100", lambda request: load_cifar(CIFAR100, request))
