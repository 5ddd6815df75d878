"""Check 7: minority collapse in the layer-peeled model (Fang et al., PNAS 2021), with an exact
KKT criterion for the ratio at which it happens.

Setting: step profile, K_A majority classes of n_A samples and K_B minority classes of
n_B = n_A / R samples; E_W = 1, E_H = 5. The LPM's convex form (check 6) is

    min_Z f(Z) = sum_k pi_k CE(z_k, k)   s.t.  ||Z||_* <= r = K sqrt(E_W E_H),   pi_k = n_k/N,

with column z_k the logits of class k's mean and row j of Z the scores of classifier w_j.

**Derivation of the criterion.** Let G = grad f(Z): column k is pi_k (p_k - e_k),
p_k = softmax(z_k). The KKT conditions are -G in mu d||Z||_*, mu >= 0, and for Z != 0 on the
sphere ||G||_op = mu. Minority collapse (w_j equal for j in B) means the rows j in B of Z are
equal; since Z = W Hbar^T with W = U S^{1/2}, Hbar = V S^{1/2}, this is equivalent to equal
rows of Z. Let Q_B be the projector onto {x : x supported on B, sum_{j in B} x_j = 0}
(rank K_B - 1). The problem is invariant under permutations within A and within B, so (the
optimum being unique) Z commutes with them and Q_B Z Q_B = a Q_B for a scalar a >= 0; collapse
is a = 0.

- If a > 0, Q_B's range is a singular subspace of Z with singular value a, so the subgradient
  there is exactly Q_B: -Q_B G Q_B = mu Q_B. In the B x B block, -G = pi_B (I - P) with
  P_jk = softmax(z_k)_j, whose diagonal p_s (own class) exceeds its off-diagonal p_o (another
  minority class) because a > 0. Hence mu = pi_B (1 - (p_s - p_o)) < pi_B.
- If a = 0, Z's row and column spaces are orthogonal to range(Q_B), and the subgradient there
  is any E with ||E||_op <= 1. All minority logits of a minority class are equal (p_s = p_o),
  so -Q_B G Q_B = pi_B Q_B = mu E, which needs mu >= pi_B. Conversely, moving along
  Z + eps Q_B changes f by -eps pi_B (K_B - 1) and ||Z||_* by +eps (K_B - 1): with mu >= pi_B
  the Lagrangian does not decrease, so collapse is optimal.

So, at the optimum: **the minority classes collapse iff mu = ||grad f(Z*)||_op >= n_B / N.**
phi(R) = mu(R) / pi_B(R) - 1 changes sign at one finite ratio R0, found by root finding on
log R (Brent) from certified solutions.

How it is checked, each solution certified and from a random start:
1. along R in a grid, the mean cosine between minority classifiers (from the factor
   W = U S^{1/2}) increases, equals -1/(K-1) at R = 1 (ETF) and 1 for R >= R0;
2. R0 is found; at R0/1.5, R0/1.1 (not collapsed: spread >= SEPARATED, mu < pi_B) and at
   1.1 R0, 1.5 R0 (collapsed: spread <= COLLAPSED, mu >= pi_B) geometry and KKT agree; the
   derivation's pieces hold there too: the solution is invariant under permutations of the
   minority classes, mu = pi_B (1 - (p_s - p_o)) below R0, and p_s = p_o above it;
3. the two expressions of the multiplier, ||G||_op and -<G, Z>/r, agree (stationarity).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import brentq
from torch import Tensor

from proofs_checks.registry import CheckResult, Measurement, Size, register
from proofs_checks.tolerances import CERTIFIED_GAP, COLLAPSED, SEPARATED, SOLUTION
from ufm.convex import NuclearBallLPM, solve_lpm_convex
from ufm.metrics import group_cosines, group_spread

__all__ = [
    "collapse_ratio",
    "evaluate_kkt",
    "minority_probabilities",
    "minority_state",
    "run",
]

E_W, E_H = 1.0, 5.0
K_A, K_B = 5, 5
N_A = 10**6  # majority class size: n_B = round(N_A / R) makes R effectively continuous
GRIDS = {"full": (1, 2, 5, 10, 20, 50, 100, 1000), "small": (1, 5, 20, 100)}
SIDES = {"full": (1 / 1.5, 1 / 1.1, 1.1, 1.5), "small": (1 / 1.1, 1.1)}
MONOTONE_SLACK = 1e-6  # cosines from certified solutions move by less than this at a fixed R
MULTIPLIER_AGREEMENT = 1e-6  # ||G||_op vs -<G, Z>/r, relative: first-order in the distance
# mu must clear pi_B by more than its own accuracy (MULTIPLIER_AGREEMENT) on either side.
KKT_MARGIN = 1e-5


def step_profile(ratio: float) -> np.ndarray:
    """K_A classes of N_A samples and K_B of round(N_A / ratio), (K,)."""
    return np.array([N_A] * K_A + [round(N_A / ratio)] * K_B, dtype=np.int64)


def minority_probabilities(zt: Tensor, minority: Sequence[int]) -> tuple[float, float]:
    """(p_s, p_o): mean softmax probability of a minority class mean on its own class, and on
    another minority class. zt (K, K): row k = logits of class k's mean."""
    idx = list(minority)
    p = torch.softmax(zt, dim=1)[idx][:, idx]  # (K_B, K_B)
    own = torch.diagonal(p)
    other = (p.sum() - own.sum()) / (len(idx) * (len(idx) - 1))
    return float(own.mean()), float(other)


