"""Problems: analytic gradients against autograd, feasible sets, closed-form optima."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import TOL
from ufm.problems import FixedETFModel, LayerPeeledModel, RegularizedUFM, effective_lambda
from ufm.solvers import solve
from ufm.theory import class_averaged_etf_optimum, theorem1_value

COUNTS = [9, 5, 3, 2]


def _problems() -> list:
    return [
        LayerPeeledModel(COUNTS, 6, loss="ce", e_w=1.3, e_h=2.0),
        LayerPeeledModel(COUNTS, 6, loss="dr", e_w=1.3, e_h=2.0),
        FixedETFModel(COUNTS, 5, loss="ce", e_w=1.3, e_h=2.0),
        FixedETFModel(COUNTS, 5, loss="dr", e_w=1.3, e_h=2.0),
        FixedETFModel(COUNTS, 5, loss="dr-balanced", e_w=1.3, e_h=2.0),
        FixedETFModel(COUNTS, 5, loss="ce", constraint="class"),
        FixedETFModel(COUNTS, 5, loss="dr", constraint="class"),
        RegularizedUFM(COUNTS, 6, lambda_w=1e-2, lambda_h=3e-3, lambda_b=1e-3),
        RegularizedUFM(COUNTS, 6, lambda_w=1e-2, lambda_h=3e-3, convention="half"),
    ]


def _autograd(problem, x):
    leaves = tuple(v.clone().requires_grad_(True) for v in x)
    value = problem.value_and_grad(leaves)[0]
    return torch.autograd.grad(value, leaves)


@pytest.mark.parametrize("problem", _problems(), ids=lambda p: type(p).__name__)
@given(seed=st.integers(0, 10_000))
def test_analytic_gradient_matches_autograd(problem, seed: int) -> None:
    x = problem.random_start(seed)
    value, grads = problem.value_and_grad(x)
    for g, ref in zip(grads, _autograd(problem, x), strict=True):
        torch.testing.assert_close(g, ref, **TOL[torch.float64])
    assert problem.smooth_value(x) == pytest.approx(float(value), rel=1e-13)
    if isinstance(problem, FixedETFModel):  # the O(N d) DR path against all the logits
        z = problem.features(x) @ problem.classifier(x).T  # (N, K)
        dense = problem.loss_fn.value(z, problem.labels).mean()
        assert float(value) == pytest.approx(float(dense), rel=1e-13)


@pytest.mark.parametrize("problem", _problems()[:5], ids=lambda p: type(p).__name__)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.1, 50.0))
def test_projection_is_feasible_and_idempotent(problem, seed: int, scale: float) -> None:
    x = tuple(scale * v for v in problem.random_start(seed))
    p = problem.project(x)
    again = problem.project(p)
    for a, b in zip(p, again, strict=True):
        torch.testing.assert_close(a, b, **TOL[torch.float64])
    h = problem.features(p)
    k = problem.num_classes
    n = torch.as_tensor(problem.counts, dtype=h.dtype)[problem.labels]
    if isinstance(problem, FixedETFModel) and problem.constraint == "sample":
        assert float((h * h).sum(1).max()) <= problem.e_h * (1 + 1e-12)
    else:
        assert float(((h * h).sum(1) / n).sum() / k) <= problem.e_h * (1 + 1e-12)
    if isinstance(problem, LayerPeeledModel):
        w = problem.classifier(p)
        assert float((w * w).sum() / k) <= problem.e_w * (1 + 1e-12)


def test_theorem1_closed_form_point_attains_the_closed_form_value() -> None:
    p = FixedETFModel([50, 7, 3], 4, loss="ce", e_w=2.0, e_h=3.0)
    h = p.optimal_features()
    assert p.objective((h,)) == pytest.approx(theorem1_value(3, 2.0, 3.0), rel=1e-14)
    assert p.lower_bound((h,)) == pytest.approx(p.optimum(), abs=1e-14)
    p_dr = FixedETFModel([50, 7, 3], 4, loss="dr", e_w=2.0, e_h=3.0)
    assert p_dr.objective((p_dr.optimal_features(),)) == pytest.approx(0.0, abs=1e-28)


@pytest.mark.parametrize("loss", ["ce", "dr"])
def test_fixed_etf_solution_does_not_depend_on_counts(loss: str) -> None:
    """Theorem 1 for ANY counts, through a solve (not through `optimum()`, which is the closed
    form): balanced and very imbalanced counts reach the same certified value and every
    feature the same h*; the class-averaged constraint, by contrast, does depend on them."""
    reached = []
    for counts in ([5] * 5, [500, 80, 9, 3, 1]):
        p = FixedETFModel(counts, 6, loss=loss, e_w=1.0, e_h=5.0)
        res = solve(p, "pgd" if loss == "ce" else "fast", seed=4, tol=1e-10, max_iter=50_000)
        assert res.converged and res.lower_bound is not None
        assert res.objective - res.lower_bound <= 1e-10  # its own Frank-Wolfe certificate
        dist = (p.features(res.x) - p.optimal_features()).norm(dim=1).max()
        assert float(dist) <= (1e-4 if loss == "ce" else 3e-2)  # growth: gap^(1/2), gap^(1/4)
        reached.append(res.lower_bound)
    assert reached[0] == pytest.approx(reached[1], abs=2e-10)
    if loss == "ce":
        assert reached[0] == pytest.approx(theorem1_value(5, 1.0, 5.0), abs=2e-10)
        averaged = [
            solve(FixedETFModel(c, 6, constraint="class"), "fast", seed=4, tol=1e-10).objective
            for c in ([5] * 5, [500, 80, 9, 3, 1])
        ]
        assert averaged[1] < averaged[0] - 1e-3  # head classes get more of the budget


def test_class_averaged_optimum_uses_norms_growing_with_counts() -> None:
    counts = [400, 100, 20, 5]
    value, norms = class_averaged_etf_optimum(counts, 1.0, 5.0)
    assert np.all(np.diff(norms) < 0)
    assert np.mean(norms**2) == pytest.approx(5.0, rel=1e-12)
    p = FixedETFModel(counts, 4, loss="ce", constraint="class")
    # The closed-form point h_k = s_k w*_k / ||w*_k|| attains the value.
    h = p.w_star[p.labels] * torch.as_tensor(norms)[p.labels][:, None]
    u = h / torch.sqrt(4 * torch.as_tensor(counts, dtype=h.dtype))[p.labels][:, None]
    assert p.objective((u,)) == pytest.approx(value, rel=1e-12)
    balanced, _ = class_averaged_etf_optimum([7] * 4, 1.0, 5.0)
    assert balanced == pytest.approx(theorem1_value(4, 1.0, 5.0), rel=1e-12)


def test_degenerate_dr_lpm_reaches_zero_with_a_collapsed_classifier() -> None:
    p = LayerPeeledModel(COUNTS, 5, loss="dr", e_w=1.0, e_h=2.0)
    assert p.degenerate and p.optimum() == 0.0
    w_row = torch.zeros(5, dtype=torch.float64)
    w_row[0] = 1.0
    w = w_row.repeat(len(COUNTS), 1)  # every class vector equal, ||w_k||^2 = E_W
    h = math.sqrt(2.0) * w_row.repeat(p.num_samples, 1)
    u = h / p._scale
    assert p.objective(p.project((w, u))) == pytest.approx(0.0, abs=1e-28)


def test_effective_lambda_conventions() -> None:
    assert effective_lambda(1e-2, 1e-4) == pytest.approx(2e-3)
    assert effective_lambda(1e-2, 1e-4, "half") == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="convention"):
        effective_lambda(1.0, 1.0, "quarter")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"counts": [3]}, ">= 2 classes"),
        ({"counts": [3, 0]}, "integers >= 1"),
        ({"counts": [3, 2.5]}, "integers >= 1"),
        ({"counts": [3, 2], "e_h": -1.0}, "E_H"),
        ({"counts": [3, 2], "e_w": float("nan")}, "E_W"),
        ({"counts": [3, 2], "dim": 0}, "dimension"),
    ],
)
def test_bad_problem_arguments(kwargs: dict, match: str) -> None:
    kwargs = {"dim": 4} | kwargs
    with pytest.raises(ValueError, match=match):
        LayerPeeledModel(**kwargs)


def test_fixed_etf_rejects_impossible_dimension() -> None:
    with pytest.raises(ValueError, match="dim >= 9"):
        FixedETFModel([3] * 10, 8)
    with pytest.raises(ValueError, match="constraint"):
        FixedETFModel([3, 3], 4, constraint="global")


def test_problems_on_cuda_match_cpu(cuda: torch.device) -> None:
    cpu = LayerPeeledModel(COUNTS, 6)
    gpu = LayerPeeledModel(COUNTS, 6, device=cuda)
    x = cpu.random_start(0)
    v_cpu, g_cpu = cpu.value_and_grad(x)
    v_gpu, g_gpu = gpu.value_and_grad(tuple(t.to(cuda) for t in x))
    assert float(v_gpu) == pytest.approx(float(v_cpu), rel=1e-12)
    for a, b in zip(g_cpu, g_gpu, strict=True):
        torch.testing.assert_close(b.cpu(), a, **TOL[torch.float64])


@given(seed=st.integers(0, 10_000), scale=st.floats(0.5, 20.0))
def test_geometries_describe_the_same_problem(seed: int, scale: float) -> None:
    ball = LayerPeeledModel(COUNTS, 6, loss="ce", e_h=2.0)
    uniform = ball.preconditioned()
    assert uniform.geometry == "uniform"
    x = ball.random_start(seed)
    x_u = ball.transfer(x, uniform)
    torch.testing.assert_close(uniform.features(x_u), ball.features(x), **TOL[torch.float64])
    assert uniform.objective(x_u) == pytest.approx(ball.objective(x), rel=1e-13)
    # The ellipsoid projection is feasible, idempotent and the nearest feasible point.
    far = (x_u[0], scale * x_u[1])
    p = uniform.project(far)[1]
    h = uniform.features((x_u[0], p))
    n = torch.as_tensor(ball.counts, dtype=h.dtype)[ball.labels]
    budget = float(((h * h).sum(1) / n).sum() / ball.num_classes)
    assert budget <= 2.0 * (1 + 1e-10)
    if scale > 1.5:
        assert budget == pytest.approx(2.0, rel=1e-10)
    torch.testing.assert_close(uniform.project((x_u[0], p))[1], p, **TOL[torch.float64])
    gen = torch.Generator().manual_seed(seed)
    best = float((p - far[1]).norm())
    for _ in range(5):
        cand = uniform.project((x_u[0], torch.randn(p.shape, generator=gen, dtype=p.dtype)))[1]
        assert float((cand - far[1]).norm()) >= best - 1e-12
