"""Long-tailed training subsets of a balanced dataset, chosen by a seeded generator.

The class counts follow a profile of DESIGN.md section 2 (`ufm.imbalance`): `exp`,
n_k = floor(n_max rho^(-k/(K-1))) with class 0 the largest; `step`, the first K - K_B classes
keep n_max and the last K_B keep floor(n_max / rho); `none`, every training image. n_max is the
smallest class size found in the data unless capped. Which images of a class are kept is drawn
without replacement from a CPU generator seeded by `subset_seed`, so the subset is a function of
the data and that seed alone. Test sets are never subsampled.

Class groups come from the counts: head / medium / tail thirds (`ufm.imbalance.head_medium_tail`),
the literature's many-shot (> 100 training images), medium-shot (20-100) and few-shot (< 20)
classes (Liu et al., CVPR 2019, "Large-Scale Long-Tailed Recognition in an Open World"; most
long-tail papers report these), and the minority group whose collapse the NC metrics watch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ufm.imbalance import (
    check_ratio,
    exponential_counts,
    head_medium_tail,
    make_profile,
)

__all__ = [
    "FEW_SHOT_BELOW",
    "MANY_SHOT_ABOVE",
    "PROFILES",
    "class_groups",
    "hold_out",
    "longtail_indices",
    "profile_counts",
    "shot_groups",
]

PROFILES = ("exp", "step", "none")
MANY_SHOT_ABOVE = 100  # [training images] a many-shot class has more
FEW_SHOT_BELOW = 20  # [training images] a few-shot class has fewer


def profile_counts(
    available: np.ndarray,
    profile: str,
    ratio: float,
    *,
    max_per_class: int | None = None,
    num_minority: int | None = None,
) -> np.ndarray:
    """Images to keep per class (K,), given the images `available` per class (K,)."""
    available = np.asarray(available, dtype=np.int64)
    if profile not in PROFILES:
        raise ValueError(f"unknown class profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    ratio = check_ratio(ratio, "imbalance")
    if profile == "none":
        return available.copy()
    n_max = int(available.min())
    if max_per_class is not None:
        if max_per_class < 1:
            raise ValueError(f"max_per_class must be >= 1, got {max_per_class}")
        n_max = min(n_max, int(max_per_class))
    if profile == "exp":
        return exponential_counts(len(available), n_max, ratio)
    return _step(len(available), n_max, ratio, num_minority)


def _step(num_classes: int, n_max: int, ratio: float, num_minority: int | None) -> np.ndarray:
    """`ufm.imbalance.make_profile`'s step counts (its K_B rule) with n_B = floor(n_max / rho)."""
    n_b = int(np.floor(n_max / ratio + 1e-9))
    if n_b < 1:
        raise ValueError(f"imbalance {ratio:g} leaves minority classes of {n_max} images empty")
    # n_A / n_B is the realised ratio; it equals rho when rho divides n_max.
    profile = make_profile(
        "step", num_classes=num_classes, n_max=n_max, ratio=n_max / n_b, num_minority=num_minority
    )
    return profile.counts


def longtail_indices(labels: Tensor, counts: np.ndarray, seed: int) -> Tensor:
    """Indices (sorted) of a subset with counts[k] images of class k, drawn with `seed`.

    labels (N,) int64 on any device -> (sum(counts),) int64 on the CPU.
    """
    labels = labels.cpu()
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for k, n_k in enumerate(np.asarray(counts).tolist()):
        members = torch.nonzero(labels == k).flatten()
        if len(members) < n_k:
            raise ValueError(f"class {k} has {len(members)} images, fewer than the {n_k} asked for")
        chosen.append(members[torch.randperm(len(members), generator=gen)[:n_k]])
    return torch.sort(torch.cat(chosen)).values


def hold_out(labels: Tensor, per_class: int, seed: int) -> tuple[Tensor, Tensor]:
    """A balanced validation set carved out of the training images before the long-tailed
    subset is drawn (as ImageNet-LT's 20 per class): `per_class` images of every class, drawn
    with `seed`. Returns (pool, held), sorted CPU index tensors: the images left for training
    and the held-out ones. per_class = 0 holds nothing out (pool = every index).
    """
    labels = labels.cpu()
    if per_class == 0:
        return torch.arange(len(labels)), torch.zeros(0, dtype=torch.int64)
    num_classes = int(labels.max()) + 1
    sizes = torch.bincount(labels, minlength=num_classes)
    if int(sizes.min()) <= per_class:
        k = int(sizes.argmin())
        raise ValueError(
            f"data.val_per_class = {per_class} would leave class {k} ({int(sizes[k])} training "
            f"images) nothing to train on; use fewer"
        )
    gen = torch.Generator().manual_seed(seed)
    held = torch.cat(
        [
            members[torch.randperm(len(members), generator=gen)[:per_class]]
            for members in (torch.nonzero(labels == k).flatten() for k in range(num_classes))
        ]
    )
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[held] = False
    return torch.nonzero(keep).flatten(), torch.sort(held).values


def class_groups(counts: np.ndarray) -> dict[str, list[int]]:
    """Head / medium / tail class indices (thirds by training count, ufm's convention), then
    the many-, medium- and few-shot classes by absolute count (`shot_groups`)."""
    thirds = {name: idx.tolist() for name, idx in head_medium_tail(np.asarray(counts)).items()}
    return thirds | shot_groups(counts)


def shot_groups(counts: np.ndarray) -> dict[str, list[int]]:
    """many_shot: n_k > 100, medium_shot: 20 <= n_k <= 100, few_shot: n_k < 20 training
    images (Liu et al. 2019), so that accuracies compare with the papers' tables. A group may
    be empty (Fashion-MNIST-LT at rho = 100 has no few-shot class); its accuracy is then None."""
    counts = np.asarray(counts)
    return {
        "many_shot": np.flatnonzero(counts > MANY_SHOT_ABOVE).tolist(),
        "medium_shot": np.flatnonzero(
            (counts >= FEW_SHOT_BELOW) & (counts <= MANY_SHOT_ABOVE)
        ).tolist(),
        "few_shot": np.flatnonzero(counts < FEW_SHOT_BELOW).tolist(),
    }
