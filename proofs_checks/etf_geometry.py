"""Check 1: the simplex ETF has the geometry it is defined by, in every dimension d >= K-1.

M = sqrt(K/(K-1)) U (I - 1 1^T/K) (Papyan, Han & Donoho, PNAS 2020), columns m_k in R^d:

    m_k^T m_j = K/(K-1) delta_kj - 1/(K-1),   ||m_k|| = 1,   sum_k m_k = 0,
    singular values: sqrt(K/(K-1)) (K-1 times), then 0 (rank K-1),

for d = K-1, d = K and d > K; the same seed gives the same M, another seed another rotation of
the same Gram matrix, and d < K-1 is refused with a ValueError.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from proofs_checks.registry import CheckResult, Measurement, Size, register
from proofs_checks.tolerances import EXACT
from ufm.etf import etf_gram, simplex_etf

__all__ = ["etf_errors", "run"]

CLASSES = {"full": (2, 3, 10, 100), "small": (2, 10)}
SEEDS = (0, 1)


def etf_errors(m: Tensor) -> dict[str, float]:
    """Largest deviations of M (d, K) from the simplex-ETF identities (module docstring)."""
    m = m.to(torch.float64)
    k = m.shape[1]
    s = torch.linalg.svdvals(m)  # (min(d, K),), descending
    top = s[: k - 1]
    rest = s[k - 1 :]
    return {
        "gram": float((m.T @ m - etf_gram(k)).abs().max()),
        "unit_norm": float((torch.linalg.vector_norm(m, dim=0) - 1).abs().max()),
        "zero_sum": float(torch.linalg.vector_norm(m.sum(dim=1))),
        "rank": max(
            float((top - math.sqrt(k / (k - 1))).abs().max()),
            float(rest.max()) if rest.numel() else 0.0,
        ),
    }


def _dims(k: int) -> tuple[int, ...]:
    return (k - 1, k, 2 * k + 1)


def _case(k: int, d: int) -> tuple[list[Measurement], dict[str, object]]:
    ms, worst = [], dict.fromkeys(("gram", "unit_norm", "zero_sum", "rank"), 0.0)
    for seed in SEEDS:
        for key, err in etf_errors(simplex_etf(k, d, seed=seed)).items():
            worst[key] = max(worst[key], err)
    ms += [Measurement(f"K={k} d={d}: {key}", err, EXACT) for key, err in worst.items()]
    again = float((simplex_etf(k, d, seed=0) - simplex_etf(k, d, seed=0)).abs().max())
    ms.append(Measurement(f"K={k} d={d}: same seed, same ETF", again, EXACT))
    if d >= 2:  # in one dimension the only rotations are +-1
        moved = float((simplex_etf(k, d, seed=0) - simplex_etf(k, d, seed=1)).abs().max())
        ms.append(Measurement(f"K={k} d={d}: another seed, another rotation", moved, 1e-3, ">="))
    return ms, {"K": k, "d": d, **worst}


def _refuses_small_dim(k: int) -> Measurement:
    try:
        simplex_etf(k, k - 2)
    except ValueError:
        return Measurement(f"K={k} d={k - 2}: refused", 0.0, EXACT)
    return Measurement(f"K={k} d={k - 2}: refused", math.inf, EXACT)


@register(
    "etf_geometry",
    statement="simplex ETF: Gram K/(K-1)I-11^T/(K-1), unit norms, zero sum, rank K-1, d>=K-1",
    source="Papyan, Han & Donoho 2020 (simplex ETF); Yang et al. 2022 (eq. 1)",
)
def run(size: Size) -> CheckResult:
    ms, cases = [], []
    for k in CLASSES[size]:
        for d in _dims(k):
            case_ms, case = _case(k, d)
            ms += case_ms
            cases.append(case)
        if k >= 3:
            ms.append(_refuses_small_dim(k))
    return CheckResult.from_measurements(ms, cases=cases)
