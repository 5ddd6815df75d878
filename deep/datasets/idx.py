"""IDX datasets (the MNIST layout): Fashion-MNIST (Xiao et al. 2017), gzipped or not.

The four files are read from `root`, from /usr/share/datasets/fashion-mnist (Debian package
dataset-fashion-mnist) or from data/fashion-mnist, and downloaded there when missing and a
network is there. The content of each file is checked against its published MD5. Registered as
`fashion-mnist`.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deep.datasets.base import DATASETS, DataError, DataRequest, ImageData, as_image_data
from deep.datasets.download import fetch, md5_of_bytes

__all__ = ["FASHION_MNIST", "IdxSpec", "load_idx", "read_idx"]


@dataclass(frozen=True)
class IdxSpec:
    """An IDX dataset (MNIST layout): four files, their MD5s and where to look for them."""

    name: str
    title: str
    base_url: str
    files: tuple[tuple[str, str, str], ...]  # (file name, MD5 of the content, MD5 of the .gz)
    classes: tuple[str, ...]
    search: tuple[str, ...]  # folders tried when no root is given, before data/<name>


FASHION_MNIST = IdxSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    files=(
        (
            "train-images-idx3-ubyte",
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        ),
        (
            "train-labels-idx1-ubyte",
            "9018921c3c673c538a1fc5bad174d6f9",
            "25c81989df183df01b3e8a0aad5dffbe",
        ),
        (
            "t10k-images-idx3-ubyte",
            "8181f5470baa50b63fa0f6fddb340f0a",
            "bef4ecab320f06d8554ea6380940ec79",
        ),
        (
            "t10k-labels-idx1-ubyte",
            "15d484375f8d13e6eb1aabb0c3f46965",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
    ),
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    search=("/usr/share/datasets/fashion-mnist",),
)


def read_idx(path: Path, md5: str | None = None) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not) as an array of the shape in its header."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is truncated or corrupt: {exc}") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim]) if len(raw) >= 4 + 4 * ndim else None
    offset = 4 + 4 * ndim
    if dims is None or len(raw) != offset + math.prod(dims):  # exact: no int64 wrap-around
        raise DataError(f"{path} is truncated: {len(raw)} bytes do not match its header {dims}")
    if md5 is not None and (got := md5_of_bytes(raw)) != md5:
        raise DataError(
            f"{path} has content MD5 {got}, expected {md5}: corrupt or not the published file; "
            f"pass --set data.verify=false for other IDX data"
        )
    return np.frombuffer(bytearray(raw), np.uint8, offset=offset).reshape(dims)  # writable


def load_idx(spec: IdxSpec, request: DataRequest) -> ImageData:
    """Read an IDX dataset from the first folder that has all four files (fetching if allowed)."""
    folder = _idx_folder(spec, request)
    arrays = [
        read_idx(_idx_file(folder, name), content_md5 if request.verify else None)
        for name, content_md5, _ in spec.files
    ]
    train_x, train_y, test_x, test_y = arrays
    for x, y, split in ((train_x, train_y, "train"), (test_x, test_y, "test")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{spec.title} {split}: {x.shape} images do not match {y.shape} labels")
        if len(y) and y.max() >= len(spec.classes):
            raise DataError(f"{spec.title} {split}: label {y.max()} >= {len(spec.classes)} classes")
    return as_image_data(
        spec.name, spec.classes, (train_x[..., None], train_y), (test_x[..., None], test_y), folder
    )


def _idx_file(folder: Path, name: str) -> Path:
    gz = folder / f"{name}.gz"
    return gz if gz.is_file() else folder / name


def _idx_folder(spec: IdxSpec, request: DataRequest) -> Path:
    default = Path("data") / spec.name
    candidates = [request.root] if request.root else [*map(Path, spec.search), default]
    for folder in candidates:
        if all(_idx_file(folder, name).is_file() for name, _, _ in spec.files):
            return folder
    target = request.root or default
    if not request.download:
        raise DataError(_idx_missing(spec, candidates, "downloads are off (data.download=false)"))
    try:
        for name, _, gz_md5 in spec.files:
            if not _idx_file(target, name).is_file():
                fetch(spec.base_url + name + ".gz", target / f"{name}.gz", gz_md5)
    except DataError as exc:
        raise DataError(_idx_missing(spec, candidates, str(exc))) from None
    return target


def _idx_missing(spec: IdxSpec, folders: list[Path], reason: str) -> str:
    names = ", ".join(f"{name}.gz" for name, _, _ in spec.files)
    where = " or ".join(str(f) for f in folders)
    return (
        f"{spec.title} not found: expected {names} in {where}; {reason}. Install the Debian "
        f"package dataset-fashion-mnist (make data) or pass --data-root FOLDER"
    )


DATASETS.add("fashion-mnist", lambda request: load_idx(FASHION_MNIST, request))
