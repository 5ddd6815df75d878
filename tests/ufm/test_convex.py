"""Convex forms: certificates are valid lower bounds and agree with cvxpy and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import CROSS_SOLVER, CROSS_SOLVER_Z
from ufm.convex import (
    NuclearBallLPM,
    project_nuclear_ball,
    solve_lpm_convex,
    solve_regularized_convex,
)
from ufm.convex_cvxpy import cvxpy_lpm_nuclear, cvxpy_lpm_sdp, cvxpy_regularized
from ufm.etf import etf_gram
from ufm.imbalance import exponential_counts, step_counts
from ufm.problems import LayerPeeledModel, RegularizedUFM, effective_lambda
from ufm.solvers import solve
from ufm.theory import theorem1_value

SMALL = [40, 20, 8, 4]


def test_balanced_lpm_reference_value_and_etf() -> None:
    res = solve_lpm_convex([100] * 10, 1.0, 5.0, tol=1e-12)
    assert res.value == pytest.approx(0.5597815, abs=5e-8)
    assert res.value == pytest.approx(theorem1_value(10, 1.0, 5.0), abs=1e-12)
    assert res.relative_gap <= 1e-12
    w, _ = res.factors(12, balance=(1.0 / 5.0) ** 0.25)
    gram = w @ w.T
    target = etf_gram(10) * float(torch.trace(gram)) / 10
    torch.testing.assert_close(gram, target, atol=1e-6, rtol=0)


@pytest.mark.parametrize("solver", ["SCS", "CLARABEL"])
def test_lpm_certificate_agrees_with_cvxpy(solver: str) -> None:
    res = solve_lpm_convex(SMALL, 1.0, 5.0, tol=1e-11)
    value, z = cvxpy_lpm_nuclear(SMALL, 1.0, 5.0, solver=solver)
    assert res.lower_bound <= value + CROSS_SOLVER  # the certificate is a lower bound
    assert value == pytest.approx(res.value, abs=CROSS_SOLVER)
    assert np.abs(z - res.z.numpy()).max() <= CROSS_SOLVER_Z[solver]


@pytest.mark.parametrize("solver", ["SCS", "CLARABEL"])
def test_fang_sdp_agrees(solver: str) -> None:
    """Fang's SDP over the Gram X of [Hbar; W] (2K x 2K): same value, and its block X_WH is our
    certified Z; both energy constraints are active at the optimum (tr = K E_H, K E_W)."""
    res = solve_lpm_convex(SMALL, 1.0, 5.0, tol=1e-11)
    value, x = cvxpy_lpm_sdp(SMALL, 1.0, 5.0, solver=solver)
    assert value == pytest.approx(res.value, abs=CROSS_SOLVER)
    k = len(SMALL)
    assert np.abs(x[k:, :k] - res.z.numpy()).max() <= CROSS_SOLVER_Z[solver]
    assert np.trace(x[:k, :k]) == pytest.approx(k * 5.0, abs=CROSS_SOLVER_Z[solver])
    assert np.trace(x[k:, k:]) == pytest.approx(k * 1.0, abs=CROSS_SOLVER_Z[solver])
    assert np.linalg.eigvalsh(x).min() >= -CROSS_SOLVER_Z[solver]


def test_nonconvex_lpm_reaches_the_certified_optimum() -> None:
    counts = exponential_counts(5, 60, 20)
    cert = solve_lpm_convex(counts, 1.0, 5.0, tol=1e-11)
    p = LayerPeeledModel(counts, 8, loss="ce")
    res = solve(p, "fast", seed=3, tol=1e-9, target=cert.value, max_iter=20_000)
    assert res.converged
    assert res.objective >= cert.lower_bound - 1e-12
    assert res.objective - cert.value <= 1e-9


def test_regularized_certificate_agrees_with_cvxpy_and_gradient_descent() -> None:
    counts = step_counts(2, 40, 2, 4)
    lam = effective_lambda(4e-3, 2e-3)
    res = solve_regularized_convex(counts, lam, lambda_b=1e-3, tol=1e-10)
    value, _, _ = cvxpy_regularized(counts, lam, lambda_b=1e-3, solver="CLARABEL")
    assert res.lower_bound <= value + CROSS_SOLVER
    assert value == pytest.approx(res.value, abs=CROSS_SOLVER)
    p = RegularizedUFM(counts, 6, lambda_w=4e-3, lambda_h=2e-3, lambda_b=1e-3)
    gd = solve(p, "fast", seed=1, tol=1e-12, grad_tol=1e-10, max_iter=100_000)
    assert gd.objective == pytest.approx(res.value, abs=1e-8)


def test_regularized_without_bias_penalty() -> None:
    counts = [30, 30, 6, 6]
    res = solve_regularized_convex(counts, 5e-3, lambda_b=0.0, tol=1e-9)
    value, _, _ = cvxpy_regularized(counts, 5e-3, lambda_b=0.0, solver="CLARABEL")
    assert res.lower_bound <= value + CROSS_SOLVER
    assert value == pytest.approx(res.value, abs=CROSS_SOLVER)


@given(st.integers(2, 8), st.floats(0.1, 10.0), st.integers(0, 1000))
def test_nuclear_ball_projection(k: int, radius: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    z = 3 * torch.randn(k, k, generator=gen, dtype=torch.float64)
    p = project_nuclear_ball(z, radius)
    assert float(torch.linalg.svdvals(p).sum()) <= radius * (1 + 1e-12)
    torch.testing.assert_close(project_nuclear_ball(p, radius), p, atol=1e-12, rtol=0)
    # Nearest point: no feasible candidate is closer (random feasible points).
    best = float((p - z).norm())
    for _ in range(5):
        c = torch.randn(k, k, generator=gen, dtype=torch.float64)
        c = c * radius / float(torch.linalg.svdvals(c).sum()) * float(torch.rand(1, generator=gen))
        assert float((c - z).norm()) >= best - 1e-12


def test_certificate_is_a_valid_bound_at_any_point() -> None:
    p = NuclearBallLPM(SMALL, 1.0, 5.0)
    opt = solve_lpm_convex(SMALL, 1.0, 5.0, tol=1e-12).value
    for seed in range(5):
        x = p.prox(p.random_start(seed), 1.0)
        assert p.lower_bound(x) <= opt + 1e-12 <= p.objective(x) + 1e-12


def test_uncertified_solve_raises() -> None:
    with pytest.raises(RuntimeError, match="not certified"):
        solve_lpm_convex(exponential_counts(10, 500, 10), 1.0, 5.0, tol=1e-14, max_iter=3)


def test_cvxpy_failure_raises() -> None:
    with pytest.raises(RuntimeError, match="cvxpy"):
        cvxpy_lpm_nuclear(SMALL, 1.0, 5.0, solver="NO_SUCH_SOLVER")


@pytest.mark.slow
def test_cifar100_lt_certificate() -> None:
    counts = exponential_counts(100, 500, 100)
    res = solve_lpm_convex(counts, 1.0, 5.0, tol=1e-8)
    assert res.relative_gap <= 1e-8
    assert math.isfinite(res.value) and res.value > 0


def test_grams_and_factors_of_a_regularized_optimum_agree() -> None:
    counts = step_counts(2, 40, 2, 4)
    res = solve_regularized_convex(counts, 0.02, 0.0, tol=1e-10)
    gram_w, gram_h = res.grams(counts)
    w, hbar = res.factors(6, 1.0, counts=counts)
    torch.testing.assert_close(w @ hbar.T, res.z, atol=1e-12, rtol=0)
    np.testing.assert_allclose((w @ w.T).numpy(), gram_w, atol=1e-12)
    np.testing.assert_allclose((hbar @ hbar.T).numpy(), gram_h, atol=1e-12)
