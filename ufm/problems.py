"""Layer-peeled / unconstrained-feature problems: variables, feasible sets, objectives, gradients.

Three families, each a class with the same small interface (`random_start`, `value_and_grad`,
`project`, `features`, `classifier`, `bias`, `optimum`, `lower_bound`) so that every solver in
`ufm.solvers` runs on every problem:

- `LayerPeeledModel` (Fang et al., PNAS 2021), learnable W and H:
      min (1/N) sum_{k,i} L(W h_{k,i}, k)
      s.t. (1/K) sum_k ||w_k||^2 <= E_W,  (1/K) sum_k (1/n_k) sum_i ||h_{k,i}||^2 <= E_H.
- `FixedETFModel` (Yang et al., NeurIPS 2022), W = W* = sqrt(E_W) M^T fixed, either the
  decoupled per-sample constraint ||h_{k,i}||^2 <= E_H ("sample") or the LPM's class-averaged
  one ("class").
- `RegularizedUFM` (Hong & Ling 2023), with bias and ridge penalties, unconstrained:
      min (1/N) sum CE(W h_{k,i} + b, k) + lambda_W ||W||_F^2 + lambda_H sum ||h_{k,i}||^2
          + lambda_b ||b||^2
  (the convention of Hong & Ling's code, `convention="plain"`; `"half"` puts 1/2 in front of
  each penalty).

Variables live in the metric of the feasible set: class-averaged feature constraints are written
in u_{k,i} = h_{k,i} / sqrt(K n_k), for which the constraint is the Euclidean ball ||U||_F^2 <= E_H
and the projection a rescaling. Gradients are analytic (checked against autograd in the tests).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ufm.etf import simplex_etf
from ufm.losses import Loss, get_loss
from ufm.theory import class_averaged_etf_optimum, theorem1_value

__all__ = [
    "FixedETFModel",
    "LayerPeeledModel",
    "Problem",
    "RegularizedUFM",
    "SmoothOnly",
    "effective_lambda",
    "project_ball",
]

Vars = tuple[Tensor, ...]


class SmoothOnly:
    """For a problem whose objective is its smooth part alone (a constraint lives in `prox`):
    the value, penalty and objective of the solvers' interface, from `value_and_grad`."""

    def smooth_value(self, x: Vars) -> float:
        return float(self.value_and_grad(x)[0])

    def penalty(self, x: Vars) -> float:
        return 0.0

    def objective(self, x: Vars) -> float:
        return self.smooth_value(x)


