"""Every check can fail: its evaluation rejects a perturbed solution, a wrong closed form or a
wrong threshold, and accepts the unperturbed one (so the rejection is the perturbation's doing).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pytest
import torch

from proofs_checks import ce_gradient as ce_check
from proofs_checks import (
    class_averaged_ablation,
    convergence,
    etf_geometry,
    etf_immunity,
    groups,
    hong_ling_collapse,
    lpm_relaxation,
    minority_collapse,
    regularized_imbalance,
    seli_limit,
    theorem1,
    theorem2,
)
from proofs_checks.registry import Measurement
from proofs_checks.tolerances import EXACT
from ufm.convex import solve_lpm_convex, solve_regularized_convex
from ufm.etf import simplex_etf
from ufm.imbalance import exponential_counts, step_counts
from ufm.problems import FixedETFModel, LayerPeeledModel, RegularizedUFM
from ufm.solvers import solve
from ufm.theory import hong_ling_threshold, seli_mean_logits, theorem1_value

COUNTS = exponential_counts(5, 20, 10)  # [20, 11, 6, 3, 2]


def failed(ms: Iterable[Measurement]) -> list[str]:
    return [m.label for m in ms if not m.holds]


def noise(shape: tuple[int, ...], scale: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=gen, dtype=torch.float64)


# --- 1. ETF geometry ------------------------------------------------------------------------------
def test_etf_errors_reject_perturbed_frames() -> None:
    m = simplex_etf(10, 12, seed=0)
    assert max(etf_geometry.etf_errors(m).values()) <= EXACT
    assert etf_geometry.etf_errors(m + noise(m.shape, 1e-8))["gram"] > EXACT
    shifted = etf_geometry.etf_errors(m + 1e-6 * m[:, :1])  # one column added to all: sum != 0
    assert shifted["zero_sum"] > EXACT and shifted["rank"] > EXACT


# --- 2-3. Theorems 1 and 2 ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ce_solution() -> tuple[FixedETFModel, torch.Tensor, float]:
    problem = FixedETFModel(COUNTS, 6, loss="ce", e_w=1.0, e_h=5.0)
    res = solve(problem, "fast", seed=1, tol=1e-13, relative=True, max_iter=2000)
    return problem, problem.features(res.x), problem.lower_bound(res.x)


def test_theorem1_accepts_the_solution(ce_solution) -> None:
    assert failed(theorem1.evaluate(*ce_solution, "ok")) == []


def test_theorem1_rejects_perturbed_features(ce_solution) -> None:
    problem, h, _ = ce_solution
    (bad,) = problem.project((h + noise(h.shape, 1e-4),))
    labels = failed(theorem1.evaluate(problem, bad, problem.lower_bound((bad,)), "bad"))
    assert any("||h - h*||" in label for label in labels)


def test_theorem1_rejects_features_of_another_class(ce_solution) -> None:
    problem, h, bound = ce_solution
    shifted = torch.roll(h, shifts=1, dims=0)
    assert failed(theorem1.evaluate(problem, shifted, bound, "bad"))


def test_theorem1_rejects_a_wrong_closed_form(ce_solution, monkeypatch) -> None:
    problem, h, bound = ce_solution
    wrong = theorem1_value(problem.num_classes, problem.e_w, 1.01 * problem.e_h)
    monkeypatch.setattr(problem, "optimum", lambda: wrong)
    labels = failed(theorem1.evaluate(problem, h, bound, "bad"))
    assert labels == ["bad: closed form outside [bound, value]"]


def test_theorem2_rejects_perturbed_features_and_a_wrong_gradient() -> None:
    problem = FixedETFModel(COUNTS, 6, loss="dr", e_w=1.0, e_h=5.0)
    res = solve(problem, "fast", seed=1, tol=1e-20, target=0.0, max_iter=20_000)
    h = problem.features(res.x)
    assert failed(theorem2.evaluate_solution(problem, h, "ok")) == []
    (bad,) = problem.project((h + noise(h.shape, 1e-3),))
    assert failed(theorem2.evaluate_solution(problem, bad, "bad"))
    points = noise(h.shape, 1.0, seed=3)
    assert failed(theorem2.evaluate_gradient(problem, points, "ok")) == []
    ce_problem = FixedETFModel(COUNTS, 6, loss="ce", e_w=1.0, e_h=5.0)
    assert len(failed(theorem2.evaluate_gradient(ce_problem, points, "CE"))) == 3


# --- 4. convergence -------------------------------------------------------------------------------
def _pg_row(ratio: float, dr: tuple[float, float], ce: tuple[float, float]) -> dict[str, float]:
    return {
        "iterations_ratio_dr_ce": ratio,
        "order_early_dr": dr[0],
        "order_late_dr": dr[1],
        "order_early_ce": ce[0],
        "order_late_ce": ce[1],
    }


def test_convergence_projected_gradient_needs_slow_sublinear_dr() -> None:
    measured = _pg_row(392.0, (2.0, 2.0), (6.0, 12.0))
    assert failed(convergence.evaluate_projected_gradient(measured, "ok")) == []
    not_slower = _pg_row(0.9, (2.0, 2.0), (6.0, 12.0))
    assert failed(convergence.evaluate_projected_gradient(not_slower, "fast")) == [
        "fast: iterations DR/CE"
    ]
    linear_dr = failed(convergence.evaluate_projected_gradient(_pg_row(5, (6, 13), (6, 12)), "l"))
    assert linear_dr == ["l: DR local order, last half", "l: DR order growth (power law)"]
    slower_power = _pg_row(400.0, (1.0, 1.0), (6.0, 12.0))  # gap ~ 1/t, not 1/t^2
    assert failed(convergence.evaluate_projected_gradient(slower_power, "t1")) == [
        "t1: DR local order, last half (low)"
    ]
    sublinear_ce = _pg_row(400.0, (2.0, 2.0), (3.0, 3.1))
    assert failed(convergence.evaluate_projected_gradient(sublinear_ce, "ce")) == [
        "ce: CE order growth (linear)"
    ]
    undefined = _pg_row(math.nan, (math.nan, math.nan), (6.0, 12.0))  # neither reached the gap
    assert len(failed(convergence.evaluate_projected_gradient(undefined, "nan"))) == 4


def test_convergence_frank_wolfe_needs_dr_in_one_step() -> None:
    row = {"iterations_dr": 1, "iterations_ratio_dr_ce": 1 / 7}
    assert failed(convergence.evaluate_frank_wolfe(row, 10, "ok")) == []
    second_step = {"iterations_dr": 2, "iterations_ratio_dr_ce": 2 / 7}
    assert failed(convergence.evaluate_frank_wolfe(second_step, 10, "two")) == [
        "two: DR iterations"
    ]
    ce_one_step = {"iterations_dr": 1, "iterations_ratio_dr_ce": 1.0}
    assert failed(convergence.evaluate_frank_wolfe(ce_one_step, 10, "ce")) == [
        "ce: iterations DR/CE"
    ]
    assert failed(convergence.evaluate_frank_wolfe(ce_one_step, 2, "K=2")) == []  # w2 = -w1
    never = {"iterations_dr": math.inf, "iterations_ratio_dr_ce": math.nan}
    assert len(failed(convergence.evaluate_frank_wolfe(never, 10, "never"))) == 2


def test_convergence_imbalance_must_not_change_the_iterations() -> None:
    balanced = {"iterations_ce": 15, "iterations_dr": 5874}
    assert failed(convergence.evaluate_imbalance(balanced, dict(balanced), "ok")) == []
    slower = {"iterations_ce": 15, "iterations_dr": 7000}
    assert len(failed(convergence.evaluate_imbalance(balanced, slower, "rho"))) == 1


def test_local_order_tells_a_power_law_from_a_linear_rate() -> None:
    t = np.arange(0, 4001, dtype=np.float64)
    power = 3.0 / np.maximum(t, 1) ** 2
    assert convergence.local_order(power, 1000, 2000) == pytest.approx(2.0, rel=1e-12)
    linear = 0.99**t
    early = convergence.local_order(linear, 1000, 2000)
    assert convergence.local_order(linear, 2000, 4000) / early == pytest.approx(2.0, rel=1e-12)
    assert math.isnan(convergence.local_order(np.zeros(10), 2, 4))


def test_convergence_race_both_families() -> None:
    """The race itself, not only its comparison: Frank-Wolfe lands DR on h* in one step and
    needs several for CE; projected gradient needs hundreds of times more for DR, at t^-2."""
    counts = exponential_counts(5, 6, 3)
    fw = convergence.race(counts, 6, "frank-wolfe", seed=0)
    assert fw["iterations_dr"] == 1 and fw["iterations_ce"] >= 2
    assert failed(convergence.evaluate_frank_wolfe(fw, 5, "fw")) == []
    pgd = convergence.race(counts, 6, "pgd", seed=0)
    assert pgd["iterations_ratio_dr_ce"] >= 10
    assert pgd["order_late_dr"] == pytest.approx(2.0, abs=0.05)
    assert failed(convergence.evaluate_projected_gradient(pgd, "pgd")) == []


def test_frank_wolfe_step_lands_dr_on_the_minimizer() -> None:
    problem = FixedETFModel(COUNTS, 6, loss="dr", e_w=1.0, e_h=5.0)
    iterations, converged, gaps = convergence.frank_wolfe(problem, seed=2, max_iter=1)
    assert (iterations, converged) == (1, True) and gaps[-1] <= 1e-28 and gaps[0] > 0.1
    ce = FixedETFModel(COUNTS, 6, loss="ce", e_w=1.0, e_h=5.0)
    iterations, converged, gaps = convergence.frank_wolfe(ce, seed=2)
    assert converged and iterations >= 2 and np.all(np.diff(gaps) < 0)
    with pytest.raises(ValueError, match="per-sample"):
        convergence.frank_wolfe(FixedETFModel(COUNTS, 6, constraint="class"), seed=0)


# --- 5. CE gradient -------------------------------------------------------------------------------
def test_ce_split_without_its_push_is_rejected(monkeypatch) -> None:
    w, h = noise((4, 6), 1.0, seed=1), noise((16, 6), 1.0, seed=2)
    y = torch.arange(16) % 4
    assert failed(ce_check.evaluate_split(w, h, y, "ok")) == []
    real = ce_check.ce_feature_gradient_split
    monkeypatch.setattr(ce_check, "ce_feature_gradient_split", lambda *a: (real(*a)[0], 0 * h))
    assert failed(ce_check.evaluate_split(w, h, y, "pull only")) == [
        "pull only: pull + push vs autograd"
    ]


def test_a_wrong_analytic_gradient_is_rejected() -> None:
    class Wrong(LayerPeeledModel):
        def value_and_grad(self, x):
            value, (gw, gu) = super().value_and_grad(x)
            return value, (gw, gu * (1 + 1e-6))

    problem = Wrong(COUNTS, 7)
    x = problem.random_start(0)
    assert failed(ce_check.evaluate_problem(problem, x, "WU", "wrong")) == [
        "wrong: d/dU vs autograd"
    ]


# --- 6. LPM relaxation ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lpm_solution() -> tuple[LayerPeeledModel, torch.Tensor, torch.Tensor, object]:
    counts = np.full(6, 4)
    cert = solve_lpm_convex(counts, 1.0, 5.0, tol=1e-10)
    problem = LayerPeeledModel(counts, 8, loss="ce", e_w=1.0, e_h=5.0)
    res = solve(problem, "fast", seed=2, tol=1e-12, relative=True, grad_tol=1e-9, max_iter=50_000)
    return problem, problem.classifier(res.x), problem.features(res.x), cert


def test_lpm_relaxation_accepts_the_nonconvex_solution(lpm_solution) -> None:
    problem, w, h, cert = lpm_solution
    assert failed(lpm_relaxation.evaluate_nonconvex(problem, w, h, cert, "ok")) == []
    assert failed(lpm_relaxation.evaluate_balanced(problem, w, h, cert.z, "ok")) == []


def test_lpm_relaxation_rejects_infeasible_and_suboptimal_points(lpm_solution) -> None:
    problem, w, h, cert = lpm_solution
    assert failed(lpm_relaxation.evaluate_nonconvex(problem, 1.01 * w, h, cert, "big")) == [
        "big: LPM infeasibility",
        "big: LPM below the convex bound",
    ]
    assert failed(lpm_relaxation.evaluate_nonconvex(problem, 0.9 * w, h, cert, "small")) == [
        "small: LPM above the convex bound"
    ]
    bent = w + noise(w.shape, 1e-2)
    assert failed(lpm_relaxation.evaluate_balanced(problem, bent, h, cert.z, "bent"))


# --- 7. minority collapse -------------------------------------------------------------------------
@pytest.mark.parametrize(("ratio", "collapsed"), [(8.0, False), (20.0, True)])
def test_minority_collapse_kkt_sides(ratio: float, collapsed: bool) -> None:
    state = minority_collapse.minority_state(minority_collapse.step_profile(ratio))
    assert failed(minority_collapse.evaluate_kkt(state, collapsed, "right side")) == []
    labels = failed(minority_collapse.evaluate_kkt(state, not collapsed, "wrong"))
    assert any("spread" in label for label in labels) and any("KKT" in label for label in labels)


# --- 8. Hong & Ling -------------------------------------------------------------------------------
def test_hong_ling_rejects_a_threshold_off_by_two() -> None:
    counts = step_counts(5, 50, 5, 5)
    threshold = hong_ling_threshold(10, int(counts.sum()))
    cert = solve_regularized_convex(counts, 1.1 * threshold, tol=1e-10)
    assert failed(groups.collapse_measurements(cert.z, 5, 5, True, "ok")) == []
    wrong = solve_regularized_convex(counts, 1.1 * threshold / 2, tol=1e-10)  # sqrt(n_B)/(2N)
    assert failed(groups.collapse_measurements(wrong.z, 5, 5, True, "half the threshold"))


def test_hong_ling_rejects_the_wrong_convention() -> None:
    counts = step_counts(5, 50, 5, 5)
    lam = 1.1 * hong_ling_threshold(10, int(counts.sum()))
    # the plain split, in a "half" model
    lambda_w, lambda_h = hong_ling_collapse.penalties(lam, "plain")
    problem = RegularizedUFM(counts, 12, lambda_w=lambda_w, lambda_h=lambda_h, convention="half")
    res = solve(problem, "fast", seed=0, tol=1e-12, relative=True, grad_tol=1e-9, max_iter=50_000)
    labels = failed(groups.collapse_measurements(problem.classifier(res.x), 5, 5, True, "c"))
    assert labels == ["c: minority spread (collapsed)"]


# --- 9. regularized UFM ---------------------------------------------------------------------------
def test_regularized_geometries_are_told_apart() -> None:
    def solved(counts):
        problem = RegularizedUFM(counts, len(counts) + 2, lambda_w=5e-4, lambda_h=5e-4)
        res = solve(problem, "fast", seed=0, tol=1e-13, relative=True, grad_tol=1e-9)
        return problem, res.x

    balanced, imbalanced = solved(np.full(5, 10)), solved(exponential_counts(5, 30, 10))
    assert failed(regularized_imbalance.evaluate_balanced(*balanced, "ok")) == []
    assert failed(regularized_imbalance.evaluate_imbalanced(*imbalanced, "ok")) == []
    assert failed(regularized_imbalance.evaluate_balanced(*imbalanced, "imbalanced"))
    assert len(failed(regularized_imbalance.evaluate_imbalanced(*balanced, "balanced"))) == 3


# --- 10. SELI -------------------------------------------------------------------------------------
def test_seli_limit_rejects_the_balanced_geometry() -> None:
    counts = step_counts(5, 100, 5, 5)
    zbar = seli_mean_logits(10) * math.sqrt(9.0)
    assert failed(seli_limit.evaluate_limit(zbar, 1.0, counts, "value only")) == [
        "value only max-margin: value vs ||Zbar D^1/2||_*"
    ]
    etf_y = np.eye(10) * 10 - 1  # Y = Z D^{1/2} of an ETF classifier Gram, not SELI's
    assert failed(seli_limit.evaluate_limit(etf_y / np.sqrt(counts)[None, :], 1.0, counts, "etf"))


def test_seli_path_rejects_a_plateau_and_a_rise() -> None:
    scales = [15.0 * (1 + 0.5 * j) for j in range(7)]

    def rows(dist):
        return [{"scale": s, "d_gram": dist(s), "d_logits": dist(s), "spread": 0.5} for s in scales]

    assert failed(seli_limit.evaluate_path(rows(lambda s: 1.5 / s), "ok")) == []
    measured = rows(lambda s: 1.5 / s**0.78)  # the decay measured along the real path
    assert failed(seli_limit.evaluate_path(measured, "measured")) == []
    # A limit 0.1 away from SELI fails on both rates.
    plateau = failed(seli_limit.evaluate_path(rows(lambda s: 0.1 + 1.5 / s), "plateau"))
    assert "plateau: growth of d_gram x ||Z||_F" in plateau
    assert "plateau: decay exponent of d_gram in ||Z||_F, last step" in plateau
    # A limit 0.05 away: its product grows by at most 2 (not beyond RATE_GROWTH), but the
    # decay exponent over the last step falls to 0.35 (1/s decay) or 0.44 (the measured one).
    for name, dist in (("1/s", lambda s: 1.5 / s), ("measured", lambda s: 1.5 / s**0.78)):
        near = failed(seli_limit.evaluate_path(rows(lambda s, f=dist: 0.05 + f(s)), "near"))
        assert near == [
            "near: decay exponent of d_gram in ||Z||_F, last step",
            "near: decay exponent of d_logits in ||Z||_F, last step",
        ], (name, near)
    assert "rise: largest increase of d_gram as lambda falls" in failed(
        seli_limit.evaluate_path(rows(lambda s: 0.01 * s), "rise")
    )


# --- 11. ETF immunity -----------------------------------------------------------------------------
def test_etf_immunity_rejects_collapsed_tail_features() -> None:
    counts = step_counts(3, 20, 3, 10)
    problem = FixedETFModel(counts, 7, loss="ce")
    h = problem.optimal_features()
    tail = [3, 4, 5]
    assert failed(etf_immunity.evaluate_fixed(problem, h, tail, "ok")) == []
    collapsed = h.clone()
    collapsed[problem.labels >= 3] = h[problem.labels == 3][0]  # one vector for the whole tail
    assert failed(etf_immunity.evaluate_fixed(problem, collapsed, tail, "collapsed"))


# --- 12. class-averaged ablation ------------------------------------------------------------------
def test_ablation_rejects_equal_norms() -> None:
    problem = FixedETFModel(COUNTS, 6, loss="ce", constraint="class")
    res = solve(problem, "fast", seed=1, tol=1e-12, relative=True, max_iter=20_000)
    h, bound = problem.features(res.x), problem.lower_bound(res.x)
    assert failed(class_averaged_ablation.evaluate(problem, h, bound, "ok")) == []
    decoupled = problem.optimal_features()  # every norm sqrt(E_H): Theorem 1's answer
    labels = failed(class_averaged_ablation.evaluate(problem, decoupled, bound, "equal"))
    assert "equal: norms vs closed form s_k" in labels and "equal: s_max/s_min - 1" in labels
