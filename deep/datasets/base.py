"""What every dataset loader returns and raises, and the registry the loaders fill.

A loader is a function DataRequest -> ImageData, registered by name in `DATASETS` by the module
that defines it (`deep.datasets.cifar`, `.idx`, `.folder`); importing `deep.datasets` imports
them all. Images are (N, H, W, C) uint8 and labels (N,) int64, on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ufm.registry import Registry

__all__ = [
    "DATASETS",
    "Arrays",
    "DataError",
    "DataRequest",
    "ImageData",
    "as_image_data",
    "load_dataset",
]


class DataError(ValueError):
    """Data that is missing, truncated, corrupt or not in the expected format."""


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


def as_image_data(
    name: str, classes: Sequence[str], train: Arrays, test: Arrays, source: object
) -> ImageData:
    """An `ImageData` on the CPU from numpy (images, labels) pairs of the two splits."""
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
