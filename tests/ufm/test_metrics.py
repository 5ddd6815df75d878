"""NC metrics: exact on collapsed inputs, invariant to rotation and scale, conventions explicit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ufm.etf import haar_frame, simplex_etf
from ufm.metrics import (
    centred_gram,
    class_means,
    gram_cosines,
    gram_group_cosines,
    group_cosines,
    group_spread,
    nc1,
    nc_metrics,
    pairwise_cosines,
)


def _collapsed(counts: list[int], d: int, seed: int, scale: float = 2.0):
    k = len(counts)
    w = simplex_etf(k, d, seed=seed).T  # (K, d)
    y = torch.repeat_interleave(torch.arange(k), torch.tensor(counts))
    return scale * w[y], y, w


def _noisy(counts: list[int], d: int, seed: int, noise: float = 0.3):
    h, y, w = _collapsed(counts, d, seed)
    gen = torch.Generator().manual_seed(seed)
    w_noisy = w + 0.2 * torch.randn(w.shape, generator=gen, dtype=w.dtype)
    return h + noise * torch.randn(h.shape, generator=gen, dtype=h.dtype), y, w_noisy


counts_st = st.lists(st.integers(2, 30), min_size=3, max_size=8)


@given(counts_st, st.integers(0, 1000))
def test_zero_on_perfectly_collapsed_etf(counts: list[int], seed: int) -> None:
    h, y, w = _collapsed(counts, len(counts) + 3, seed)
    m = nc_metrics(h, y, w, num_classes=len(counts), minority=[0, 1])
    for key in (
        "nc1",
        "etf_distance",
        "etf_distance_h",
        "self_duality",
        "ncc_mismatch",
        "equinorm_h",
        "equinorm_w",
        "equiangular_h",
        "max_angle_w",
    ):
        assert abs(m[key]) < 1e-12, (key, m[key])
    assert m["minority_cosine_w"] == pytest.approx(-1 / (len(counts) - 1))


@given(counts_st, st.integers(0, 1000), st.floats(0.01, 100.0))
def test_invariant_to_rotation_and_scale(counts: list[int], seed: int, scale: float) -> None:
    d = len(counts) + 2
    h, y, w = _noisy(counts, d, seed)
    q = haar_frame(d, d, seed=seed + 1)  # a random rotation
    base = nc_metrics(h, y, w, num_classes=len(counts), minority=[0, 1])
    moved = nc_metrics(scale * h @ q, y, scale * w @ q, num_classes=len(counts), minority=[0, 1])
    for key, value in base.items():
        assert moved[key] == pytest.approx(value, rel=1e-7, abs=1e-9), key


def test_nc1_matches_a_direct_loop() -> None:
    h, y, _ = _noisy([7, 5, 3, 9], 6, seed=4)
    hn, yn = h.numpy(), y.numpy()
    means = np.stack([hn[yn == k].mean(0) for k in range(4)])
    sw = sum(np.outer(hn[i] - means[yn[i]], hn[i] - means[yn[i]]) for i in range(len(yn)))
    sw /= len(yn)
    centred = means - means.mean(0)
    sb = centred.T @ centred / 4
    expected = np.trace(sw @ np.linalg.pinv(sb)) / 4
    assert nc1(h, y, 4) == pytest.approx(expected, rel=1e-9)


def test_conventions_are_explicit_and_matter_under_imbalance() -> None:
    h, y, w = _noisy([50, 10, 2], 4, seed=1)
    mu, mu_g, _ = class_means(h, y, 3, global_mean="samples")
    assert torch.allclose(mu_g, h.mean(0))
    _, mu_g_c, _ = class_means(h, y, 3, global_mean="classes")
    assert torch.allclose(mu_g_c, mu.mean(0))
    a = nc_metrics(h, y, w, num_classes=3, global_mean="samples", between_cov="samples")
    b = nc_metrics(h, y, w, num_classes=3, global_mean="classes", between_cov="classes")
    assert a["nc1"] != pytest.approx(b["nc1"], rel=1e-3)
    with pytest.raises(ValueError, match="global_mean"):
        nc1(h, y, 3, global_mean="median")
    with pytest.raises(ValueError, match="between_cov"):
        nc1(h, y, 3, between_cov="both")


def test_within_class_weighting_is_explicit() -> None:
    """Sigma_W per sample (1/N, the default) or class-averaged ((1/K) sum_k 1/n_k): under
    imbalance the head class dominates the first and counts once in the second."""
    counts = [60, 6, 3]
    h, y, _ = _collapsed(counts, 5, seed=3)
    gen = torch.Generator().manual_seed(3)
    spread = torch.tensor([0.5, 0.01, 0.01], dtype=h.dtype)[y]  # a noisy head, tight tails
    h = h + spread[:, None] * torch.randn(h.shape, generator=gen, dtype=h.dtype)
    hn, yn = h.numpy(), y.numpy()
    means = np.stack([hn[yn == k].mean(0) for k in range(3)])
    scatter = [(hn[yn == k] - means[k]).T @ (hn[yn == k] - means[k]) for k in range(3)]
    centred = means - means.mean(0)
    sb_pinv = np.linalg.pinv(centred.T @ centred / 3)
    per_sample = np.trace(sum(scatter) / len(yn) @ sb_pinv) / 3
    per_class = np.trace(sum(s / n for s, n in zip(scatter, counts, strict=True)) / 3 @ sb_pinv) / 3
    assert nc1(h, y, 3) == pytest.approx(per_sample, rel=1e-9)  # the default is unchanged
    assert nc1(h, y, 3, within_cov="samples") == pytest.approx(per_sample, rel=1e-9)
    assert nc1(h, y, 3, within_cov="classes") == pytest.approx(per_class, rel=1e-9)
    assert per_class < 0.7 * per_sample  # the convention matters here
    m = nc_metrics(h, y, num_classes=3, within_cov="classes")
    assert m["nc1"] == pytest.approx(per_class, rel=1e-9)
    assert nc_metrics(h, y, num_classes=3)["nc1"] == pytest.approx(per_sample, rel=1e-9)
    balanced_h, balanced_y, _ = _noisy([8, 8, 8], 5, seed=4)  # equal counts: the same number
    assert nc1(balanced_h, balanced_y, 3, within_cov="classes") == pytest.approx(
        nc1(balanced_h, balanced_y, 3), rel=1e-12
    )
    with pytest.raises(ValueError, match="within_cov"):
        nc1(h, y, 3, within_cov="tail")


def test_ncc_mismatch_counts_disagreements() -> None:
    # Class means at +-1 on a line, classifier flipped: every sample disagrees.
    h = torch.tensor([[1.0], [1.2], [-1.0], [-0.8]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    w = torch.tensor([[-1.0], [1.0]], dtype=torch.float64)
    assert nc_metrics(h, y, w, num_classes=2)["ncc_mismatch"] == 1.0
    assert nc_metrics(h, y, -w, num_classes=2)["ncc_mismatch"] == 0.0


def test_minority_collapse_reads_one() -> None:
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0], [-1.0, -1.0001]], dtype=torch.float64)
    mean_cos, max_cos = group_cosines(w, [2, 3])
    assert mean_cos == pytest.approx(1.0, abs=1e-8) and max_cos <= 1.0 + 1e-15


def test_group_cosines_from_the_gram_equal_those_of_the_rows() -> None:
    gen = torch.Generator().manual_seed(5)
    a = torch.randn(6, 4, generator=gen, dtype=torch.float64)  # rank 4: any factor of the Gram
    group = [1, 3, 4]
    expected = group_cosines(a, group)
    for gram in (a @ a.T, (a @ a.T).numpy(), 7.0 * a @ a.T):
        assert gram_group_cosines(gram, group) == pytest.approx(expected, abs=1e-14)
    cos = (a / a.norm(dim=1, keepdim=True)) @ (a / a.norm(dim=1, keepdim=True)).T
    assert gram_group_cosines(cos, group) == pytest.approx(expected, abs=1e-14)  # its own Gram
    with pytest.raises(ValueError, match="at least 2 classes"):
        gram_group_cosines(a @ a.T, [2])


def test_group_spread_is_zero_exactly_for_equal_rows() -> None:
    w = torch.tensor([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    assert group_spread(w, [2, 3]) == 0.0 and group_spread(w, [2, 3], rms=True) == 0.0
    # rows 0, 1 about their mean (1.5, 0.5): sqrt(2 * 2.5) / sqrt(9 + 1 + 2 + 2)
    assert group_spread(w, [0, 1]) == pytest.approx(math.sqrt(5 / 14), rel=1e-15)
    # RMS form: sqrt(mean_G ||w_k - wbar||^2) / sqrt(mean_k ||w_k||^2) = sqrt(2.5 / 3.5)
    assert group_spread(w, [0, 1], rms=True) == pytest.approx(math.sqrt(2.5 / 3.5), rel=1e-15)
    w[3, 1] += 1e-9
    assert 0 < group_spread(w, [2, 3]) < 1e-9
    assert math.isnan(group_spread(torch.zeros(3, 2), [0, 1]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        group_spread(w, [0])


def test_bad_inputs() -> None:
    h, y, w = _noisy([3, 3, 3], 4, seed=0)
    with pytest.raises(ValueError, match="no samples"):
        nc_metrics(h, y, w, num_classes=4)
    with pytest.raises(ValueError, match="classifier must have shape"):
        nc_metrics(h, y, w[:, :2], num_classes=3)
    with pytest.raises(ValueError, match="labels must"):
        nc_metrics(h, y[:-1], w, num_classes=3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        group_cosines(w, [1])


def test_float32_inputs_computed_in_float64() -> None:
    h, y, w = _noisy([20, 10, 5], 5, seed=2)
    m64 = nc_metrics(h, y, w, num_classes=3)
    m32 = nc_metrics(h.float(), y, w.float(), num_classes=3)
    for key, value in m64.items():
        assert m32[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert math.isfinite(m32["nc1"])


def test_cuda_matches_cpu(cuda: torch.device) -> None:
    h, y, w = _noisy([20, 10, 5], 5, seed=2)
    cpu = nc_metrics(h, y, w, num_classes=3, minority=[1, 2])
    gpu = nc_metrics(h.to(cuda), y.to(cuda), w.to(cuda), num_classes=3, minority=[1, 2])
    for key, value in cpu.items():
        assert gpu[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_centred_gram_and_gram_cosines_from_rows() -> None:
    gen = torch.Generator().manual_seed(3)
    rows = torch.randn(6, 9, generator=gen, dtype=torch.float64) + 2.0  # far from centred
    centred = rows - rows.mean(0)
    gram = rows @ rows.T
    torch.testing.assert_close(centred_gram(gram), centred @ centred.T, rtol=0, atol=1e-12)
    expected = (centred @ centred.T).numpy()
    np.testing.assert_allclose(centred_gram(gram.numpy()), expected, atol=1e-12)
    cos = gram_cosines(expected)
    np.testing.assert_allclose(cos, pairwise_cosines(centred).numpy(), atol=1e-12)
    assert gram_cosines(np.zeros((3, 3))).tolist() == np.zeros((3, 3)).tolist()  # no NaN
