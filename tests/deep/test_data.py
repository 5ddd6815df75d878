"""Readers of the published formats, on tiny files written in those formats."""

from __future__ import annotations

import dataclasses
import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from deep.datasets import DataError, DataRequest, load_dataset
from deep.datasets.cifar import CIFAR10, CifarSpec, load_cifar
from deep.datasets.download import fetch, md5_of_file
from tests.deep import fakes


def _request(root: Path, **kw) -> DataRequest:
    return DataRequest(root=root, download=False, verify=False, **kw)


def test_cifar10_pixels_and_labels_round_trip(cifar10_root: Path) -> None:
    got = load_dataset("cifar10", _request(cifar10_root))
    labels = fakes.balanced_labels(10, 10, 0)
    expected = fakes.images(labels, (3, 32, 32), 1).transpose(0, 2, 3, 1)  # CHW rows -> NHWC
    assert got.classes[:2] == ("airplane", "automobile") and got.num_classes == 10
    assert got.train_images.dtype == torch.uint8 and got.train_images.shape == (100, 32, 32, 3)
    assert np.array_equal(got.train_images.numpy(), expected)
    assert np.array_equal(got.train_labels.numpy(), labels)
    assert got.test_images.shape == (40, 32, 32, 3)


def test_cifar100_reads_fine_labels(cifar100_root: Path) -> None:
    got = load_dataset("cifar100", _request(cifar100_root))
    assert got.num_classes == 100 and got.train_images.shape == (300, 32, 32, 3)
    assert torch.bincount(got.train_labels).tolist() == [3] * 100


def test_cifar_md5_is_checked(cifar10_root: Path) -> None:
    with pytest.raises(DataError, match=r"data_batch_1 has MD5 .* expected c99caf"):
        load_dataset("cifar10", DataRequest(root=cifar10_root, download=False, verify=True))


def test_allow_list_unpickler_refuses_code(tmp_path: Path) -> None:
    folder = fakes.write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match=r"refused to load .*data_batch_3: it asks for \S*print"):
        load_dataset("cifar10", _request(tmp_path))


def test_truncated_cifar_batch_is_reported(tmp_path: Path) -> None:
    folder = fakes.write_cifar10(tmp_path)
    batch = folder / "test_batch"
    batch.write_bytes(batch.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"test_batch is not a readable CIFAR pickle"):
        load_dataset("cifar10", _request(tmp_path))


def test_missing_cifar_names_the_expected_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", _request(tmp_path))
    message = str(err.value)
    assert "cifar-10-batches-py" in message and "data_batch_1" in message
    assert "cifar-10-python.tar.gz" in message and "c58f30108f718f92721af3b95e74349a" in message


def _local_spec(tmp_path: Path) -> CifarSpec:
    """CIFAR-10's layout with a file:// URL and the checksums of a fake archive."""
    source = fakes.write_cifar10(tmp_path / "source")
    archive = fakes.tar_gz(source, tmp_path / "served.tar.gz")
    files = {f: md5_of_file(source / f) for f, _ in CIFAR10.files()}
    return dataclasses.replace(
        CIFAR10,
        url=archive.as_uri(),
        archive_md5=md5_of_file(archive),
        train=tuple((f, files[f]) for f, _ in CIFAR10.train),
        test=tuple((f, files[f]) for f, _ in CIFAR10.test),
        meta=(CIFAR10.meta[0], files[CIFAR10.meta[0]]),
    )


def test_cifar_download_verifies_and_extracts(tmp_path: Path) -> None:
    spec = _local_spec(tmp_path)
    root = tmp_path / "data"
    got = load_cifar(spec, DataRequest(root=root, download=True, verify=True))
    assert got.train_images.shape == (100, 32, 32, 3)
    assert (root / spec.archive).is_file() and (root / spec.folder / "test_batch").is_file()
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no staging left


def test_download_with_wrong_checksum_keeps_nothing(tmp_path: Path) -> None:
    spec = dataclasses.replace(_local_spec(tmp_path), archive_md5="0" * 32)
    root = tmp_path / "data"
    with pytest.raises(DataError, match="expected 00000000"):
        load_cifar(spec, DataRequest(root=root, download=True))
    assert not root.exists()  # neither the file nor the folder the download made for it
    root.mkdir()  # a folder that was there before stays, empty
    with pytest.raises(DataError, match="expected 00000000"):
        load_cifar(spec, DataRequest(root=root, download=True))
    assert list(root.iterdir()) == []


def test_unreachable_download_is_one_clear_error(tmp_path: Path) -> None:
    spec = dataclasses.replace(CIFAR10, url=(tmp_path / "nowhere.tar.gz").as_uri())
    with pytest.raises(DataError, match=r"CIFAR-10 not found: .*could not download"):
        load_cifar(spec, DataRequest(root=tmp_path / "data", download=True))


