"""The LPM's convex form reduced to classes with equal counts: the reduction is exact (values,
gradients, projection and certificate agree with the K x K form) and its certificate is a bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import close
from ufm.convex import (
    NuclearBallLPM,
    NuclearPenaltyUFM,
    project_nuclear_ball,
    solve_lpm_convex,
    solve_regularized_convex,
)
from ufm.grouped import ClassGroups, GroupedLPM, GroupedPenaltyUFM, full_certificate
from ufm.imbalance import exponential_counts, step_counts

COUNTS = [50, 20, 50, 7, 20, 7, 7, 3]  # groups of sizes 2, 2, 3, 1, in an unsorted order


def _random_point(problem: GroupedLPM, seed: int, scale: float = 1.0) -> tuple:
    q, a = problem.random_start(seed)
    return q * scale, a * scale


def test_groups_from_counts() -> None:
    g = ClassGroups.from_counts(COUNTS)
    assert g.counts.tolist() == [50, 20, 7, 3]
    assert g.sizes.tolist() == [2, 2, 3, 1]
    assert g.index.tolist() == [0, 1, 0, 2, 1, 2, 2, 3]
    assert ClassGroups.from_counts(exponential_counts(1000, 1280, 256)).num_groups == 529


@given(st.integers(0, 10_000))
def test_expand_reduce_is_an_isometric_embedding(seed: int) -> None:
    g = ClassGroups.from_counts(COUNTS)
    p = GroupedLPM(COUNTS)
    q, a = _random_point(p, seed)
    full = g.expand(q, a)  # (K, K)
    q2, a2 = g.reduce(full)
    torch.testing.assert_close(q2, q, atol=1e-12, rtol=0)
    torch.testing.assert_close(a2, a, atol=1e-12, rtol=0)
    assert close(torch.linalg.norm(full) ** 2, (q * q).sum() + (a * a).sum())
    # singular values: those of Q, and |alpha_a| with multiplicity s_a - 1
    alpha = a[:3] / torch.sqrt(torch.tensor([1.0, 1.0, 2.0], dtype=a.dtype))
    expected = torch.cat([torch.linalg.svdvals(q), alpha.abs(), alpha[2:].abs()])
    got = torch.linalg.svdvals(full)
    torch.testing.assert_close(got, expected.sort(descending=True).values, atol=1e-12, rtol=0)


def test_reduce_is_the_orthogonal_projection() -> None:
    g = ClassGroups.from_counts(COUNTS)
    gen = torch.Generator().manual_seed(0)
    full = torch.randn(8, 8, generator=gen, dtype=torch.float64)
    rest = full - g.expand(*g.reduce(full))
    p = GroupedLPM(COUNTS)
    for seed in range(3):
        other = g.expand(*_random_point(p, seed))
        assert abs(float((rest * other).sum())) < 1e-12
    assert float(torch.linalg.norm(rest)) > 0.1  # a generic matrix is not symmetric


@pytest.mark.parametrize("seed", range(4))
def test_value_gradient_and_projection_match_the_full_form(seed: int) -> None:
    full = NuclearBallLPM(COUNTS)
    p = GroupedLPM(COUNTS)
    x = _random_point(p, seed, scale=30.0)
    zt = p.full(x)
    value, (g_full,) = full.value_and_grad((zt,))
    v, (g_q, g_a) = p.value_and_grad(x)
    assert close(v, value)
    q_ref, a_ref = p.groups.reduce(g_full)
    torch.testing.assert_close(g_q, q_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(g_a, a_ref, atol=1e-12, rtol=0)
    # the symmetric point's full gradient is symmetric too: nothing is lost by reducing it
    assert float(torch.linalg.norm(g_full - p.groups.expand(g_q, g_a))) < 1e-12
    proj = p.full(p.prox(x, 1.0))
    torch.testing.assert_close(proj, project_nuclear_ball(zt, full.radius), atol=1e-9, rtol=0)
    assert p.nuclear_norm(x) == pytest.approx(float(torch.linalg.svdvals(zt).sum()), rel=1e-12)
    assert p.lower_bound(x) == pytest.approx(full.lower_bound((zt,)), abs=1e-10)


def test_certificates_are_bounds_at_any_point() -> None:
    opt = solve_lpm_convex(COUNTS, 1.0, 5.0, tol=1e-12, grouped=False).value
    p = GroupedLPM(COUNTS)
    gen = torch.Generator().manual_seed(1)
    for seed in range(5):
        x = p.prox(_random_point(p, seed, 10.0), 1.0)
        assert p.lower_bound(x) <= opt + 1e-12 <= p.objective(x) + 1e-12
        # a non-symmetric point: the full certificate still bounds f*
        zt = p.full(x) + 0.3 * torch.randn(8, 8, generator=gen, dtype=torch.float64)
        value, bound = full_certificate(zt, COUNTS, p.radius, p.groups)
        assert bound <= opt + 1e-12
        assert value == pytest.approx(NuclearBallLPM(COUNTS).objective((zt,)), abs=1e-12)


@pytest.mark.parametrize(
    "counts",
    [COUNTS, list(step_counts(5, 500, 5, 20)), list(exponential_counts(30, 500, 100))],
)
def test_grouped_solve_matches_the_full_solve(counts: list[int]) -> None:
    grouped = solve_lpm_convex(counts, 1.0, 5.0, tol=1e-11)
    plain = solve_lpm_convex(counts, 1.0, 5.0, tol=1e-11, grouped=False)
    assert grouped.relative_gap <= 1e-11
    assert grouped.lower_bound <= plain.value + 1e-12
    assert plain.lower_bound <= grouped.value + 1e-12
    assert np.abs(grouped.z.numpy() - plain.z.numpy()).max() < 1e-4
    assert grouped.z.shape == (len(counts), len(counts))


def test_balanced_counts_reduce_to_one_group() -> None:
    p = GroupedLPM([100] * 10)
    assert p.groups.num_groups == 1
    res = solve_lpm_convex([100] * 10, 1.0, 5.0, tol=1e-12)
    assert res.value == pytest.approx(0.5597815, abs=5e-8)


@pytest.mark.parametrize(("lambda_b", "bias"), [(0.0, True), (2e-3, True), (0.0, False)])
def test_penalty_form_matches_the_full_form(lambda_b: float, bias: bool) -> None:
    full = NuclearPenaltyUFM(COUNTS, 4e-3, lambda_b, bias=bias)
    p = GroupedPenaltyUFM(COUNTS, 4e-3, lambda_b, bias=bias)
    gen = torch.Generator().manual_seed(0)
    q, a, _ = p.random_start(1)
    bt = torch.randn(4, generator=gen, dtype=torch.float64)
    x = (q * 300, a * 300, bt)
    yt, b = p.full(x)
    value, (g_y, g_b) = full.value_and_grad((yt, b))
    v, (g_q, g_a, g_bt) = p.value_and_grad(x)
    assert close(v, value)
    q_ref, a_ref = p.groups.reduce(g_y)
    torch.testing.assert_close(g_q, q_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(g_a, a_ref, atol=1e-12, rtol=0)
    idx = torch.as_tensor(p.groups.index)
    summed = torch.zeros(4, dtype=torch.float64).index_add_(0, idx, g_b)  # chain rule in bt
    torch.testing.assert_close(g_bt, summed / p.bias_scale, atol=1e-12, rtol=0)
    assert p.penalty(x) == pytest.approx(full.penalty((yt, b)), rel=1e-12)
    step = 50.0
    torch.testing.assert_close(
        p.full(p.prox(x, step))[0], full.prox((yt, b), step)[0], atol=1e-9, rtol=0
    )
    opt = solve_regularized_convex(COUNTS, 4e-3, lambda_b, tol=1e-11, grouped=False, bias=bias)
    assert p.lower_bound(x) <= opt.value + 1e-12 <= p.objective(x) + 1e-12


@pytest.mark.parametrize(("lambda_b", "bias"), [(0.0, True), (1e-3, True), (0.0, False)])
def test_grouped_regularized_solve_matches_the_full_solve(lambda_b: float, bias: bool) -> None:
    counts = list(step_counts(3, 200, 4, 10))
    grouped = solve_regularized_convex(counts, 3e-3, lambda_b, tol=1e-11, bias=bias)
    plain = solve_regularized_convex(counts, 3e-3, lambda_b, tol=1e-11, grouped=False, bias=bias)
    assert grouped.relative_gap <= 1e-11
    assert grouped.lower_bound <= plain.value + 1e-12
    assert plain.lower_bound <= grouped.value + 1e-12
    assert np.abs(grouped.z.numpy() - plain.z.numpy()).max() < 1e-4


def test_grouped_solve_on_cuda_matches_cpu(cuda: torch.device) -> None:
    counts = exponential_counts(30, 500, 100)
    gpu = solve_lpm_convex(counts, 1.0, 5.0, tol=1e-10, device=cuda)
    cpu = solve_lpm_convex(counts, 1.0, 5.0, tol=1e-10)
    assert gpu.z.device.type == "cuda"
    assert gpu.relative_gap <= 1e-10
    assert gpu.value == pytest.approx(cpu.value, abs=1e-9)
    reg = solve_regularized_convex(counts, 2e-3, tol=1e-10, device=cuda)
    assert reg.value == pytest.approx(
        solve_regularized_convex(counts, 2e-3, tol=1e-10).value, abs=1e-9
    )


def test_float32_phase_ends_in_a_float64_certificate() -> None:
    counts = exponential_counts(40, 500, 100)
    mixed = solve_lpm_convex(counts, 1.0, 5.0, tol=1e-10, float32_phase=True)
    plain = solve_lpm_convex(counts, 1.0, 5.0, tol=1e-10, float32_phase=False)
    assert mixed.z.dtype == torch.float64
    assert mixed.relative_gap <= 1e-10
    # each certificate bounds the other's optimum: the two solves reach the same f*
    assert mixed.lower_bound <= plain.value + 1e-12
    assert plain.lower_bound <= mixed.value + 1e-12
    reg = [
        solve_regularized_convex(counts, 2e-3, tol=1e-10, float32_phase=phase)
        for phase in (True, False)
    ]
    assert reg[0].lower_bound <= reg[1].value + 1e-12
    assert reg[1].lower_bound <= reg[0].value + 1e-12


def test_a_float32_certificate_is_refused() -> None:
    with pytest.raises(ValueError, match="float64"):
        solve_lpm_convex([50, 5], dtype=torch.float32)
    with pytest.raises(ValueError, match="float32_phase"):
        solve_regularized_convex([50, 5], 1e-3, dtype=torch.float32)
