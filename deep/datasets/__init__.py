"""Image datasets in their published formats, read into uint8 tensors, by name from a registry.

- `cifar10`, `cifar100` (`deep.datasets.cifar`): the python-pickle archives of Krizhevsky
  (2009), checked against the published MD5 sums, downloaded when missing, unpickled by an
  allow-list unpickler.
- `fashion-mnist` (`deep.datasets.idx`): the IDX files of Xiao et al. (2017).
- `folder` (`deep.datasets.folder`): ROOT/train/CLASS/* and ROOT/test/CLASS/*, read with Pillow.

`deep.datasets.base` holds what they share (ImageData, DataRequest, DataError, the registry);
`deep.datasets.download` fetches files by checksum. Every loader returns an `ImageData` with
images (N, H, W, C) uint8 and labels (N,) int64 on the CPU, and raises `DataError` with one
message naming what is missing or wrong.
"""

from deep.datasets import cifar, folder, idx  # noqa: F401  (each registers its loaders)
from deep.datasets.base import DATASETS, DataError, DataRequest, ImageData, load_dataset

__all__ = ["DATASETS", "DataError", "DataRequest", "ImageData", "load_dataset"]
