"""The collapse measurements shared by the checks: a group's rows (classifier vectors, logits)
equal or apart, by `ufm.metrics.group_spread` (minority group: `ufm.imbalance.minority_group`)."""

from __future__ import annotations

from torch import Tensor

from proofs_checks.registry import Measurement
from proofs_checks.tolerances import COLLAPSED, SEPARATED
from ufm.metrics import group_spread

__all__ = ["collapse_measurements"]


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
