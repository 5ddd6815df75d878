"""Closed forms against hand calculations and their limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ufm.etf import etf_gram
from ufm.problems import FixedETFModel
from ufm.theory import (
    etf_feature_distance_bound,
    etf_margin_loss,
    hong_ling_threshold,
    seli_classifier_gram,
    seli_mean_logits,
    theorem1_value,
)


def test_theorem1_reference_value() -> None:
    assert theorem1_value(10, 1.0, 5.0) == pytest.approx(0.5597815, abs=5e-8)


def test_theorem1_two_classes_by_hand() -> None:
    # K = 2: w*_1 = -w*_2, logits +-sqrt(E_W E_H); CE = log(1 + exp(-2 sqrt(E_W E_H))).
    assert theorem1_value(2, 0.5, 2.0) == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-15)


def test_margin_loss_is_decreasing_and_convex() -> None:
    s = np.linspace(0, 5, 51)
    phi = np.array([etf_margin_loss(7, 1.5, v) for v in s])
    assert np.all(np.diff(phi) < 0) and np.all(np.diff(phi, 2) > 0)
    assert phi[0] == pytest.approx(math.log(7))


def test_hong_ling_reference_thresholds() -> None:
    assert hong_ling_threshold(100, 5 * 500 + 5 * 100) == pytest.approx(0.0033333, abs=5e-8)
    assert hong_ling_threshold(100, 3 * 500 + 7 * 100) == pytest.approx(0.0045455, abs=5e-8)
    with pytest.raises(ValueError):
        hong_ling_threshold(0, 10)


def test_seli_balanced_limit_is_the_etf() -> None:
    gram = seli_classifier_gram([40] * 6)
    expected = etf_gram(6).numpy()
    np.testing.assert_allclose(gram, expected / np.linalg.norm(expected), atol=1e-12)


def test_seli_geometry_properties() -> None:
    counts = [500] * 3 + [50] * 4
    gram = seli_classifier_gram(counts)
    np.testing.assert_allclose(gram, gram.T, atol=1e-14)
    assert np.linalg.norm(gram) == pytest.approx(1.0)
    assert np.min(np.linalg.eigvalsh(gram)) > -1e-12
    np.testing.assert_allclose(gram.sum(1), 0.0, atol=1e-12)  # rows orthogonal to 1
    norms = np.sqrt(np.diag(gram))
    assert norms[:3].min() > norms[3:].max()  # majority classifiers are longer
    z = seli_mean_logits(7)
    np.testing.assert_allclose(z.sum(0), 0.0, atol=1e-14)


def _rms_distance(problem: FixedETFModel, h: torch.Tensor) -> float:
    return float(((h - problem.optimal_features()) ** 2).sum(1).mean().sqrt())


@pytest.mark.parametrize("loss", ["ce", "dr"])
@pytest.mark.parametrize("scale", [1e-4, 1e-2, 0.3])
def test_feature_distance_bound_holds_for_feasible_points(loss: str, scale: float) -> None:
    """Random feasible H near h* (inside the ball and on the sphere): the distance the gap
    certifies is never below the true root-mean-square distance."""
    p = FixedETFModel([30, 9, 4, 2], 6, loss=loss, e_w=1.3, e_h=2.0)
    gen = torch.Generator().manual_seed(int(1 / scale))
    h_star = p.optimal_features()
    for shrink in (1.0, 1 - scale):  # on the sphere, and strictly inside
        h = p.project(
            (h_star + scale * torch.randn(h_star.shape, generator=gen, dtype=h_star.dtype),)
        )[0]
        h = h * shrink
        gap = p.objective((h,)) - p.optimum()
        assert gap > 0
        bound = etf_feature_distance_bound(loss, gap, 4, 1.3, 2.0)
        assert _rms_distance(p, h) <= bound * (1 + 1e-9)


def test_dr_bound_is_exact_on_the_sphere_and_quartic() -> None:
    """On ||h|| = sqrt(E_H) at angle theta, DR = c (1 - cos theta)^2 / 2 and the bound equals
    ||h - h*||: the gap certifies only its fourth root. CE's bound is of the gap's square root."""
    k, e_w, e_h = 5, 1.0, 5.0
    p = FixedETFModel([1] * k, k, loss="dr", e_w=e_w, e_h=e_h)
    h_star = p.optimal_features()
    ortho = torch.linalg.svd(h_star, full_matrices=True)[2][-1]  # a unit vector _|_ every w*_k
    for theta in (1e-3, 1e-2, 0.2):
        h = math.cos(theta) * h_star + math.sin(theta) * math.sqrt(e_h) * ortho
        gap = p.objective((h,))
        assert gap == pytest.approx(math.sqrt(e_w * e_h) * (1 - math.cos(theta)) ** 2 / 2, rel=1e-6)
        bound = etf_feature_distance_bound("dr", gap, k, e_w, e_h)
        assert bound == pytest.approx(_rms_distance(p, h), rel=1e-6)
    assert etf_feature_distance_bound("dr", 1e-8, k, e_w, e_h) == pytest.approx(
        10 * etf_feature_distance_bound("dr", 1e-12, k, e_w, e_h)
    )
    assert etf_feature_distance_bound("ce", 1e-8, k, e_w, e_h) == pytest.approx(
        100 * etf_feature_distance_bound("ce", 1e-12, k, e_w, e_h)
    )
    balanced = etf_feature_distance_bound("dr-balanced", 1e-8, k, e_w, e_h, weight=0.5)
    assert balanced == pytest.approx(etf_feature_distance_bound("dr", 2e-8, k, e_w, e_h))
    with pytest.raises(ValueError, match="no growth bound"):
        etf_feature_distance_bound("hinge", 1e-8, k, e_w, e_h)
    with pytest.raises(ValueError, match="gap"):
        etf_feature_distance_bound("ce", -1.0, k, e_w, e_h)