def test_truncated_archive_is_reported(tmp_path: Path) -> None:
    spec = _local_spec(tmp_path)
    root = tmp_path / "data"
    root.mkdir()
    served = Path(spec.url.removeprefix("file://"))
    (root / spec.archive).write_bytes(served.read_bytes()[:3000])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_cifar(spec, DataRequest(root=root, download=False, verify=True))
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_cifar(spec, DataRequest(root=root, download=False, verify=False))
    assert not (root / spec.folder).exists()


def test_fetch_moves_the_file_only_when_complete(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 5000)
    dest = tmp_path / "out" / "dest.bin"
    fetch(src.as_uri(), dest, md5_of_file(src))
    assert dest.read_bytes() == src.read_bytes()

    class Broken:
        def __init__(self, *a, **k) -> None:
            self.calls = 0
            self.headers: dict[str, str] = {}

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            return None

        def read(self, n: int) -> bytes:
            self.calls += 1
            if self.calls > 1:
                raise ConnectionResetError("connection reset")
            return b"partial"

    with pytest.raises(DataError, match="connection reset"):
        fetch("http://example.invalid/f", tmp_path / "out" / "g.bin", None, opener=Broken)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dest.bin"]


def test_idx_round_trip(idx_root: Path) -> None:
    got = load_dataset("fashion-mnist", _request(idx_root))
    labels = fakes.balanced_labels(10, 12, 6)
    assert got.train_images.shape == (120, 28, 28, 1) and got.channels == 1
    assert np.array_equal(got.train_labels.numpy(), labels)
    assert np.array_equal(got.train_images[..., 0].numpy(), fakes.images(labels, (28, 28), 16))
    assert got.classes[0] == "T-shirt/top"


def test_idx_reads_uncompressed_files_too(tmp_path: Path, idx_root: Path) -> None:
    for gz in idx_root.glob("*.gz"):
        (tmp_path / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    assert load_dataset("fashion-mnist", _request(tmp_path)).train_images.shape[0] == 120


@pytest.mark.parametrize("cut", [3, 50, -7])
def test_truncated_idx_is_reported(tmp_path: Path, idx_root: Path, cut: int) -> None:
    for gz in idx_root.glob("*.gz"):
        (tmp_path / gz.name).write_bytes(gz.read_bytes())
    raw = gzip.decompress((idx_root / "train-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:cut]))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz"):
        load_dataset("fashion-mnist", _request(tmp_path))


def test_truncated_gzip_is_reported(tmp_path: Path, idx_root: Path) -> None:
    for gz in idx_root.glob("*.gz"):
        (tmp_path / gz.name).write_bytes(gz.read_bytes())
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz is truncated or corrupt"):
        load_dataset("fashion-mnist", _request(tmp_path))


def test_idx_content_checksum(idx_root: Path) -> None:
    request = DataRequest(root=idx_root, download=False, verify=True)
    with pytest.raises(DataError, match="content MD5"):
        load_dataset("fashion-mnist", request)


def test_missing_idx_files_name_them(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz.*dataset-fashion-mnist"):
        load_dataset("fashion-mnist", _request(tmp_path))


def test_folder_dataset(folder_root: Path) -> None:
    got = load_dataset("folder", _request(folder_root))
    assert got.classes == ("cat", "dog", "owl")
    assert got.train_images.shape == (48, 12, 12, 3) and got.test_images.shape == (9, 12, 12, 3)
    assert torch.bincount(got.train_labels).tolist() == [16, 16, 16]


def test_grayscale_folder_has_one_channel(tmp_path: Path) -> None:
    fakes.write_folder_dataset(tmp_path, mode="L")
    assert load_dataset("folder", _request(tmp_path)).channels == 1


def test_folder_sizes_must_agree_unless_resized(tmp_path: Path) -> None:
    fakes.write_folder_dataset(tmp_path)
    odd = tmp_path / "train" / "cat" / "odd.png"
    odd.write_bytes(fakes.png_bytes(np.zeros((20, 16, 3), np.uint8)))
    with pytest.raises(DataError, match=r"data\.image_size"):
        load_dataset("folder", _request(tmp_path))
    got = load_dataset("folder", _request(tmp_path, image_size=10))
    assert got.train_images.shape == (25, 10, 10, 3)


def test_folder_with_an_empty_class(tmp_path: Path) -> None:
    fakes.write_folder_dataset(tmp_path)
    (tmp_path / "train" / "emu").mkdir()
    (tmp_path / "test" / "emu").mkdir()
    with pytest.raises(DataError, match=r"class folder .*train/emu has no images"):
        load_dataset("folder", _request(tmp_path))


def test_folder_classes_must_match(tmp_path: Path) -> None:
    fakes.write_folder_dataset(tmp_path)
    (tmp_path / "test" / "owl").rename(tmp_path / "test" / "bat")
    with pytest.raises(DataError, match="class folders differ"):
        load_dataset("folder", _request(tmp_path))


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    fakes.write_folder_dataset(tmp_path)
    (tmp_path / "test" / "dog" / "1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*dog/1.png"):
        load_dataset("folder", _request(tmp_path))


def test_unknown_dataset_lists_the_registered_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; choose one of: cifar10"):
        load_dataset("mnist", DataRequest())
