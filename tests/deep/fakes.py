"""Tiny datasets written in the real formats: CIFAR python pickles, IDX (gzipped), image folders.

Images carry a class-dependent brightness so that a few steps of training can tell classes
apart; everything is drawn from seeded generators.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np


def images(
    labels: np.ndarray, shape: tuple[int, ...], seed: int, num_classes: int | None = None
) -> np.ndarray:
    """uint8 images (n, *shape): noise around a brightness that grows with the label."""
    rng = np.random.default_rng(seed)
    k = num_classes or int(labels.max()) + 1
    base = (40 + 180 * labels / max(k - 1, 1)).reshape(-1, *([1] * len(shape)))
    return np.clip(base + rng.normal(0, 25, (len(labels), *shape)), 0, 255).astype(np.uint8)


def balanced_labels(num_classes: int, per_class: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))


def _dump(obj: object, path: Path) -> None:
    # Protocol 2, as the published archives (written by python 2) use.
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar10(root: Path, per_class: int = 10, test_per_class: int = 4) -> Path:
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}; returns the folder."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    labels = balanced_labels(10, per_class, 0)
    data = images(labels, (3, 32, 32), 1).reshape(len(labels), 3072)  # CHW rows, as published
    for i, part in enumerate(np.array_split(np.arange(len(labels)), 5)):
        batch = {
            b"batch_label": f"training batch {i + 1} of 5".encode(),
            b"labels": labels[part].tolist(),
            b"data": data[part],
            b"filenames": [b"x.png"] * len(part),
        }
        _dump(batch, folder / f"data_batch_{i + 1}")
    test_labels = balanced_labels(10, test_per_class, 2)
    test = images(test_labels, (3, 32, 32), 3).reshape(len(test_labels), 3072)
    _dump({b"labels": test_labels.tolist(), b"data": test}, folder / "test_batch")
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    _dump(
        {b"label_names": names, b"num_cases_per_batch": 10000, b"num_vis": 3072},
        folder / "batches.meta",
    )
    return folder


def write_cifar100(root: Path, per_class: int = 3, test_per_class: int = 1) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", per_class, 4), ("test", test_per_class, 5)):
        fine = balanced_labels(100, n, seed)
        data = images(fine, (3, 32, 32), seed + 10).reshape(len(fine), 3072)
        _dump(
            {b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist(), b"data": data},
            folder / split,
        )
    _dump(
        {
            b"fine_label_names": [f"c{k}".encode() for k in range(100)],
            b"coarse_label_names": [f"s{k}".encode() for k in range(20)],
        },
        folder / "meta",
    )
    return folder


def tar_gz(folder: Path, archive: Path) -> Path:
    """Pack `folder` as the published archives are: one top-level folder inside."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(folder: Path, per_class: int = 12, test_per_class: int = 5) -> Path:
    """The four Fashion-MNIST IDX files, gzipped, with 28 x 28 images."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", per_class, 6), ("t10k", test_per_class, 7)):
        labels = balanced_labels(10, n, seed)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(images(labels, (28, 28), seed + 10)))
        )
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return folder


def write_folder_dataset(
    root: Path,
    classes=("cat", "dog", "owl"),
    per_class: int = 8,
    test_per_class: int = 3,
    size: int = 12,
    mode: str = "RGB",
) -> Path:
    """ROOT/train/CLASS/i.png and ROOT/test/CLASS/i.png."""
    from PIL import Image

    for split, n, seed in (("train", per_class, 8), ("test", test_per_class, 9)):
        for k, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            shape = (size, size, 3) if mode == "RGB" else (size, size)
            pixels = images(np.full(n, k), shape, seed + k, len(classes))
            for i in range(n):
                Image.fromarray(pixels[i], mode=mode).save(root / split / name / f"{i}.png")
    return root


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()
