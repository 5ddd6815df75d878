"""Class-count profiles of imbalanced data and the class groups derived from them.

Exponential (long-tail) profile, as in every CIFAR-LT paper (Cao et al. 2019, Cui et al. 2019):

    n_k = floor(n_max * rho^(-k/(K-1))),   k = 0..K-1,   rho = n_1/n_K >= 1.

Step profile (Fang et al. 2021; Hong & Ling 2023): K_A majority classes with n_A samples each,
K_B minority classes with n_B = n_A/R samples each.

Counts are numpy integer arrays sorted head to tail. Group indices (minority, head/medium/tail)
are always computed from counts, never typed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ClassProfile",
    "check_ratio",
    "exponential_counts",
    "head_medium_tail",
    "make_profile",
    "minority_group",
    "step_counts",
]


def check_ratio(ratio: float, name: str = "imbalance ratio") -> float:
    """Return `ratio` as a float if it is finite and >= 1; raise ValueError otherwise."""
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 1, got {ratio!r}") from None
    if not math.isfinite(value) or value < 1.0:
        raise ValueError(
            f"{name} must be a finite number >= 1 (n_max / n_min), got {ratio!r}; "
            f"use 1 for balanced classes"
        )
    return value


def _check_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not float(value).is_integer() or int(value) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def exponential_counts(num_classes: int, n_max: int, ratio: float) -> np.ndarray:
    """n_k = floor(n_max * ratio^(-k/(K-1))) for k = 0..K-1; shape (K,), int64.

    CIFAR-10-LT (K=10, n_max=5000, ratio=100) gives [5000, 2997, ..., 83, 50].
    """
    k = _check_count(num_classes, "num_classes")
    n_max = _check_count(n_max, "n_max")
    ratio = check_ratio(ratio)
    if k == 1:
        return np.array([n_max], dtype=np.int64)
    exps = np.arange(k, dtype=np.float64) / (k - 1)
    # The 1e-9 guards floor() against products like 5000 * 0.01 = 49.999999999.
    counts = np.floor(n_max * ratio ** (-exps) + 1e-9).astype(np.int64)
    if counts[-1] < 1:
        raise ValueError(
            f"n_max={n_max} with ratio={ratio:g} leaves the smallest class empty; "
            f"use n_max >= {math.ceil(ratio)} or a smaller ratio"
        )
    return counts


def step_counts(num_majority: int, n_majority: int, num_minority: int, ratio: float) -> np.ndarray:
    """K_A classes of n_A samples, then K_B classes of n_B = n_A / R; shape (K_A + K_B,).

    n_A / R must be an integer >= 1, so that R is the exact ratio of the counts.
    """
    k_a = _check_count(num_majority, "number of majority classes")
    n_a = _check_count(n_majority, "majority class size")
    k_b = _check_count(num_minority, "number of minority classes")
    ratio = check_ratio(ratio)
    n_b = n_a / ratio
    if n_b < 1 or abs(n_b - round(n_b)) > 1e-9 * n_a:
        raise ValueError(
            f"a step profile needs n_B = n_A / R to be an integer >= 1; n_A={n_a}, R={ratio:g} "
            f"gives {n_b:g}; choose n_A as a multiple of R"
        )
    return np.array([n_a] * k_a + [round(n_b)] * k_b, dtype=np.int64)


def head_medium_tail(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Split classes into thirds by size: head (largest), medium, tail (smallest).

    Sizes floor(K/3) for tail and head, the rest medium; ties in counts are broken by index.
    Returns a dict of index arrays.
    """
    counts = np.asarray(counts)
    order = np.argsort(-counts, kind="stable")
    third = len(counts) // 3
    head = np.sort(order[:third])
    tail = np.sort(order[len(counts) - third :])
    medium = np.sort(order[third : len(counts) - third])
    return {"head": head, "medium": medium, "tail": tail}


def minority_group(counts: np.ndarray) -> np.ndarray:
    """The classes whose minority collapse is measured, from the counts alone; sorted indices.

    Two distinct counts, the smaller one shared by >= 2 classes (a step profile): the classes of
    the smaller count. Otherwise the tail third (`head_medium_tail`), and at least the two
    smallest classes (ties to the lower index), since a pairwise cosine needs two classes.
    counts (K,), K >= 2; raises ValueError otherwise.
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or len(counts) < 2:
        raise ValueError(f"a minority group needs counts of >= 2 classes, got shape {counts.shape}")
    values = np.unique(counts)
    if len(values) == 2 and (counts == values[0]).sum() >= 2:
        return np.flatnonzero(counts == values[0])
    tail = head_medium_tail(counts)["tail"]
    if len(tail) < 2:
        tail = np.argsort(counts, kind="stable")[:2]
    return np.sort(tail)


@dataclass(frozen=True)
class ClassProfile:
    """Class counts (head to tail) and the minority group the metrics look at."""

    counts: np.ndarray  # (K,) int64
    minority: np.ndarray  # indices of the minority group
    kind: str  # "exp" | "step"

    @property
    def num_classes(self) -> int:
        return len(self.counts)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @property
    def ratio(self) -> float:
        return float(self.counts.max() / self.counts.min())


def make_profile(
    kind: str,
    *,
    num_classes: int,
    n_max: int,
    ratio: float,
    num_minority: int | None = None,
) -> ClassProfile:
    """Build an "exp" or "step" profile.

    exp: the minority group is `minority_group(counts)` (the tail third, at least 2 classes).
    step: the last `num_minority` classes (default K/2) have n_max / ratio samples and are the
    minority group, also when ratio = 1 or `num_minority` = 1.
    """
    if kind == "exp":
        counts = exponential_counts(num_classes, n_max, ratio)
        return ClassProfile(counts, minority_group(counts), "exp")
    if kind == "step":
        num_classes = _check_count(num_classes, "num_classes")
        k_b = num_classes // 2 if num_minority is None else num_minority
        if not 1 <= k_b < num_classes:
            raise ValueError(
                f"a step profile of {num_classes} classes needs 1 <= minority classes < "
                f"{num_classes}, got {k_b}"
            )
        counts = step_counts(num_classes - k_b, n_max, k_b, ratio)
        return ClassProfile(counts, np.arange(num_classes - k_b, num_classes), "step")
    raise ValueError(f"unknown class profile {kind!r}; choose 'exp' or 'step'")
