"""The library capabilities the checks rest on, each against an independent computation:
the balanced regularized-UFM closed form, the bias-free convex form, the LPM's KKT multiplier,
and feasible solver outputs (certificates hold at feasible points only)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ufm.convex import NuclearBallLPM, solve_lpm_convex, solve_regularized_convex
from ufm.convex_cvxpy import cvxpy_regularized
from ufm.imbalance import exponential_counts, step_counts
from ufm.problems import FixedETFModel
from ufm.solvers import solve
from ufm.theory import balanced_regularized_optimum, theorem1_value


@pytest.mark.parametrize(("k", "n", "lam"), [(2, 5, 1e-2), (5, 10, 3e-3), (10, 20, 2e-3)])
def test_balanced_regularized_closed_form_matches_the_certified_solve(k, n, lam) -> None:
    value, a = balanced_regularized_optimum(k, n, lam)
    cert = solve_regularized_convex(np.full(k, n), lam, tol=1e-12)
    assert cert.lower_bound - 1e-12 <= value <= cert.value + 1e-12
    target = a * (torch.eye(k, dtype=torch.float64) - 1.0 / k)
    assert float(torch.linalg.matrix_norm(cert.z - target)) <= 1e-5 * float(
        torch.linalg.matrix_norm(target)
    )


def test_balanced_regularized_closed_form_collapses_for_large_lambda() -> None:
    value, a = balanced_regularized_optimum(4, 9, 1.0 / (4 * 3))  # lambda sqrt(n) = 1/K exactly
    assert a == 0.0 and value == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match="lambda"):
        balanced_regularized_optimum(4, 9, 0.0)


def test_bias_free_convex_form_matches_cvxpy() -> None:
    counts = step_counts(3, 60, 3, 6)
    cert = solve_regularized_convex(counts, 1e-3, tol=1e-11, bias=False)
    value, _, b = cvxpy_regularized(counts, 1e-3, solver="CLARABEL", bias=False)
    assert cert.bias is None and np.all(b == 0)
    assert abs(cert.value - value) <= 1e-7 * abs(value)
    with_bias = solve_regularized_convex(counts, 1e-3, tol=1e-11)
    assert with_bias.value < cert.value - 1e-6  # a free bias helps under imbalance


def test_lpm_multiplier_is_the_stationarity_constant() -> None:
    counts = exponential_counts(6, 40, 10)
    cert = solve_lpm_convex(counts, 1.0, 5.0, tol=1e-12)
    problem = NuclearBallLPM(counts, 1.0, 5.0)
    _, (g,) = problem.value_and_grad((cert.z.T,))
    mu = problem.multiplier((cert.z.T,))
    assert mu > 0
    assert mu == pytest.approx(float(-(g * cert.z.T).sum()) / problem.radius, rel=1e-8)


@pytest.mark.parametrize("loss", ["ce", "dr"])
def test_fixed_etf_solutions_are_feasible_in_float64(loss: str) -> None:
    problem = FixedETFModel(np.full(10, 20), 11, loss=loss, e_w=1.0, e_h=5.0, etf_seed=10)
    res = solve(problem, "fast", seed=11, tol=1e-13, relative=True, max_iter=2000)
    norms2 = torch.linalg.vector_norm(problem.features(res.x), dim=1) ** 2
    assert float(norms2.max()) <= 5.0 * (1 + 1e-14)
    if loss == "ce":
        assert res.objective >= theorem1_value(10, 1.0, 5.0) - 1e-14
