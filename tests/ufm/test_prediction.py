"""ufm.prediction: the Gram factors, the certified LPM geometry, SELI, ETF, Hong & Ling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ufm.convex import gram_factors
from ufm.metrics import centred_gram, gram_cosines, gram_group_cosines
from ufm.prediction import (
    certified_logit_distance,
    compare_geometry,
    cosine_error_bound,
    etf_prediction,
    hong_ling_prediction,
    lpm_prediction,
    seli_prediction,
    spearman,
    weight_decay_lambda,
)
from ufm.theory import seli_classifier_gram


def _etf_cosines(k: int) -> np.ndarray:
    return np.where(np.eye(k, dtype=bool), 1.0, -1.0 / (k - 1))


def test_gram_factors_recover_the_factors_of_a_balanced_factorisation() -> None:
    rng = np.random.default_rng(0)
    k, d = 5, 8
    u, _ = np.linalg.qr(rng.normal(size=(k, k)))
    v, _ = np.linalg.qr(rng.normal(size=(k, k)))
    s = np.array([3.0, 2.0, 1.5, 0.5, 0.1])
    frame, _ = np.linalg.qr(rng.normal(size=(d, k)))  # (d, K), orthonormal columns
    w = (u * np.sqrt(s)) @ frame.T  # (K, d)
    hbar = (v * np.sqrt(s)) @ frame.T
    gram_w, gram_h = gram_factors(w @ hbar.T)
    np.testing.assert_allclose(gram_w, w @ w.T, atol=1e-12)
    np.testing.assert_allclose(gram_h, hbar @ hbar.T, atol=1e-12)
    counts = np.array([9, 4, 4, 1, 1])  # regularized form: Hbar D^1/2 balances W
    gw, gh = gram_factors(w @ (hbar / np.sqrt(counts)[:, None]).T, counts)
    np.testing.assert_allclose(gw, w @ w.T, atol=1e-12)
    np.testing.assert_allclose(gh, (hbar @ hbar.T) / np.outer(counts, counts) ** 0.5, atol=1e-12)


@pytest.mark.parametrize("k", [2, 4, 10])
def test_balanced_counts_give_the_certified_etf(k: int) -> None:
    pred = lpm_prediction([50] * k, 1.0, 5.0)
    assert pred.certified, pred.note
    bound = pred.certificate["cosine_error"]
    assert bound < 1e-4
    target = _etf_cosines(k)
    assert np.abs(pred.cosine_w - target).max() <= bound + 1e-12
    assert np.abs(pred.cosine_h - target).max() <= bound + 1e-12


def test_fixed_etf_and_seli_closed_forms() -> None:
    k = 6
    etf = etf_prediction(k)
    np.testing.assert_allclose(etf.cosine_w, _etf_cosines(k), atol=1e-15)
    np.testing.assert_allclose(etf.cosine_h, _etf_cosines(k), atol=1e-15)
    np.testing.assert_allclose(seli_prediction([7] * k).cosine_w, _etf_cosines(k), atol=1e-12)
    counts = np.array([100, 100, 100, 10, 10, 1])
    seli = seli_prediction(counts)  # the same formula as ufm.theory's, by another route
    ref = seli_classifier_gram(counts)
    np.testing.assert_allclose(seli.gram_w / np.linalg.norm(seli.gram_w), ref, atol=1e-12)
    with pytest.raises(ValueError, match="K >= 2"):
        etf_prediction(1)


def test_the_lpm_collapses_the_minority_at_fang_norms_and_not_at_large_norms() -> None:
    counts = [100] * 5 + [1] * 5
    minority = range(5, 10)
    small = lpm_prediction(counts, 1.0, 5.0)
    assert small.certified, small.note
    assert gram_group_cosines(small.cosine_w, minority)[0] > 0.99  # minority collapse
    large = lpm_prediction([100] * 5 + [10] * 5, 3.0, 30.0)
    assert large.certified, large.note
    assert gram_group_cosines(large.cosine_w, minority)[0] < 0.0  # max-margin regime


def test_the_certified_bound_holds_against_an_independent_solve() -> None:
    counts = [100] * 5 + [10] * 5
    a = lpm_prediction(counts, 1.0, 5.0, seed=0)
    b = lpm_prediction(counts, 1.0, 5.0, seed=7, tol=1e-13)
    assert a.certified and b.certified
    bound = a.certificate["cosine_error"] + b.certificate["cosine_error"]
    assert np.abs(a.cosine_w - b.cosine_w).max() <= bound
    assert np.abs(a.cosine_h - b.cosine_h).max() <= bound


def test_an_unsolved_prediction_is_not_a_prediction() -> None:
    pred = lpm_prediction([100] * 5 + [1] * 5, 10.0, 100.0, max_iter=20)
    assert not pred.certified
    assert pred.gram_w is None and pred.cosine_w is None
    assert "not certified" in pred.note


def test_a_loose_value_gap_certifies_no_geometry() -> None:
    assert certified_logit_distance(1e-3, 1e-3) == math.inf
    t = certified_logit_distance(1e-12, 1e-3)
    assert t**2 * math.exp(-2 * t) == pytest.approx(2e-12 / 1e-3, rel=1e-9)
    assert certified_logit_distance(1e-14, 1e-3) < t


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    k=st.integers(2, 6),
    delta=st.floats(1e-6, 1e-2),
)
def test_cosine_error_bound_covers_every_perturbation(seed: int, k: int, delta: float) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(k, k + 2))
    gram = a @ a.T + 0.5 * np.eye(k)
    bound = cosine_error_bound(gram, delta)
    for _ in range(20):
        e = rng.uniform(-delta, delta, size=(k, k))
        e = (e + e.T) / 2  # symmetric, entries still within delta
        change = np.abs(gram_cosines(gram + e) - gram_cosines(gram)).max()
        assert change <= bound + 1e-12


def test_centred_gram_centres_the_rows() -> None:
    rng = np.random.default_rng(1)
    m = rng.normal(size=(4, 3)) + 5.0
    np.testing.assert_allclose(centred_gram(m @ m.T), (m - m.mean(0)) @ (m - m.mean(0)).T)


def test_hong_ling_threshold_both_sides() -> None:
    counts = [500] * 5 + [100] * 5  # DESIGN: lambda* = sqrt(100) / 3000
    below = hong_ling_prediction(counts, 0.9 * 10 / 3000)
    above = hong_ling_prediction(counts, 1.1 * 10 / 3000)
    assert below["threshold"] == pytest.approx(10 / 3000)
    assert not below["collapse"] and above["collapse"]
    assert not hong_ling_prediction([5, 4, 3], 1.0)["applicable"]


def test_weight_decay_lambda_balances_the_penalties() -> None:
    lam = weight_decay_lambda(5e-4, classifier_sq_norm=40.0, features_sq_norm=2e4)
    assert lam["lambda_w"] == 2.5e-4
    assert lam["lambda_w"] * 40.0 == pytest.approx(lam["lambda_h"] * 2e4)
    assert lam["lambda"] == pytest.approx(2 * math.sqrt(lam["lambda_w"] * lam["lambda_h"]))
    with pytest.raises(ValueError, match="finite"):
        weight_decay_lambda(float("nan"), 1.0, 1.0)


def test_compare_geometry_and_spearman() -> None:
    k = 5
    same = compare_geometry(_etf_cosines(k), _etf_cosines(k), [3, 4])
    assert same.max_abs == 0 and same.minority_measured == pytest.approx(-0.25)
    collapsed = _etf_cosines(k)
    collapsed[3, 4] = collapsed[4, 3] = 1.0
    other = compare_geometry(collapsed, _etf_cosines(k), [3, 4])
    assert other.max_abs == pytest.approx(1.25) and other.minority_measured == 1.0
    # a balanced prediction (all pairs equal up to rounding) has no correlation with anything,
    # whatever the rounding of its Gram made of it
    rounded = _etf_cosines(k) + 1e-15 * np.random.default_rng(0).standard_normal((k, k))
    assert math.isnan(compare_geometry(collapsed, rounded, [3, 4]).correlation)
    varied = collapsed + 0.01 * np.random.default_rng(1).standard_normal((k, k))
    assert compare_geometry(varied, collapsed, [3, 4]).correlation > 0.99
    assert spearman([5, 4, 3], [10, 2, 1]) == pytest.approx(1.0)
    assert spearman([5, 4, 3], [1, 2, 3]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="shape"):
        compare_geometry(np.eye(3), np.eye(4), [0, 1])


def test_the_convex_cross_entropy_is_accurate_at_large_margins() -> None:
    import torch

    from ufm.losses import class_mean_cross_entropy, cross_entropy

    k, margin = 10, 40.0
    zt = torch.full((k, k), -margin, dtype=torch.float64)
    zt.diagonal().zero_()  # every class right by `margin`: CE = log1p((K-1) e^-40) ~ 3.8e-17
    weights = torch.full((k,), 1.0 / k, dtype=torch.float64)
    value, grad = class_mean_cross_entropy(zt, weights)
    exact = math.log1p((k - 1) * math.exp(-margin))
    assert float(value) == pytest.approx(exact, rel=1e-14)
    p = math.exp(-margin) / (1 + (k - 1) * math.exp(-margin))
    assert float(grad[0, 0]) == pytest.approx(-(k - 1) * p / k, rel=1e-14)
    assert float(grad[0, 1]) == pytest.approx(p / k, rel=1e-14)
    # the plain logsumexp form rounds the loss to 0 here: the reason for the careful one
    assert float(cross_entropy(zt, torch.arange(k)).sum()) == 0.0
    small = torch.randn(k, k, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = (weights * cross_entropy(small, torch.arange(k))).sum()
    value = float(class_mean_cross_entropy(small, weights)[0])
    assert value == pytest.approx(float(ref), rel=1e-14)


@pytest.mark.parametrize("grouped", [True, False])
def test_the_lpm_solves_at_the_norms_of_trained_networks(grouped: bool) -> None:
    from ufm.convex import solve_lpm_convex

    # E_W E_H = 1000: the optimal loss is about 1e-15, far below logsumexp's rounding of 1 + x
    result = solve_lpm_convex([100] * 5 + [1] * 5, 10.0, 100.0, tol=1e-10, grouped=grouped)
    assert 0 < result.value < 1e-14
    assert result.relative_gap <= 1e-10
