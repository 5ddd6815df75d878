"""Closed forms against hand calculations and their limits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ufm.etf import etf_gram
from ufm.theory import (
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
