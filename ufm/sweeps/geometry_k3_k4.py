"""A geometric picture: K = 3 (in the plane) and K = 4 (in 3-D) under imbalance.

Each case is a step profile with one or two majority classes and two minority classes, ratio R,
E_W = E_H = 1 (the scale of the deep heads, so classifiers and features share one axis). Two
models are solved from the same random start by `ufm.solvers.solve`: the learnable LPM with CE
(Fang et al. 2021) and the fixed ETF with CE and the per-sample constraint (Yang et al. 2022).
The solutions live in R^K; they are kept in the span of their K-1 leading principal directions
(the fixed ETF spans exactly K-1 dimensions; "kept" is the share of the squared norm of the
learnable solution that remains), with the class means along the descent from the random start.

Results: "rows", one per case, of panels with the projected classifier "w" and class "means"
(K, K-1), the class-mean "path", "kept", the "objective", the "counts", the "minority" classes
and their "minority_angle" in degrees. Drawn by `figures.geometry_k3_k4_figure`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ufm.convex import solve_lpm_convex
from ufm.metrics import class_means
from ufm.problems import FixedETFModel, LayerPeeledModel, Problem, Vars
from ufm.solvers import solve
from ufm.sweeps.sweep_registry import register_sweep

__all__ = ["DEFAULT", "SMALL", "compute", "principal_frame"]

DEFAULT: dict[str, Any] = {
    # K_A majority and K_B minority classes (K = 3, then K = 4), and the panels of each row:
    # learnable at a moderate and at a severe ratio R = n_A / n_B, fixed ETF at the severe one
    "cases": [
        {
            "classes": [1, 2],
            "panels": [["learnable+ce", 10], ["learnable+ce", 100], ["etf+ce", 100]],
        },
        {
            "classes": [2, 2],
            "panels": [["learnable+ce", 3], ["learnable+ce", 100], ["etf+ce", 100]],
        },
    ],
    "n_major": 300,  # samples of a majority class
    "e_w": 1.0,
    "e_h": 1.0,
    "checkpoints": [1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, 40],  # iterations on the paths
    "tol": 1e-10,
    "seed": 0,
}
SMALL: dict[str, Any] = DEFAULT | {"n_major": 30, "checkpoints": [1, 3]}


def _model(name: str, counts: np.ndarray, params: dict[str, Any]) -> Problem:
    classifier, loss = name.split("+")
    common = dict(counts=counts, dim=len(counts), loss=loss, e_w=params["e_w"], e_h=params["e_h"])
    if classifier == "learnable":
        return LayerPeeledModel(**common)
    return FixedETFModel(**common, constraint="sample", etf_seed=params["seed"])


def _state(problem: Problem, x: Vars) -> tuple[np.ndarray, np.ndarray]:
    """(classifier W (K, d), class means (K, d)) of a point."""
    with torch.no_grad():
        mu, _, _ = class_means(problem.features(x), problem.labels, problem.num_classes)
        return problem.classifier(x).numpy(), mu.numpy()


def principal_frame(w: np.ndarray, means: np.ndarray, dims: int) -> tuple[np.ndarray, float]:
    """Orthonormal (d, dims) frame of the leading right singular vectors of [W; means] and the
    share of their squared norm it keeps."""
    stacked = np.vstack([w, means])
    _, s, vh = np.linalg.svd(stacked, full_matrices=False)
    return vh[:dims].T, float((s[:dims] ** 2).sum() / (s**2).sum())


def _trajectory(problem: Problem, params: dict[str, Any]) -> list[np.ndarray]:
    """Class means at the start and after each checkpoint's number of iterations (the solver is
    deterministic, so a run stopped at m iterations is the first m of the full run)."""
    seed = params["seed"]
    means = [_state(problem, problem.project(problem.random_start(seed)))[1]]
    for m in params["checkpoints"]:
        res = solve(problem, "fast", seed=seed, tol=1e-300, max_iter=m)
        means.append(_state(problem, res.x)[1])
    return means


def _solve_case(name: str, counts: np.ndarray, params: dict[str, Any]) -> dict[str, Any]:
    problem = _model(name, counts, params)
    target = problem.optimum()
    if target is None:
        target = solve_lpm_convex(counts, params["e_w"], params["e_h"], tol=1e-11).value
    res = solve(problem, "fast", seed=params["seed"], tol=params["tol"], target=target)
    w, means = _state(problem, res.x)
    frame, kept = principal_frame(w, means, len(counts) - 1)
    path = [m @ frame for m in _trajectory(problem, params)]
    return {
        "w": (w @ frame).tolist(),
        "means": (means @ frame).tolist(),
        "path": [p.tolist() for p in path],
        "kept": kept,
        "objective": res.objective,
    }


def _panel(case: dict[str, Any], name: str, ratio: float, params: dict[str, Any]) -> dict:
    k_a, k_b = case["classes"]
    n_b = max(1, round(params["n_major"] / ratio))
    counts = np.array([params["n_major"]] * k_a + [n_b] * k_b)
    solved = _solve_case(name, counts, params)
    w = np.asarray(solved["w"])[k_a:]
    cos = float(w[0] @ w[1] / (np.linalg.norm(w[0]) * np.linalg.norm(w[1])))
    angle = float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    minority = list(range(k_a, k_a + k_b))
    return solved | {
        "name": name,
        "counts": counts.tolist(),
        "minority": minority,
        "minority_angle": angle,
    }


@register_sweep(
    "geometry",
    "K = 3 and K = 4 solutions, learnable versus fixed ETF",
    default=DEFAULT,
    small=SMALL,
)
def compute(params: dict[str, Any]) -> dict[str, Any]:
    """Projected solutions, class-mean paths and minority angles, one row per case."""
    rows = [
        [_panel(case, name, ratio, params) for name, ratio in case["panels"]]
        for case in params["cases"]
    ]
    return {"rows": rows}
