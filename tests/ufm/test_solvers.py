"""Solvers: reach closed-form optima from random starts, and fail loudly when they cannot."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import SOLVER_GAP
from ufm.imbalance import exponential_counts
from ufm.problems import FixedETFModel, LayerPeeledModel, RegularizedUFM
from ufm.solvers import SOLVERS, solve

COUNTS = exponential_counts(5, 60, 20)  # [60, 28, 13, 6, 3]


@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("loss", ["ce", "dr"])
def test_fixed_etf_reaches_the_unique_minimizer(solver: str, loss: str) -> None:
    p = FixedETFModel(COUNTS, 7, loss=loss, e_w=1.0, e_h=5.0, etf_seed=3)
    res = solve(p, solver, seed=11, tol=SOLVER_GAP, target=p.optimum(), max_iter=50_000)
    assert res.converged and res.objective - p.optimum() <= SOLVER_GAP
    # Theorem 1 / 2: the minimizer is h* = sqrt(E_H/E_W) w*_k. A gap g bounds each sample's
    # distance through the growth of f: quadratic for CE (dist <~ sqrt(2 N g / mu), mu ~ 0.1),
    # quartic for DR, flat orthogonally to w*_k: a sample at angle theta on the sphere of radius
    # sqrt(E_H) adds c theta^4 / (8 N) to f, so dist <~ sqrt(E_H) (8 N g / c)^(1/4).
    n, gap, c = p.num_samples, SOLVER_GAP, math.sqrt(5.0)
    if loss == "dr":
        bound = math.sqrt(5.0) * (8 * n * gap / c) ** 0.25
    else:
        bound = math.sqrt(20 * n * gap)
    dist = float((p.features(res.x) - p.optimal_features()).norm(dim=1).max())
    assert dist < bound
    assert res.history["objective"][0] > res.history["objective"][-1]


@pytest.mark.parametrize("loss", ["ce", "dr"])
def test_certificate_stop_without_target(loss: str) -> None:
    p = FixedETFModel(COUNTS, 6, loss=loss)
    res = solve(p, "fast", seed=0, tol=1e-10, check_every=1)
    assert res.reason == "certified gap reached"
    assert res.lower_bound is not None and res.lower_bound <= p.optimum() + 1e-12
    assert res.objective - p.optimum() <= 1e-10


def test_class_averaged_variant_reaches_its_closed_form() -> None:
    p = FixedETFModel(COUNTS, 6, loss="ce", constraint="class")
    res = solve(p, "fast", seed=2, tol=1e-11, check_every=1, max_iter=20_000)
    assert res.converged
    assert res.objective == pytest.approx(p.optimum(), abs=1e-9)


def test_learnable_lpm_balanced_reaches_the_reference_value() -> None:
    p = LayerPeeledModel([30] * 10, 12, loss="ce", e_w=1.0, e_h=5.0)
    res = solve(p, "fast", seed=5, tol=1e-9, target=0.5597815240103977, max_iter=20_000)
    assert res.converged, res.reason
    assert res.objective == pytest.approx(0.5597815, abs=1e-7)


def test_regularized_ufm_stationary_stop() -> None:
    p = RegularizedUFM([20, 10, 5], 4, lambda_w=1e-2, lambda_h=1e-2, lambda_b=1e-2)
    res = solve(p, "fast", seed=0, tol=1e-12, grad_tol=1e-9, max_iter=50_000)
    assert res.reason == "stationary"
    grads = p.value_and_grad(res.x)[1]
    assert max(float(g.norm()) for g in grads) < 1e-7


def test_running_out_of_iterations_is_reported() -> None:
    p = LayerPeeledModel(COUNTS, 6)
    res = solve(p, "pgd", seed=0, tol=1e-12, target=0.0, max_iter=3)
    assert not res.converged and res.reason == "max_iter" and res.iterations == 3
    assert len(res.history["objective"]) == 4


def test_bad_options_raise() -> None:
    p = FixedETFModel(COUNTS, 6)
    with pytest.raises(ValueError, match="unknown solver"):
        solve(p, "adam")
    with pytest.raises(ValueError, match="tol"):
        solve(p, "fast", tol=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        solve(p, "fast", max_iter=0)
    with pytest.raises(ValueError, match="target"):
        solve(p, "fast", target=math.nan)


def test_a_wrong_gradient_never_converges() -> None:
    class Broken(FixedETFModel):
        def value_and_grad(self, x):
            value, (g,) = super().value_and_grad(x)
            return value, (-g,)  # ascent direction: no step can decrease f

    p = Broken(COUNTS, 6)
    for solver in SOLVERS:
        res = solve(p, solver, seed=0, tol=1e-9, target=p.optimum(), max_iter=50)
        assert not res.converged
        assert res.objective >= res.history["objective"][0] - 1e-9  # no false progress


def test_float32_runs() -> None:
    p = FixedETFModel(COUNTS, 6, dtype=torch.float32)
    res = solve(p, "fast", seed=0, tol=1e-5, target=p.optimum(), max_iter=2000)
    assert res.converged and res.x[0].dtype == torch.float32


def test_solver_on_cuda(cuda: torch.device) -> None:
    p = FixedETFModel(COUNTS, 6, device=cuda)
    res = solve(p, "fast", seed=0, tol=1e-9, target=p.optimum())
    assert res.converged and res.x[0].device.type == "cuda"
