"""Fixtures of the deep tests: tiny datasets in each real format, written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deep import fakes


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar10")
    fakes.write_cifar10(root)
    return root


@pytest.fixture(scope="session")
def cifar100_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar100")
    fakes.write_cifar100(root)
    return root


@pytest.fixture(scope="session")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fakes.write_idx_dataset(tmp_path_factory.mktemp("fashion-mnist"))


@pytest.fixture(scope="session")
def folder_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fakes.write_folder_dataset(tmp_path_factory.mktemp("folder"), per_class=16)
