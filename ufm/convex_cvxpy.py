"""Independent reference solutions of the convex forms of `ufm.convex`, by cvxpy.

Used by the tests, proofs_checks and benchmarks to check the certified first-order solutions on
small K; cvxpy is imported inside each function, so importing this module does not need it.

- `cvxpy_lpm_nuclear`: the LPM's nuclear-norm program (Fang et al., PNAS 2021),
  min_Z sum_k (n_k/N) CE(z_k, k) s.t. ||Z||_* <= K sqrt(E_W E_H).
- `cvxpy_lpm_sdp`: Fang et al.'s SDP in the Gram matrix of [Hbar; W] (2K x 2K).
- `cvxpy_regularized`: Hong & Ling's (2023) program in Y = Z D^{1/2}, with or without bias.
- `cvxpy_ufm_svm`: its lambda -> 0 limit without bias, the max-margin program whose solution is
  the SELI logit matrix (Thrampoulidis et al., NeurIPS 2022).

A solver that fails or returns a status other than optimal raises RuntimeError.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ufm.problems import _check_counts

__all__ = ["cvxpy_lpm_nuclear", "cvxpy_lpm_sdp", "cvxpy_regularized", "cvxpy_ufm_svm"]


def _cvxpy_solve(prob: object, solver: str, what: str) -> None:
    import cvxpy as cp

    kwargs = {"eps": 1e-9, "max_iters": 200_000} if solver == "SCS" else {}
    try:
        prob.solve(solver=solver, **kwargs)  # type: ignore[attr-defined]
    except cp.error.SolverError as err:
        raise RuntimeError(f"{what}: cvxpy solver {solver} failed: {err}") from err
    status = prob.status  # type: ignore[attr-defined]
    if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise RuntimeError(f"{what}: cvxpy solver {solver} returned status {status!r}")


def _ce_columns(z: object, weights: np.ndarray) -> object:
    import cvxpy as cp

    k = len(weights)
    return sum(weights[j] * (cp.log_sum_exp(z[:, j]) - z[j, j]) for j in range(k))


def cvxpy_lpm_nuclear(
    counts: Sequence[int] | np.ndarray, e_w: float = 1.0, e_h: float = 5.0, solver: str = "SCS"
) -> tuple[float, np.ndarray]:
    """The LPM's nuclear-norm form in cvxpy: (optimal value, Z (K, K))."""
    import cvxpy as cp

    n = _check_counts(counts).astype(np.float64)
    k = len(n)
    z = cp.Variable((k, k))
    prob = cp.Problem(
        cp.Minimize(_ce_columns(z, n / n.sum())), [cp.normNuc(z) <= k * math.sqrt(e_w * e_h)]
    )
    _cvxpy_solve(prob, solver, "LPM nuclear-norm program")
    return float(prob.value), np.asarray(z.value)


def cvxpy_lpm_sdp(
    counts: Sequence[int] | np.ndarray, e_w: float = 1.0, e_h: float = 5.0, solver: str = "SCS"
) -> tuple[float, np.ndarray]:
    """Fang et al.'s SDP: X = Gram of [Hbar; W] (2K x 2K) PSD, tr X_HH <= K E_H,
    tr X_WW <= K E_W, objective in Z = X_WH. Returns (optimal value, X)."""
    import cvxpy as cp

    n = _check_counts(counts).astype(np.float64)
    k = len(n)
    x = cp.Variable((2 * k, 2 * k), PSD=True)
    z = x[k:, :k]  # W Hbar^T
    cons = [cp.trace(x[:k, :k]) <= k * e_h, cp.trace(x[k:, k:]) <= k * e_w]
    prob = cp.Problem(cp.Minimize(_ce_columns(z, n / n.sum())), cons)
    _cvxpy_solve(prob, solver, "LPM semidefinite program")
    return float(prob.value), np.asarray(x.value)


def cvxpy_regularized(
    counts: Sequence[int] | np.ndarray,
    lam: float,
    lambda_b: float = 0.0,
    solver: str = "SCS",
    bias: bool = True,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Hong & Ling's convex program in cvxpy: (optimal value, Z (K, K), b (K,)); with
    bias=False the model has no bias and b is returned as zeros."""
    import cvxpy as cp

    n = _check_counts(counts).astype(np.float64)
    k = len(n)
    y = cp.Variable((k, k))
    z = y @ np.diag(1.0 / np.sqrt(n))
    objective = lam * cp.normNuc(y)
    if bias:
        b = cp.Variable(k)
        logits = z + cp.reshape(b, (k, 1), order="F") @ np.ones((1, k))
        objective += _ce_columns(logits, n / n.sum()) + lambda_b * cp.sum_squares(b)
    else:
        objective += _ce_columns(z, n / n.sum())
    prob = cp.Problem(cp.Minimize(objective))
    _cvxpy_solve(prob, solver, "regularized UFM program")
    b_value = np.asarray(b.value) if bias else np.zeros(k)
    return float(prob.value), np.asarray(z.value), b_value


def cvxpy_ufm_svm(
    counts: Sequence[int] | np.ndarray, solver: str = "CLARABEL"
) -> tuple[float, np.ndarray]:
    """The lambda -> 0 limit of the bias-free regularized UFM (Thrampoulidis et al. 2022):

        min_Z ||Z D^{1/2}||_*   s.t.   z_kk - z_jk >= 1   for all j != k,

    the max-margin problem in the logits Z (K, K) of the class means (column k = class k). Its
    solution is the SELI logit matrix I - 1 1^T/K. Returns (optimal value, Z)."""
    import cvxpy as cp

    n = _check_counts(counts).astype(np.float64)
    k = len(n)
    z = cp.Variable((k, k))
    margins = [z[j, j] - z[i, j] >= 1 for j in range(k) for i in range(k) if i != j]
    prob = cp.Problem(cp.Minimize(cp.normNuc(z @ np.diag(np.sqrt(n)))), margins)
    _cvxpy_solve(prob, solver, "UFM max-margin program")
    return float(prob.value), np.asarray(z.value)