def _check_counts(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(counts)
    if arr.ndim != 1 or len(arr) < 2:
        raise ValueError(f"class counts must be a 1-D list of >= 2 classes, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 1) or np.any(arr != np.floor(arr)):
        raise ValueError(f"class counts must be integers >= 1, got {arr.tolist()}")
    return arr.astype(np.int64)


def _check_positive(value: float, name: str) -> float:
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def project_ball(x: Tensor, radius: float) -> Tensor:
    """Euclidean projection of x onto {||x||_F <= radius}."""
    norm = torch.linalg.norm(x)
    return x * (radius / norm) if norm > radius else x


def project_rows(x: Tensor, radius: float) -> Tensor:
    """Row-wise projection of x (N, d) onto {||x_i|| <= radius for every i}."""
    norms = torch.linalg.norm(x, dim=1, keepdim=True)  # (N, 1)
    return x * torch.clamp(radius / norms.clamp_min(1e-300), max=1.0)


@dataclass
class Problem:
    """Common data of every problem: counts, dimension, dtype, device and the labels."""

    counts: np.ndarray
    dim: int
    dtype: torch.dtype = torch.float64
    device: torch.device | str = "cpu"
    labels: Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.counts = _check_counts(self.counts)
        if not isinstance(self.dim, int) or self.dim < 1:
            raise ValueError(f"feature dimension must be an integer >= 1, got {self.dim!r}")
        k = len(self.counts)
        self.labels = torch.repeat_interleave(
            torch.arange(k, device=self.device), torch.as_tensor(self.counts, device=self.device)
        )  # (N,) sorted by class

    @property
    def num_classes(self) -> int:
        return len(self.counts)

    @property
    def num_samples(self) -> int:
        return int(self.counts.sum())

    def with_dtype(self, dtype: torch.dtype) -> Problem:
        """The same problem computed in `dtype`."""
        return dataclasses.replace(self, dtype=dtype)

    def _tensor(self, a: np.ndarray | Tensor) -> Tensor:
        return torch.as_tensor(a, dtype=self.dtype, device=self.device)

    def _gauss(self, gen: torch.Generator, *shape: int) -> Tensor:
        return (
            torch.randn(*shape, generator=gen, dtype=torch.float64).to(self.dtype).to(self.device)
        )

    # The interface every solver uses; subclasses implement it.
    def random_start(self, seed: int) -> Vars:
        raise NotImplementedError

    def value_and_grad(self, x: Vars) -> tuple[Tensor, Vars]:
        raise NotImplementedError

    def smooth_value(self, x: Vars) -> float:
        """The smooth part of the objective (all of it, unless `penalty` is overridden)."""
        return float(self.value_and_grad(x)[0])

    def _mean_loss(self, z: Tensor) -> float:
        return float(self.loss_fn.value(z, self.labels).sum() / self.num_samples)

    def penalty(self, x: Vars) -> float:
        """A non-smooth convex part handled by `prox` (none here)."""
        return 0.0

    def objective(self, x: Vars) -> float:
        return self.smooth_value(x) + self.penalty(x)

    def project(self, x: Vars) -> Vars:
        return x

    def prox(self, x: Vars, step: float) -> Vars:
        """prox_{step * penalty} composed with the projection onto the feasible set."""
        return self.project(x)

    def features(self, x: Vars) -> Tensor:
        raise NotImplementedError

    def classifier(self, x: Vars) -> Tensor:
        raise NotImplementedError

    def bias(self, x: Vars) -> Tensor | None:
        return None

    def optimum(self) -> float | None:
        """The global optimum in closed form, where one is known; else None."""
        return None

    def lower_bound(self, x: Vars) -> float | None:
        """A certified lower bound on the optimum computed at x (convex problems); else None."""
        return None

    def smoothness(self) -> float:
        """An upper bound on the Lipschitz constant of the gradient near the feasible set."""
        raise NotImplementedError


GEOMETRIES = ("ball", "uniform")


class FeatureBudget:
    """The class-averaged feature constraint (1/K) sum_k (1/n_k) sum_i ||h_{k,i}||^2 <= E_H, in
    scaled variables u_i = h_i / s_{y_i}, where it reads sum_i c_{y_i} ||u_i||^2 <= E_H with
    c_k = s_k^2 / (K n_k).

    geometry="ball": s_k = sqrt(K n_k), c_k = 1: a Euclidean ball, projected by a rescaling.
    geometry="uniform": s_k = sqrt(N): every sample's curvature is the same whatever its class
    count (in "ball" it is proportional to K n_k / N, so tail classes converge slowly); the set
    is an ellipsoid, projected exactly by u_i / (1 + mu c_{y_i}) with the multiplier mu >= 0 found
    by Newton's method on a K-term equation (warm-started from the previous projection).
    """

    def __init__(self, problem: Problem, e_h: float, geometry: str) -> None:
        if geometry not in GEOMETRIES:
            raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
        self.e_h, self.geometry, self.labels = e_h, geometry, problem.labels
        counts = problem.counts.astype(np.float64)
        k, n = len(counts), counts.sum()
        scale = np.sqrt(k * counts) if geometry == "ball" else np.full(k, np.sqrt(n))
        self.scale = problem._tensor(scale)[problem.labels][:, None]  # (N, 1)
        self.weights = torch.as_tensor(scale**2 / (k * counts), dtype=torch.float64)  # c_k (K,)
        self._mu = 0.0  # last multiplier: a warm start, not state that changes results

    def _class_sums(self, u: Tensor) -> Tensor:
        sq = torch.linalg.vector_norm(u, dim=1) ** 2  # (N,)
        sums = torch.zeros(len(self.weights), dtype=u.dtype, device=u.device)
        return sums.index_add_(0, self.labels, sq).to("cpu", torch.float64)  # (K,)

    def project(self, u: Tensor) -> Tensor:
        if self.geometry == "ball":
            return project_ball(u, math.sqrt(self.e_h))
        c, sums = self.weights, self._class_sums(u)
        if float((c * sums).sum()) <= self.e_h:
            return u
        mu = self._mu
        for _ in range(100):  # phi(mu) = sum c S / (1 + mu c)^2 - E_H: convex, decreasing
            den = 1.0 + mu * c
            phi = float((c * sums / den**2).sum()) - self.e_h
            step = phi / float((-2.0 * c * c * sums / den**3).sum())
            mu = max(mu - step, 0.0)
            if abs(step) <= 1e-15 * max(1.0, mu):
                break
        self._mu = mu
        shrink = (1.0 / (1.0 + mu * c)).to(u.dtype).to(u.device)  # (K,)
        return u * shrink[self.labels][:, None]

    def support(self, g: Tensor) -> Tensor:
        """max <g, u> over the feasible set: sqrt(E_H sum_i ||g_i||^2 / c_{y_i})."""
        sums = self._class_sums(g)
        return torch.sqrt(self.e_h * (sums / self.weights).sum())


@dataclass
class LayerPeeledModel(Problem):
    """Fang et al.'s LPM with learnable classifier; variables (W (K, d), U (N, d)).

    H = s_y U with the `FeatureBudget` scaling of `geometry` ("ball": ||U||_F^2 <= E_H). With
    L = DR the problem is degenerate: every W with equal rows of norm sqrt(E_W) and
    h = sqrt(E_H) w/||w|| reaches 0.
    """

    loss: str = "ce"
    e_w: float = 1.0
    e_h: float = 5.0
    geometry: str = "ball"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.e_w = _check_positive(self.e_w, "E_W")
        self.e_h = _check_positive(self.e_h, "E_H")
        self.loss_fn: Loss = get_loss(self.loss, e_w=self.e_w, e_h=self.e_h)
        self.budget = FeatureBudget(self, self.e_h, self.geometry)
        self._scale = self.budget.scale

    @property
    def degenerate(self) -> bool:
        return self.loss_fn.regression

    def random_start(self, seed: int) -> Vars:
        gen = torch.Generator().manual_seed(seed)
        w = self._gauss(gen, self.num_classes, self.dim)
        h = self._gauss(gen, self.num_samples, self.dim)  # the same start in every geometry
        w = w * math.sqrt(self.num_classes * self.e_w) / torch.linalg.norm(w)
        return self.project((w, h / self._scale))

    def value_and_grad(self, x: Vars) -> tuple[Tensor, Vars]:
        w, u = x
        # The scale s_y multiplies (N, K) arrays, not (N, d) ones: K <= d here.
        z = self._scale * (u @ w.T)  # (N, K)
        n = self.num_samples
        per_sample, gz = self.loss_fn.value_and_grad(z, self.labels)
        gz = gz * (self._scale / n)  # (N, K), chain rule through h = s_y u
        return per_sample.sum() / n, (gz.T @ u, gz @ w)

    def smooth_value(self, x: Vars) -> float:
        return self._mean_loss(self._scale * (x[1] @ x[0].T))

    def project(self, x: Vars) -> Vars:
        w, u = x
        return project_ball(w, math.sqrt(self.num_classes * self.e_w)), self.budget.project(u)

    def preconditioned(self) -> LayerPeeledModel:
        """The same problem in the "uniform" geometry (see `FeatureBudget`)."""
        return dataclasses.replace(self, geometry="uniform")

    def transfer(self, x: Vars, other: LayerPeeledModel) -> Vars:
        """The point x of this problem in the variables of `other` (same W and H)."""
        return x[0], x[1] * (self._scale / other._scale)

    def features(self, x: Vars) -> Tensor:
        return self._scale * x[1]

    def classifier(self, x: Vars) -> Tensor:
        return x[0]

    def optimum(self) -> float | None:
        return 0.0 if self.degenerate else None

    def lower_bound(self, x: Vars) -> float | None:
        return self.loss_fn.minimum() if self.degenerate else None

    def smoothness(self) -> float:
        k = self.num_classes
        curvature = 0.5 if self.loss == "ce" else 1.0 / self.loss_fn.target
        # Hessian blocks are bounded by curvature * (||H||^2/N, max_y s_y^2 ||W||^2/N).
        s2 = float(self._scale.max()) ** 2
        return curvature * k * max(self.e_h, self.e_w * s2 / self.num_samples)


@dataclass
class FixedETFModel(Problem):
    """Yang et al.'s layer-peeled model with the fixed classifier W* = sqrt(E_W) M^T.

    constraint="sample": ||h_i||^2 <= E_H for every sample; variables (H,) and the unique minimizer
    h*_i = sqrt(E_H/E_W) w*_{y_i} (Theorems 1 and 2). constraint="class": the LPM's
    (1/K) sum_k (1/n_k) sum_i ||h_{k,i}||^2 <= E_H, variables (U,) with H = s_y U in the
    `FeatureBudget` scaling of `geometry`.
    Both are convex, so `lower_bound` gives a Frank-Wolfe duality-gap certificate.
    """

    loss: str = "ce"
    e_w: float = 1.0
    e_h: float = 5.0
    constraint: str = "sample"
    etf_seed: int = 0
    geometry: str = "ball"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.e_w = _check_positive(self.e_w, "E_W")
        self.e_h = _check_positive(self.e_h, "E_H")
        if self.constraint not in ("sample", "class"):
            raise ValueError(f"constraint must be 'sample' or 'class', got {self.constraint!r}")
        self.loss_fn = get_loss(self.loss, e_w=self.e_w, e_h=self.e_h)
        m = simplex_etf(self.num_classes, self.dim, seed=self.etf_seed, dtype=self.dtype)
        self.w_star = math.sqrt(self.e_w) * m.T.to(self.device)  # (K, d)
        self._w_rows = self.w_star[self.labels] if self.loss_fn.regression else None  # (N, d)
        self.budget = FeatureBudget(self, self.e_h, self.geometry)
        self._scale = self.budget.scale if self.constraint == "class" else None

    def random_start(self, seed: int) -> Vars:
        gen = torch.Generator().manual_seed(seed)
        h = self._gauss(gen, self.num_samples, self.dim)
        h = h * math.sqrt(self.e_h) / h.norm(dim=1, keepdim=True)  # the same in every geometry
        return self.project((h if self._scale is None else h / self._scale,))

    def features(self, x: Vars) -> Tensor:
        return x[0] if self._scale is None else self._scale * x[0]

    def classifier(self, x: Vars) -> Tensor:
        return self.w_star

    def value_and_grad(self, x: Vars) -> tuple[Tensor, Vars]:
        h = self.features(x)
        n = self.num_samples
        if self.loss_fn.regression:  # a loss of z_y = <h_i, w*_{y_i}> alone: O(N d)
            w_y = self._w_rows  # (N, d)
            per_sample, g_y = self.loss_fn.target_value_and_grad(
                (h * w_y).sum(1), self.labels, self.num_classes
            )
            gh = (g_y / n)[:, None] * w_y  # (N, d)
        else:
            z = h @ self.w_star.T  # (N, K)
            per_sample, gz = self.loss_fn.value_and_grad(z, self.labels)
            gh = gz @ (self.w_star / n)  # (N, d)
        return per_sample.sum() / n, (gh if self._scale is None else self._scale * gh,)

    def smooth_value(self, x: Vars) -> float:
        if self.loss_fn.regression:
            return float(self.value_and_grad(x)[0])
        return self._mean_loss(self.features(x) @ self.w_star.T)

    def project(self, x: Vars) -> Vars:
        if self._scale is None:
            return (project_rows(x[0], math.sqrt(self.e_h)),)
        return (self.budget.project(x[0]),)

    def preconditioned(self) -> FixedETFModel:
        """The class-constrained problem in the "uniform" geometry (see `FeatureBudget`)."""
        return dataclasses.replace(self, geometry="uniform") if self._scale is not None else self

    def transfer(self, x: Vars, other: FixedETFModel) -> Vars:
        """The point x of this problem in the variables of `other` (same H)."""
        if self._scale is None:
            return x
        return (x[0] * (self._scale / other._scale),)

    def optimal_features(self) -> Tensor:
        """The closed-form minimizer sqrt(E_H/E_W) w*_{y_i} (decoupled constraint), (N, d)."""
        return math.sqrt(self.e_h / self.e_w) * self.w_star[self.labels]

    def optimum(self) -> float | None:
        if self.loss_fn.regression:
            return 0.0
        if self.constraint == "sample":
            return theorem1_value(self.num_classes, self.e_w, self.e_h)
        return class_averaged_etf_optimum(self.counts, self.e_w, self.e_h)[0]

    def lower_bound(self, x: Vars) -> float | None:
        """f(x) - max_{feasible y} <grad f(x), x - y>: per-sample balls or one ball."""
        value, (g,) = self.value_and_grad(x)
        inner = (g * x[0]).sum()
        radius = math.sqrt(self.e_h)
        if self._scale is None:
            support = radius * torch.linalg.norm(g, dim=1).sum()
        else:
            support = self.budget.support(g)
        return float(value - inner - support)

    def smoothness(self) -> float:
        curvature = 0.5 if self.loss == "ce" else 1.0 / self.loss_fn.target
        k = self.num_classes
        norm_w2 = self.e_w * k / (k - 1)  # ||W*||_2^2
        scale = 1.0 if self._scale is None else float(self._scale.max()) ** 2
        return curvature * norm_w2 * scale / self.num_samples


def effective_lambda(lambda_w: float, lambda_h: float, convention: str = "plain") -> float:
    """The lambda of the convex form: 2 sqrt(lambda_W lambda_H) ("plain", Hong & Ling's code) or
    sqrt(lambda_W lambda_H) ("half": penalties (lambda/2)||.||^2)."""
    if convention not in ("plain", "half"):
        raise ValueError(f"convention must be 'plain' or 'half', got {convention!r}")
    root = math.sqrt(lambda_w * lambda_h)
    return 2.0 * root if convention == "plain" else root


@dataclass
class RegularizedUFM(Problem):
    """Hong & Ling's regularized UFM with bias; variables (W (K, d), H (N, d), b (K,)).

    Objective (1/N) sum CE(W h_i + b, y_i) + c (lambda_W ||W||^2 + lambda_H ||H||^2 +
    lambda_b ||b||^2) with c = 1 ("plain") or 1/2 ("half"). Non-convex; its optimum is that of
    the convex form solved by `ufm.convex.solve_regularized_convex` when d >= K.
    """

    lambda_w: float = 1e-3
    lambda_h: float = 1e-3
    lambda_b: float = 0.0
    convention: str = "plain"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.lambda_w = _check_positive(self.lambda_w, "lambda_W")
        self.lambda_h = _check_positive(self.lambda_h, "lambda_H")
        if not (math.isfinite(self.lambda_b) and self.lambda_b >= 0):
            raise ValueError(f"lambda_b must be a finite number >= 0, got {self.lambda_b!r}")
        self.lam = effective_lambda(self.lambda_w, self.lambda_h, self.convention)
        self._c = 1.0 if self.convention == "plain" else 0.5
        self.loss_fn = get_loss("ce")

    def random_start(self, seed: int) -> Vars:
        gen = torch.Generator().manual_seed(seed)
        k, n, d = self.num_classes, self.num_samples, self.dim
        w = self._gauss(gen, k, d) / math.sqrt(d)
        h = self._gauss(gen, n, d) / math.sqrt(d)
        return w, h, torch.zeros(k, dtype=self.dtype, device=self.device)

    def value_and_grad(self, x: Vars) -> tuple[Tensor, Vars]:
        w, h, b = x
        n, c = self.num_samples, self._c
        z = h @ w.T + b  # (N, K)
        per_sample, gz = self.loss_fn.value_and_grad(z, self.labels)
        gz = gz / n  # (N, K)
        value = (
            per_sample.sum() / n
            + c * (self.lambda_w * (w * w).sum() + self.lambda_h * (h * h).sum())
            + c * self.lambda_b * (b * b).sum()
        )
        gw = gz.T @ h + 2 * c * self.lambda_w * w
        gh = gz @ w + 2 * c * self.lambda_h * h
        gb = gz.sum(0) + 2 * c * self.lambda_b * b
        return value, (gw, gh, gb)

    def features(self, x: Vars) -> Tensor:
        return x[1]

    def classifier(self, x: Vars) -> Tensor:
        return x[0]

    def bias(self, x: Vars) -> Tensor | None:
        return x[2]

    def smoothness(self) -> float:
        return 1.0
