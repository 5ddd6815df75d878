"""Shared test settings: tolerances per dtype (the only place they live), hypothesis profiles,
one torch thread, and the GPU skip."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, settings

from ufm.runtime import torch_threads

# Tolerances for comparing two computations of the same quantity, per dtype.
TOL = {
    torch.float64: {"atol": 1e-12, "rtol": 1e-10},
    torch.float32: {"atol": 1e-5, "rtol": 1e-4},
}
# Solver-backed results: an optimum reached by a first-order solver (gap on the objective)
# and the agreement of two independent solvers. Values: the certified optimum (relative gap
# <= 1e-10) against cvxpy, measured 1.4e-11 (SCS, eps 1e-9) to 2.3e-9 (Clarabel, the SDP); 1e-8
# keeps a factor 4 and catches any error in a formulation (those move values by >= 1e-4).
SOLVER_GAP = 1e-9
CROSS_SOLVER = 1e-8
# Optimal Z of the LPM's convex form (max entry) against cvxpy's, per cvxpy solver: SCS (eps
# 1e-9) reaches 4.6e-10 (nuclear form) and 2.1e-9 (Fang's SDP), Clarabel (default tolerances)
# 5.4e-5 and 1.6e-4: the objective is flat along Z's small directions, so an interior-point
# solver stopped at gap 1e-8 leaves Z loose there.
CROSS_SOLVER_Z = {"SCS": 2e-8, "CLARABEL": 5e-4}

settings.register_profile(
    "default", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", deadline=None, max_examples=400)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def close(
    a: torch.Tensor | float,
    b: torch.Tensor | float,
    dtype: torch.dtype = torch.float64,
    scale: float = 1.0,
) -> bool:
    """allclose with the tolerances of `dtype`, loosened by `scale`."""
    tol = TOL[dtype]
    a_t = torch.as_tensor(a, dtype=torch.float64)
    b_t = torch.as_tensor(b, dtype=torch.float64)
    return bool(torch.allclose(a_t, b_t, atol=tol["atol"] * scale, rtol=tol["rtol"] * scale))


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    """The tests' tensors are small: on a loaded machine a second thread only waits at barriers."""
    with torch_threads(1):
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that takes the `cuda` fixture is a GPU test: `pytest -m gpu` selects it too."""
    for item in items:
        if "cuda" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.gpu)


@pytest.fixture
def cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    return torch.device("cuda")
