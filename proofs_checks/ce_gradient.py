"""Check 5: the pull/push decomposition of the cross-entropy gradient, and every hand-written
gradient of the layer-peeled problems, against autograd in float64.

For logits z = W h and p = softmax(z) (the decomposition discussed by Yang et al., NeurIPS 2022):

    grad_h CE(W h, k) = -(1 - p_k) w_k + sum_{j != k} p_j w_j        (pull + push).

`ufm.losses.ce_feature_gradient_split` returns the two parts; their sum must equal autograd's
gradient, for a fixed simplex-ETF classifier and for a learnable (Gaussian) one. Two facts make
the decomposition informative, and are checked too: with an ETF and equal non-target
probabilities (h = s w_k) the push is parallel to w_k, while at generic points it is not.

The analytic gradients that the solvers use (`value_and_grad` of `LayerPeeledModel`,
`FixedETFModel` and `RegularizedUFM`, both conventions) are compared with autograd as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from proofs_checks.registry import CheckResult, Measurement, Size, register
from proofs_checks.tolerances import AUTOGRAD
from ufm.etf import simplex_etf
from ufm.imbalance import exponential_counts
from ufm.losses import ce_feature_gradient_split, cross_entropy
from ufm.problems import FixedETFModel, LayerPeeledModel, Problem, RegularizedUFM

__all__ = ["autograd_of", "evaluate_problem", "evaluate_split", "run"]

CLASSES = {"full": (2, 10, 100), "small": (3, 10)}
SAMPLES = {"full": 256, "small": 64}
PUSH_OFF_AXIS = 1e-3  # generic points: the push must leave the w_k axis by at least this much


def autograd_of(fn: Callable[..., Tensor], *args: Tensor) -> tuple[Tensor, ...]:
    """Gradients of the scalar fn(*args) with respect to every argument, by autograd."""
    leaves = [a.detach().clone().requires_grad_(True) for a in args]
    with torch.enable_grad():
        return torch.autograd.grad(fn(*leaves), leaves)


def _rel(a: Tensor, b: Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-300))


def _off_axis(v: Tensor, axis: Tensor) -> Tensor:
    """Norm of the part of each row of v orthogonal to the matching row of axis, (B,)."""
    unit = axis / torch.linalg.vector_norm(axis, dim=1, keepdim=True)
    return torch.linalg.vector_norm(v - (v * unit).sum(1, keepdim=True) * unit, dim=1)


def evaluate_split(w: Tensor, h: Tensor, y: Tensor, tag: str) -> list[Measurement]:
    """pull + push = autograd; the pull is parallel to w_k. w (K, d), h (B, d), y (B,)."""
    pull, push = ce_feature_gradient_split(w, h, y)
    (auto,) = autograd_of(lambda hh: cross_entropy(hh @ w.T, y).sum(), h)
    return [
        Measurement(f"{tag}: pull + push vs autograd", _rel(pull + push, auto), AUTOGRAD),
        Measurement(
            f"{tag}: pull off the w_k axis",
            float((_off_axis(pull, w[y]) / torch.linalg.vector_norm(auto, dim=1)).max()),
            AUTOGRAD,
        ),
    ]


def _push_geometry(k: int, d: int, seed: int) -> list[Measurement]:
    """ETF: push parallel to w_k at h = s w_k (equal non-target probabilities), not elsewhere."""
    w = simplex_etf(k, d, seed=seed).T  # (K, d)
    y = torch.arange(k)
    _, push_sym = ce_feature_gradient_split(w, 1.7 * w, y)
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(k, d, generator=gen, dtype=torch.float64)
    _, push_gen = ce_feature_gradient_split(w, h, y)
    rel_gen = _off_axis(push_gen, w) / torch.linalg.vector_norm(push_gen, dim=1)
    sym = float((_off_axis(push_sym, w) / torch.linalg.vector_norm(push_sym, dim=1)).max())
    return [
        Measurement(f"ETF K={k}: push off w_k at equal probabilities", sym, AUTOGRAD),
        Measurement(
            f"ETF K={k}: push off w_k at random h (min)", float(rel_gen.min()), PUSH_OFF_AXIS, ">="
        ),
    ]


def evaluate_problem(
    problem: Problem, x: tuple[Tensor, ...], names: str, tag: str
) -> list[Measurement]:
    """The problem's analytic gradient at x against autograd of its smooth objective.

    `names`: one letter per variable of x, for the labels ("WU", "H", "WHb").
    """
    _, grads = problem.value_and_grad(x)
    auto = autograd_of(lambda *v: problem.value_and_grad(tuple(v))[0], *x)
    return [
        Measurement(f"{tag}: d/d{name} vs autograd", _rel(g, a), AUTOGRAD)
        for name, g, a in zip(names, grads, auto, strict=True)
    ]


def _problems(k: int, seed: int) -> list[tuple[str, Problem, str]]:
    """(name, problem, variable names) of every problem family the solvers run on."""
    counts = exponential_counts(k, max(20, 2 * k), 10)
    d = k + 2
    regularized = {
        c: RegularizedUFM(counts, d, lambda_w=3e-3, lambda_h=2e-3, lambda_b=1e-3, convention=c)
        for c in ("plain", "half")
    }
    return [
        ("LPM", LayerPeeledModel(counts, d, loss="ce"), "WU"),
        ("fixed ETF + CE", FixedETFModel(counts, d, loss="ce", etf_seed=seed), "H"),
        ("fixed ETF + DR", FixedETFModel(counts, d, loss="dr", etf_seed=seed), "H"),
        ("fixed ETF class-averaged", FixedETFModel(counts, d, constraint="class"), "U"),
        *((f"regularized {c}", p, "WHb") for c, p in regularized.items()),
    ]


def _case(k: int, size: Size, seed: int) -> list[Measurement]:
    gen = torch.Generator().manual_seed(seed)
    d, b = k + 3, SAMPLES[size]
    y = torch.randint(0, k, (b,), generator=gen)
    h = 2 * torch.randn(b, d, generator=gen, dtype=torch.float64)
    learnable = torch.randn(k, d, generator=gen, dtype=torch.float64)
    ms = evaluate_split(learnable, h, y, f"learnable K={k}")
    ms += evaluate_split(math.sqrt(2.0) * simplex_etf(k, d, seed=seed).T, h, y, f"ETF K={k}")
    if k >= 3:  # for K = 2 every push is parallel to w_k (w_2 = -w_1)
        ms += _push_geometry(k, d, seed)
    for name, problem, names in _problems(k, seed):
        x = problem.random_start(seed + 1)
        x = tuple(v + 0.3 * torch.randn(v.shape, generator=gen, dtype=v.dtype) for v in x)
        ms += evaluate_problem(problem, x, names, f"{name} K={k}")
    return ms


@register(
    "ce_gradient",
    statement="grad_h CE = -(1-p_k) w_k + sum_j p_j w_j (pull + push) = autograd; solver gradients",
    source="Yang et al. 2022 (CE gradient decomposition); derived",
)
def run(size: Size) -> CheckResult:
    ms = []
    for i, k in enumerate(CLASSES[size]):
        ms += _case(k, size, seed=i)
    problems = [name for name, _, _ in _problems(2, 0)]
    return CheckResult.from_measurements(ms, classes=list(CLASSES[size]), problems=problems)