def _symmetry_residual(z: Tensor, minority: list[int]) -> float:
    """||Q_B Z Q_B - a Q_B||_F / ||Z||_F with a fitted: 0 when the optimum is invariant under
    permutations of the minority classes (the derivation's assumption)."""
    k, b = z.shape[0], len(minority)
    q = torch.zeros(k, k, dtype=z.dtype)
    idx = torch.as_tensor(minority)
    q[idx[:, None], idx[None, :]] = torch.eye(b, dtype=z.dtype) - 1.0 / b  # Q_B
    block = q @ z @ q
    a = torch.trace(block) / (b - 1)
    return float(torch.linalg.matrix_norm(block - a * q) / torch.linalg.matrix_norm(z))


def minority_state(
    counts: np.ndarray, seed: int = 0, minority: Sequence[int] | None = None
) -> dict[str, float]:
    """Certified LPM optimum for `counts`: minority spread and cosine, mu, pi_B, R, bounds.

    `minority`: the minority classes (default: the last K_B); pi_B is the share of the last one.
    """
    cert = solve_lpm_convex(counts, E_W, E_H, tol=CERTIFIED_GAP, seed=seed)
    problem = NuclearBallLPM(counts, E_W, E_H)
    zt = cert.z.T  # the solver's variable: row k = logits of class k's mean
    _, (g,) = problem.value_and_grad((zt,))
    minority = list(range(K_A, K_A + K_B)) if minority is None else list(minority)
    w, _ = cert.factors(len(counts), (E_W / E_H) ** 0.25, seed=seed)
    p_own, p_other = minority_probabilities(zt, minority)
    return {
        "R": float(counts[0] / counts[-1]),
        "spread": group_spread(cert.z, minority),
        "symmetry": _symmetry_residual(cert.z, minority),
        "cosine": group_cosines(w, minority)[0],
        "mu": problem.multiplier((zt,)),
        "mu_inner": float(-(g * zt).sum()) / problem.radius,
        "pi_B": float(counts[-1] / counts.sum()),
        "p_own": p_own,
        "p_other": p_other,
        "value": cert.value,
        "lower_bound": cert.lower_bound,
        "relative_gap": cert.relative_gap,
    }


def collapse_ratio(lo: float, hi: float) -> float:
    """R0 in [lo, hi]: the root of mu(R)/pi_B(R) - 1 (the KKT criterion), by Brent on log R."""

    def phi(log_r: float) -> float:
        state = minority_state(step_profile(math.exp(log_r)))
        return state["mu"] / state["pi_B"] - 1

    return math.exp(brentq(phi, math.log(lo), math.log(hi), xtol=1e-6, rtol=1e-8))


