"""Property-based tests of the seeded simplex ETF (DESIGN section 3)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import TOL
from ufm.etf import centering_basis, etf_gram, haar_frame, simplex_etf


@st.composite
def etf_sizes(draw: st.DrawFn) -> tuple[int, int, int]:
    k = draw(st.integers(2, 24))
    d = draw(st.integers(k - 1, k + 24))
    seed = draw(st.integers(0, 2**31 - 1))
    return k, d, seed


@given(etf_sizes())
def test_gram_matrix_is_the_simplex_gram(size: tuple[int, int, int]) -> None:
    k, d, seed = size
    m = simplex_etf(k, d, seed=seed)
    assert m.shape == (d, k)
    torch.testing.assert_close(m.T @ m, etf_gram(k), **TOL[torch.float64])


@given(etf_sizes())
def test_unit_norms_zero_sum_rank(size: tuple[int, int, int]) -> None:
    k, d, seed = size
    m = simplex_etf(k, d, seed=seed)
    torch.testing.assert_close(m.norm(dim=0), torch.ones(k, dtype=m.dtype), **TOL[m.dtype])
    assert float(m.sum(dim=1).abs().max()) < 1e-12
    assert int(torch.linalg.matrix_rank(m)) == k - 1


@given(etf_sizes())
def test_reproducible_from_seed_and_gram_independent_of_rotation(
    size: tuple[int, int, int],
) -> None:
    k, d, seed = size
    a, b = simplex_etf(k, d, seed=seed), simplex_etf(k, d, seed=seed)
    assert torch.equal(a, b)
    other = simplex_etf(k, d, seed=seed + 1)
    torch.testing.assert_close(a.T @ a, other.T @ other, **TOL[torch.float64])
    if d > 1:
        assert not torch.allclose(a, other)


def test_does_not_touch_global_random_state() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    simplex_etf(10, 64, seed=7)
    assert torch.equal(before, torch.random.get_rng_state())


@pytest.mark.parametrize(("k", "d"), [(10, 9), (10, 10), (10, 64), (2, 1), (3, 2)])
def test_boundary_dimensions(k: int, d: int) -> None:
    m = simplex_etf(k, d, seed=0)
    torch.testing.assert_close(m.T @ m, etf_gram(k), **TOL[torch.float64])


def test_float32_and_device_argument() -> None:
    m = simplex_etf(5, 8, seed=1, dtype=torch.float32, device="cpu")
    assert m.dtype == torch.float32
    torch.testing.assert_close(m.T @ m, etf_gram(5, dtype=torch.float32), **TOL[torch.float32])


@pytest.mark.parametrize(
    ("k", "d", "match"),
    [
        (10, 8, "dim >= 9"),
        (1, 4, "num_classes >= 2"),
        (3.0, 4, "num_classes"),
        (4, 2.5, "dim"),
    ],
)
def test_impossible_sizes_raise(k: object, d: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        simplex_etf(k, d)  # type: ignore[arg-type]


@given(st.integers(2, 30))
def test_centering_basis(k: int) -> None:
    v = centering_basis(k)
    torch.testing.assert_close(v.T @ v, torch.eye(k - 1, dtype=v.dtype), **TOL[v.dtype])
    torch.testing.assert_close(v @ v.T, torch.eye(k, dtype=v.dtype) - 1.0 / k, **TOL[v.dtype])


@given(st.integers(1, 20), st.integers(0, 20), st.integers(0, 1000))
def test_haar_frame_is_orthonormal(cols: int, extra: int, seed: int) -> None:
    u = haar_frame(cols + extra, cols, seed=seed)
    torch.testing.assert_close(u.T @ u, torch.eye(cols, dtype=u.dtype), **TOL[u.dtype])


def test_haar_frame_is_haar_distributed() -> None:
    # The first entry of a Haar column is distributed as a coordinate of a uniform point on the
    # sphere: mean 0 and variance 1/d. 4000 draws put the sample mean within ~4 std errors.
    d = 5
    first = torch.stack([haar_frame(d, 2, seed=s)[0, 0] for s in range(4000)])
    assert abs(float(first.mean())) < 4 * (1 / d / 4000) ** 0.5
    assert abs(float((first**2).mean()) - 1 / d) < 0.02
