"""Long-tailed subsets: counts from the profiles of ufm, seeded choice, groups from counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deep.longtail import class_groups, longtail_indices, profile_counts
from ufm.imbalance import exponential_counts, minority_group


def test_cifar10_lt_counts() -> None:
    counts = profile_counts(np.full(10, 5000), "exp", 100)
    assert counts.tolist() == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_counts_use_the_smallest_class_and_the_cap() -> None:
    available = np.array([700, 650, 900])
    assert profile_counts(available, "exp", 10).tolist() == exponential_counts(3, 650, 10).tolist()
    assert profile_counts(available, "exp", 1, max_per_class=100).tolist() == [100, 100, 100]
    assert profile_counts(available, "none", 1).tolist() == [700, 650, 900]


def test_step_profile() -> None:
    counts = profile_counts(np.full(6, 500), "step", 5, num_minority=2)
    assert counts.tolist() == [500, 500, 500, 500, 100, 100]
    assert minority_group(counts).tolist() == [4, 5]


@pytest.mark.parametrize("ratio", [0.5, float("nan"), float("inf"), "x"])
def test_bad_ratios_are_rejected(ratio) -> None:
    with pytest.raises(ValueError, match="imbalance"):
        profile_counts(np.full(4, 100), "exp", ratio)


def test_unknown_profile() -> None:
    with pytest.raises(ValueError, match="unknown class profile 'zipf'"):
        profile_counts(np.full(4, 100), "zipf", 2)


def test_subset_has_the_counts_and_depends_on_the_seed_only() -> None:
    labels = torch.arange(10).repeat(30)
    counts = np.array([30, 20, 12, 9, 7, 5, 4, 3, 2, 1])
    a = longtail_indices(labels, counts, seed=3)
    assert torch.bincount(labels[a], minlength=10).tolist() == counts.tolist()
    assert torch.equal(a, longtail_indices(labels, counts, seed=3))
    assert not torch.equal(a, longtail_indices(labels, counts, seed=4))
    assert torch.equal(a, torch.sort(a).values) and len(set(a.tolist())) == len(a)


def test_too_few_images_is_an_error() -> None:
    with pytest.raises(ValueError, match="class 1 has 1 images"):
        longtail_indices(torch.tensor([0, 0, 1]), np.array([2, 2]), seed=0)


def test_groups_and_minority_follow_the_counts() -> None:
    counts = np.array([50, 5, 40, 10, 30, 20])  # not sorted: groups go by size, not index
    groups = class_groups(counts)
    assert {k: groups[k] for k in ("head", "medium", "tail")} == {
        "head": [0, 2], "medium": [4, 5], "tail": [1, 3]}  # fmt: skip
    assert minority_group(counts).tolist() == [1, 3]
    assert minority_group(np.array([9, 3, 5])).tolist() == [1, 2]  # at least two classes


def test_shot_groups_by_absolute_count_on_both_sides_of_each_threshold() -> None:
    counts = np.array([5000, 101, 100, 20, 19, 1])
    groups = class_groups(counts)
    assert groups["many_shot"] == [0, 1]  # more than 100 training images
    assert groups["medium_shot"] == [2, 3]  # 20 to 100
    assert groups["few_shot"] == [4, 5]  # fewer than 20
    # Every class in exactly one shot group; thirds go by rank, shots by count.
    assert sorted(groups["many_shot"] + groups["medium_shot"] + groups["few_shot"]) == list(
        range(6)
    )
    assert groups["tail"] == [4, 5] and class_groups(np.array([50] * 3))["few_shot"] == []