def evaluate_kkt(state: dict[str, float], collapsed: bool, tag: str) -> list[Measurement]:
    """The geometry and the KKT criterion must agree with the side of R0 (item 2)."""
    excess = state["mu"] / state["pi_B"] - 1
    symmetric = Measurement(f"{tag}: symmetry residual", state["symmetry"], SOLUTION)
    if collapsed:
        return [
            symmetric,
            Measurement(f"{tag}: minority spread (collapsed)", state["spread"], COLLAPSED),
            Measurement(f"{tag}: mu/pi_B - 1 (KKT: collapse)", excess, KKT_MARGIN, ">="),
            Measurement(
                f"{tag}: p_s - p_o (collapse: 0)", abs(state["p_own"] - state["p_other"]), COLLAPSED
            ),
        ]
    derived = state["pi_B"] * (1 - (state["p_own"] - state["p_other"]))
    return [
        symmetric,
        Measurement(f"{tag}: minority spread (not collapsed)", state["spread"], SEPARATED, ">="),
        Measurement(f"{tag}: 1 - mu/pi_B (KKT: no collapse)", -excess, KKT_MARGIN, ">="),
        Measurement(
            f"{tag}: mu vs pi_B (1 - (p_s - p_o))",
            abs(derived / state["mu"] - 1),
            MULTIPLIER_AGREEMENT,
        ),
    ]


def _multiplier_agreement(state: dict[str, float], tag: str) -> Measurement:
    diff = abs(state["mu"] - state["mu_inner"]) / state["mu"]
    return Measurement(f"{tag}: ||G||_op vs -<G,Z>/r", diff, MULTIPLIER_AGREEMENT)


def _grid(size: Size) -> tuple[list[Measurement], list[dict[str, float]]]:
    """Item 1: cosines along the grid of ratios."""
    states = [minority_state(step_profile(r), seed=i) for i, r in enumerate(GRIDS[size])]
    cosines = [s["cosine"] for s in states]
    drops = [max(a - b, 0.0) for a, b in itertools.pairwise(cosines)]
    k = K_A + K_B
    ms = [
        Measurement("grid: largest decrease of the minority cosine", max(drops), MONOTONE_SLACK),
        Measurement("grid: R=1 cosine vs -1/(K-1)", abs(cosines[0] + 1 / (k - 1)), SOLUTION),
        Measurement("grid: 1 - cosine at the largest R", 1 - cosines[-1], COLLAPSED),
        *(_multiplier_agreement(s, f"grid R={s['R']:g}") for s in states),
    ]
    return ms, states


def _bracket(states: list[dict[str, float]]) -> tuple[float, float]:
    """Two consecutive grid ratios between which mu/pi_B - 1 changes sign."""
    signs = [s["mu"] >= s["pi_B"] for s in states]
    for left, right in itertools.pairwise(states):
        if not (left["mu"] >= left["pi_B"]) and right["mu"] >= right["pi_B"]:
            return left["R"], right["R"]
    raise RuntimeError(f"no sign change of mu - pi_B on the grid: {signs}")


@register(
    "minority_collapse",
    statement="LPM, step K_A=K_B=5: minority classifiers collapse iff KKT mu >= n_B/N, R >= R0",
    source="Fang et al. 2021 (minority collapse); KKT criterion derived",
)
def run(size: Size) -> CheckResult:
    ms, states = _grid(size)
    r0 = collapse_ratio(*_bracket(states))
    sides = []
    for i, factor in enumerate(SIDES[size]):
        state = minority_state(step_profile(r0 * factor), seed=100 + i)
        ms += evaluate_kkt(state, factor > 1, f"R = {factor:.3g} R0")
        ms.append(_multiplier_agreement(state, f"R = {factor:.3g} R0"))
        sides.append({"factor": factor, **state})
    return CheckResult.from_measurements(
        ms,
        R0=r0,
        e_w=E_W,
        e_h=E_H,
        K_A=K_A,
        K_B=K_B,
        grid=states,
        sides=sides,
        criterion="collapse iff mu = ||grad f(Z*)||_op >= pi_B = n_B/N",
    )
