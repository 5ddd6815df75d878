"""Groups of classes shared by the collapse checks: which classes are the minority, and how far
apart a group's rows (classifier vectors, logits) are."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from proofs_checks.registry import Measurement
from proofs_checks.tolerances import COLLAPSED, SEPARATED

__all__ = ["collapse_measurements", "group_spread"]


def group_spread(rows: Tensor, group: Sequence[int]) -> float:
    """||rows[group] - their mean||_F / ||rows||_F: 0 exactly when the group's rows are equal.

    rows (K, m): classifier vectors w_k, or rows of the logit matrix Z (equal rows of Z = W Hbar^T
    are equal classifiers when Hbar has full rank).
    """
    sub = rows[list(group)]
    return float(torch.linalg.matrix_norm(sub - sub.mean(0)) / torch.linalg.matrix_norm(rows))


def collapse_measurements(
    rows: Tensor, k_a: int, k_b: int, collapse: bool, tag: str
) -> list[Measurement]:
    """Minority rows equal iff `collapse`; majority rows always distinct."""
    spread_b = group_spread(rows, range(k_a, k_a + k_b))
    ms = [
        Measurement(f"{tag}: minority spread (collapsed)", spread_b, COLLAPSED)
        if collapse
        else Measurement(f"{tag}: minority spread (not collapsed)", spread_b, SEPARATED, ">=")
    ]
    if k_a >= 2:
        ms.append(
            Measurement(f"{tag}: majority spread", group_spread(rows, range(k_a)), SEPARATED, ">=")
        )
    return ms
