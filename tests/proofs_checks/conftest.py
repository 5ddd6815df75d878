"""The checks' own thread setting for every test here: the problems are K <= 100 matrices, where
torch's default threads only add contention (see `proofs_checks.registry.Check.run`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from proofs_checks.registry import torch_threads


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    with torch_threads(1):
        yield
