"""Image folders: ROOT/train/CLASS/*.png|jpg|... and ROOT/test/CLASS/*, read with Pillow.

Classes are the sorted sub-folder names, which must be the same in both splits. Images are
converted to one mode (L when all are grey, RGB otherwise) and must share one size unless
`image_size` resizes them all. Registered as `folder`.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from deep.datasets.base import DATASETS, DataError, DataRequest, ImageData, as_image_data

__all__ = ["IMAGE_SUFFIXES", "load_folder"]


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
    return as_image_data(
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
