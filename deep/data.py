"""Image datasets in their published formats, read into uint8 tensors, by name from a registry.

- `cifar10`, `cifar100`: the python-pickle archives of Krizhevsky (2009), checked against the
  published MD5 sums, downloaded when missing and a network is there, and unpickled by an
  allow-list unpickler that accepts only what those archives contain (numpy arrays, lists,
  bytes): a crafted archive cannot run code.
- `fashion-mnist`: the IDX files of Xiao et al. (2017), gzipped or not, from `root`, from
  /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist) or from data/.
- `folder`: ROOT/train/CLASS/*.png|jpg|... and ROOT/test/CLASS/*, read with Pillow.

Every loader returns an `ImageData` with images (N, H, W, C) uint8 and labels (N,) int64 on the
CPU, and raises `DataError` with one message naming what is missing or wrong.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import pickletools
import shutil
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from deep.fetch import DataError, fetch, md5_of_bytes, md5_of_file
from ufm.registry import Registry

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "DATASETS",
    "FASHION_MNIST",
    "CifarSpec",
    "DataError",
    "DataRequest",
    "IdxSpec",
    "ImageData",
    "load_cifar",
    "load_dataset",
    "load_folder",
    "load_idx",
    "read_cifar_batch",
    "read_idx",
]


@dataclass(frozen=True)
class ImageData:
    """A train/test split: images (N, H, W, C) uint8, labels (N,) int64, class names."""

    name: str
    classes: tuple[str, ...]
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    source: str  # where the files were read from

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[-1])


@dataclass(frozen=True)
class DataRequest:
    """Where to look and what a loader may do."""

    root: Path | None = None  # None: the dataset's usual places
    download: bool = True  # fetch missing files when a network is there
    verify: bool = True  # compare files with the published MD5 sums
    image_size: int | None = None  # folder datasets: resize to a square of this side [pixels]


DATASETS: Registry[Callable[[DataRequest], ImageData]] = Registry("dataset")


def load_dataset(name: str, request: DataRequest) -> ImageData:
    """Read the registered dataset `name`."""
    return DATASETS.get(name)(request)


Arrays = tuple[np.ndarray, np.ndarray]  # images (N, H, W, C) uint8, labels (N,)


def _as_image_data(
    name: str, classes: Sequence[str], train: Arrays, test: Arrays, source: object
) -> ImageData:
    to_t = torch.from_numpy
    return ImageData(
        name,
        tuple(classes),
        to_t(np.ascontiguousarray(train[0])),
        to_t(np.asarray(train[1], dtype=np.int64)),
        to_t(np.ascontiguousarray(test[0])),
        to_t(np.asarray(test[1], dtype=np.int64)),
        str(source),
    )


# ----------------------------------------------------------------------------- CIFAR


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


CIFAR10 = CifarSpec(
    name="cifar10",
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
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

CIFAR100 = CifarSpec(
    name="cifar100",
    title="CIFAR-100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
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
    return _as_image_data(spec.name, classes, train, test, folder)


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


# ----------------------------------------------------------------------------- IDX


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
    return _as_image_data(
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


# ----------------------------------------------------------------------------- image folders

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def load_folder(request: DataRequest) -> ImageData:
    """ROOT/train/CLASS/* and ROOT/test/CLASS/*; classes are the sorted sub-folder names."""
    if request.root is None:
        raise DataError("the folder dataset needs --data-root ROOT with ROOT/train/CLASS/*")
    try:
        from PIL import Image
    except ImportError:
        raise DataError("reading image folders needs Pillow: pip install pillow") from None
    classes = _folder_classes(request.root)
    files = {split: _class_files(request.root / split, classes) for split in ("train", "test")}
    images = {split: [_read_image(Image, p) for p in paths] for split, (paths, _) in files.items()}
    mode = "L" if all(im.mode == "L" for split in images.values() for im in split) else "RGB"
    size = _common_size(images, request.image_size)
    arrays = {
        split: np.stack([_to_array(im, mode, size) for im in ims]) for split, ims in images.items()
    }
    return _as_image_data(
        f"folder:{request.root.name}",
        classes,
        (arrays["train"], files["train"][1]),
        (arrays["test"], files["test"][1]),
        request.root,
    )


def _folder_classes(root: Path) -> list[str]:
    splits = {}
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DataError(
                f"{root / split} is missing; a folder dataset is ROOT/train/CLASS/* and "
                f"ROOT/test/CLASS/*"
            )
        splits[split] = sorted(
            p.name for p in (root / split).iterdir() if p.is_dir() and not p.name.startswith(".")
        )
    if not splits["train"]:
        raise DataError(f"{root / 'train'} has no class folders")
    if splits["train"] != splits["test"]:
        raise DataError(
            f"class folders differ: train has {splits['train']}, test has {splits['test']}"
        )
    return splits["train"]


def _class_files(split_root: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for k, name in enumerate(classes):
        found = sorted(
            p
            for p in (split_root / name).iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not found:
            raise DataError(
                f"class folder {split_root / name} has no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        paths += found
        labels += [k] * len(found)
    return paths, labels


def _read_image(image_module: ModuleType, path: Path) -> Any:  # a loaded PIL image
    try:
        with image_module.open(path) as im:
            im.load()
            return im.copy()
    except Exception as exc:  # OSError, SyntaxError, ValueError, PIL's
        # DecompressionBombError (a tiny file that decodes to gigapixels), MemoryError, ...
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise DataError(f"cannot read image {path}: {detail}") from None


def _common_size(images: dict, image_size: int | None) -> tuple[int, int]:
    if image_size is not None:
        if image_size < 1:
            raise DataError(f"image_size must be >= 1, got {image_size}")
        return (image_size, image_size)
    sizes = {im.size for split in images.values() for im in split}
    if len(sizes) > 1:
        raise DataError(
            f"images have different sizes {sorted(sizes)[:4]}; pass --set data.image_size=N "
            f"to resize them all to N x N"
        )
    return sizes.pop()


def _to_array(image: Any, mode: str, size: tuple[int, int]) -> np.ndarray:
    image = image.convert(mode)
    if image.size != size:
        image = image.resize(size)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array  # (H, W, C)


DATASETS.add("folder", load_folder)
