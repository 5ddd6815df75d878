"""Class-count profiles: the CIFAR-LT reference counts, validation, derived groups."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ufm.imbalance import (
    check_ratio,
    exponential_counts,
    head_medium_tail,
    make_profile,
    minority_group,
    step_counts,
)


def test_cifar10_lt_counts() -> None:
    counts = exponential_counts(10, 5000, 100)
    assert counts.tolist() == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert counts.sum() == 12406


def test_cifar100_lt_total() -> None:
    assert exponential_counts(100, 500, 100).sum() == 10847


def test_ratio_one_is_balanced() -> None:
    assert exponential_counts(7, 300, 1).tolist() == [300] * 7


@given(st.integers(2, 200), st.integers(50, 5000), st.floats(1.0, 50.0))
def test_exponential_profile_properties(k: int, n_max: int, ratio: float) -> None:
    counts = exponential_counts(k, n_max, ratio)
    assert len(counts) == k and counts[0] == n_max
    assert np.all(np.diff(counts) <= 0)
    assert counts[-1] == math.floor(n_max / ratio + 1e-9)


@pytest.mark.parametrize("bad", [0.5, -3, float("nan"), float("inf"), "many", None])
def test_bad_ratios_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="ratio"):
        check_ratio(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        exponential_counts(10, 5000, bad)  # type: ignore[arg-type]


def test_empty_tail_class_is_an_error() -> None:
    with pytest.raises(ValueError, match="smallest class empty"):
        exponential_counts(10, 50, 100)


def test_step_profile() -> None:
    assert step_counts(5, 500, 5, 5).tolist() == [500] * 5 + [100] * 5
    with pytest.raises(ValueError, match="multiple of R"):
        step_counts(5, 500, 5, 3)
    with pytest.raises(ValueError, match="integer >= 1"):
        step_counts(0, 500, 5, 5)


def test_make_profile_groups() -> None:
    exp = make_profile("exp", num_classes=10, n_max=5000, ratio=100)
    assert exp.minority.tolist() == [7, 8, 9] and exp.total == 12406 and exp.ratio == 100
    step = make_profile("step", num_classes=10, n_max=500, ratio=5, num_minority=3)
    assert step.minority.tolist() == [7, 8, 9]
    assert step.counts.tolist() == [500] * 7 + [100] * 3
    with pytest.raises(ValueError, match="'exp' or 'step'"):
        make_profile("zipf", num_classes=10, n_max=500, ratio=5)
    with pytest.raises(ValueError, match="minority classes"):
        make_profile("step", num_classes=4, n_max=500, ratio=5, num_minority=4)


def test_minority_group_of_step_and_exponential_counts() -> None:
    assert minority_group(step_counts(5, 500, 3, 5)).tolist() == [5, 6, 7]
    assert minority_group(exponential_counts(10, 5000, 100)).tolist() == [7, 8, 9]
    # a tie at the minimum of an exponential profile (floor) is still its tail third
    ties = exponential_counts(10, 100, 100)
    assert ties[-3:].tolist() == [2, 1, 1]
    assert minority_group(ties).tolist() == [7, 8, 9]
    assert minority_group(np.array([50, 5, 40, 10, 30, 20])).tolist() == [1, 3]  # by size


def test_minority_group_has_two_classes_at_least() -> None:
    assert minority_group(np.array([9, 3, 5])).tolist() == [1, 2]  # tail third: one class
    assert minority_group(np.array([9, 3])).tolist() == [0, 1]
    assert minority_group(np.full(6, 5)).tolist() == [4, 5]  # balanced: the last third
    for bad in (np.array([7]), np.array([[9, 3], [3, 1]])):
        with pytest.raises(ValueError, match=">= 2 classes"):
            minority_group(bad)


def test_every_exponential_profile_takes_the_shared_rule() -> None:
    for k, n_max, ratio in [(2, 10, 3), (4, 2, 2), (5, 3, 3), (10, 100, 100), (100, 500, 100)]:
        profile = make_profile("exp", num_classes=k, n_max=n_max, ratio=ratio)
        assert profile.minority.tolist() == minority_group(profile.counts).tolist()
        assert len(profile.minority) >= 2
    # two distinct counts: every class of the smaller one, not two of three tied classes
    assert make_profile("exp", num_classes=4, n_max=2, ratio=2).minority.tolist() == [1, 2, 3]


@given(st.lists(st.integers(1, 1000), min_size=3, max_size=60))
def test_head_medium_tail_partition(counts: list[int]) -> None:
    groups = head_medium_tail(np.array(counts))
    joined = np.sort(np.concatenate(list(groups.values())))
    assert joined.tolist() == list(range(len(counts)))
    arr = np.array(counts)
    assert arr[groups["head"]].min() >= arr[groups["tail"]].max()
