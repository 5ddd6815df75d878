"""What the layer-peeled models predict for the last layer of a network, with certificates.

A prediction is a pair of Gram matrices: of the classifier rows, G_W = W W^T (K, K), and of
the class means, G_H = Hbar Hbar^T (K, K), from which the cosines that a trained network is
held against follow. Each prediction says whether it is *certified*: a closed form, or a solver
optimum whose geometry (not only its value) carries a proven error bound.

**Gram factors of a convex optimum.** A convex form gives Z = W Hbar^T (K x K, column k =
logits of class k's mean). With Y = Z D^{1/2} (D = diag(n_k) for the regularized UFM of Hong &
Ling, whose feature penalty is per sample; D = I for the LPM) and Y = U S V^T,
W = U S^{1/2} beta and Hbar D^{1/2} = V S^{1/2} / beta, so

    G_W = beta^2 (Y Y^T)^{1/2},      G_H = D^{-1/2} (Y^T Y)^{1/2} D^{-1/2} / beta^2

(`ufm.convex.gram_factors`; `ConvexResult.grams` of a certified optimum).

**The LPM prediction** (Fang et al., PNAS 2021) for counts n_k and the measured E_W, E_H: the
certified optimum of min_Z sum_k (n_k/N) CE(z_k, k) s.t. ||Z||_* <= r = K sqrt(E_W E_H)
(`ufm.convex.solve_lpm_convex`). A value certificate g (the Frank-Wolfe gap) bounds f(Z) - f*,
but at the norms of trained networks f* is nearly 0 and f is almost flat along the non-target
logits, so a small g leaves the minimizer loose. The geometry is certified as follows.

1. Every optimum is column-centred: 1^T Z* = 0. (KKT: -grad f(Z*) = mu (U V^T + E) with mu > 0,
   U^T E = 0, E V = 0; the columns of grad f sum to 0, so 0 = 1^T (U V^T + E) V = 1^T U.)
2. CE(z + c 1, k) = CE(z, k), and on centred directions the Hessian diag(p) - p p^T is at least
   its second eigenvalue, >= min_j p_j (interlacing). Along a segment the probabilities change
   by at most a factor exp(-2 ||C d||_2) (C = I - 1 1^T/K). With sigma = min_k (n_k/N) min_j
   p_jk(Zhat) and t = ||C (Zhat - Z*)||_F, every point Z_s = Zhat + s (Z* - Zhat) has Bregman
   divergence D_f(Z_s; Zhat) >= sigma exp(-2 s t) (s t)^2 / 2, and by convexity and the
   Frank-Wolfe gap D_f(Z_s; Zhat) <= g. So u^2 exp(-2u) <= 2 g / sigma for every u in [0, t]:
   when 2 g / sigma < exp(-2), t is at most the smaller root t1 of u^2 exp(-2u) = 2 g / sigma.
3. With 1 and Z* = C Z*, ||C Zhat - Z*||_F <= t1; by the Araki-Yamagami inequality
   || |A| - |B| ||_F <= sqrt(2) ||A - B||_F every entry of (Z Z^T)^{1/2} and (Z^T Z)^{1/2}
   (and of their centred forms C G C) moves by at most sqrt(2) t1 (times beta^{+-2}), and
   interval arithmetic turns that into a bound on every predicted cosine.

A prediction is certified when that cosine bound is below `cosine_tol`; otherwise it is
returned with certified=False and its reason, and callers must not print it as a prediction.

**SELI** (Thrampoulidis et al., NeurIPS 2022): the max-margin limit of the regularized UFM,
Z proportional to I - 1 1^T/K, with the Gram factors above (D = diag(n_k)); a closed form.

**The fixed ETF** (Yang et al. 2022, Theorems 1-2): W = sqrt(E_W) M^T and every class mean
along its own classifier vector, so both Grams are the simplex ETF's; a closed form.

**The regularized UFM** (Hong & Ling 2023): minority collapse iff lambda >= sqrt(n_B)/N on a
step profile, a closed-form threshold (`ufm.theory.hong_ling_threshold`). How a network's weight
decay maps to lambda is a modelling choice, see `weight_decay_lambda`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ufm.convex import NuclearBallLPM, gram_factors
from ufm.losses import class_mean_cross_entropy
from ufm.metrics import centred_gram, gram_cosines, gram_group_cosines
from ufm.solvers import accelerated_gradient
from ufm.theory import hong_ling_threshold

__all__ = [
    "GeometryComparison",
    "Prediction",
    "certified_logit_distance",
    "compare_geometry",
    "cosine_error_bound",
    "etf_prediction",
    "hong_ling_prediction",
    "lpm_prediction",
    "seli_prediction",
    "spearman",
    "weight_decay_lambda",
]


def _centering(k: int) -> np.ndarray:
    return np.eye(k) - np.full((k, k), 1.0 / k)


def cosine_error_bound(gram: np.ndarray, delta: float) -> float:
    """Largest change of any cosine G_ij / sqrt(G_ii G_jj) when every entry of G moves by at most
    `delta` (interval arithmetic); inf when a diagonal entry could reach 0."""
    diag = np.diag(gram)
    if delta <= 0:
        return 0.0
    if float(diag.min()) <= delta:
        return math.inf
    cos = gram_cosines(gram)
    lo_den = np.sqrt(np.outer(diag - delta, diag - delta))
    hi_den = np.sqrt(np.outer(diag + delta, diag + delta))
    candidates = np.stack(
        [(gram + s * delta) / den for s in (-1.0, 1.0) for den in (lo_den, hi_den)]
    )
    lo = np.clip(candidates.min(0), -1.0, 1.0)
    hi = np.clip(candidates.max(0), -1.0, 1.0)
    off = ~np.eye(len(diag), dtype=bool)
    return float(np.max(np.maximum(hi - cos, cos - lo)[off])) if off.any() else 0.0


def certified_logit_distance(gap: float, sigma: float) -> float:
    """The bound t1 on ||C Zhat - Z*||_F of step 2 of the module docstring: the smaller root of
    u^2 exp(-2u) = 2 gap / sigma; inf when 2 gap / sigma >= exp(-2) (no bound follows)."""
    if not (gap >= 0 and sigma > 0):
        return math.inf if sigma <= 0 else 0.0
    q = 2.0 * gap / sigma
    if q >= math.exp(-2.0):
        return math.inf
    lo, hi = 0.0, 1.0  # u^2 exp(-2u) increases on [0, 1]
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid * mid * math.exp(-2 * mid) <= q:
            lo = mid
        else:
            hi = mid
    return hi  # the upper end: a valid bound


@dataclass
class Prediction:
    """A predicted last-layer geometry: Grams of the classifier rows and of the class means.

    `gram_h` is uncentred (as the model's class means come out); `cosine_h` compares the class
    means centred at their mean (mean of class means), `cosine_h_uncentred` as they are.
    """

    name: str  # "lpm", "seli", "etf", ...
    gram_w: np.ndarray | None  # (K, K) or None where the model fixes nothing about W
    gram_h: np.ndarray | None  # (K, K)
    certified: bool
    certificate: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def cosine_w(self) -> np.ndarray | None:
        return None if self.gram_w is None else gram_cosines(self.gram_w)

    @property
    def cosine_h(self) -> np.ndarray | None:
        return None if self.gram_h is None else gram_cosines(centred_gram(self.gram_h))

    @property
    def cosine_h_uncentred(self) -> np.ndarray | None:
        return None if self.gram_h is None else gram_cosines(self.gram_h)

    @property
    def norm_w(self) -> np.ndarray | None:
        return None if self.gram_w is None else np.sqrt(np.clip(np.diag(self.gram_w), 0, None))


def lpm_prediction(
    counts: Sequence[int] | np.ndarray,
    e_w: float,
    e_h: float,
    *,
    tol: float = 1e-12,
    cosine_tol: float = 0.05,
    max_iter: int = 20_000,
    max_seconds: float | None = 60.0,
    seed: int = 0,
) -> Prediction:
    """The LPM's geometry for `counts` (K,) at budgets E_W, E_H, with its certificate.

    Solves the convex form (Fang et al. 2021) by `ufm.solvers.accelerated_gradient` to relative
    value gap `tol`, or for at most `max_iter` iterations and `max_seconds`; the point reached is
    judged by its geometry certificate, whether or not the value gap reached `tol`. The
    Grams are certified as in the module docstring: `certificate` holds the value, the
    Frank-Wolfe gap, sigma, the logit distance t1 and the bound on every predicted cosine;
    certified is True when that bound is <= `cosine_tol`.
    """
    counts = np.asarray(counts, dtype=np.int64)
    k = len(counts)
    problem = NuclearBallLPM(counts, e_w, e_h)
    with torch.no_grad():  # the geometry certificate below judges the point, converged or not
        result = accelerated_gradient(
            problem,
            problem.random_start(seed),
            tol=tol,
            relative=True,
            max_iter=max_iter,
            max_seconds=max_seconds,
        )
    zt = result.x[0].detach().cpu().to(torch.float64)  # (K, K): row k = logits of class k
    weights = problem.weights.cpu()  # (K,) n_k / N
    grad = class_mean_cross_entropy(zt, weights)[1].numpy().T  # (K, K): column k = w_k (p_k - e_k)
    zhat = zt.numpy().T  # (K, K): column k = logits of class k's mean
    inner, spectral = np.sum(grad * zhat), problem.radius * np.linalg.norm(grad, 2)
    rounding = 64 * np.finfo(np.float64).eps * (np.sum(np.abs(grad * zhat)) + spectral)
    gap = max(float(inner + spectral), 0.0) + float(rounding)  # the Frank-Wolfe gap, rounded up
    p_min = torch.softmax(zt, dim=1).min(dim=1).values  # (K,) smallest probability per class
    sigma = float((weights * p_min).min())
    t1 = certified_logit_distance(gap, sigma)
    z_c = _centering(k) @ zhat  # the optimum is column-centred
    balance = (e_w / e_h) ** 0.25
    gram_w, gram_h = gram_factors(z_c, None, balance)
    entry = math.sqrt(2.0) * t1
    bound_w = cosine_error_bound(gram_w, entry * balance**2)
    bound_h = max(
        cosine_error_bound(gram_h, entry / balance**2),
        cosine_error_bound(centred_gram(gram_h), entry / balance**2),
    )
    bound = max(bound_w, bound_h)
    certificate = {
        "value": result.objective,
        "lower_bound": result.objective - gap,
        "relative_gap": gap / max(result.objective - gap, 1e-300),
        "value_converged": bool(result.converged),
        "frank_wolfe_gap": gap,
        "sigma": sigma,
        "logit_distance": t1,
        "logit_norm": float(np.linalg.norm(z_c)),
        "cosine_error": bound,
        "cosine_tol": cosine_tol,
        "iterations": result.iterations,
        "seconds": result.seconds,
        "e_w": e_w,
        "e_h": e_h,
    }
    certified = bound <= cosine_tol
    note = (
        ""
        if certified
        else f"geometry not certified: cosine bound {bound:.2g} > {cosine_tol:g} "
        f"(value gap {gap:.2g}, sigma {sigma:.2g})"
    )
    if not certified:  # never a number from an uncertified geometry
        return Prediction("lpm", None, None, False, certificate, note)
    return Prediction("lpm", gram_w, gram_h, True, certificate)


def seli_prediction(counts: Sequence[int] | np.ndarray) -> Prediction:
    """SELI (Thrampoulidis et al. 2022): Z proportional to I - 1 1^T/K, Grams with D = diag(n_k)."""
    counts = np.asarray(counts, dtype=np.float64)
    gram_w, gram_h = gram_factors(_centering(len(counts)), counts)
    return Prediction("seli", gram_w, gram_h, True, {"closed_form": True})


def etf_prediction(num_classes: int) -> Prediction:
    """Fixed simplex ETF (Yang et al. 2022, Theorems 1-2): both Grams are I - 1 1^T/K."""
    if num_classes < 2:
        raise ValueError(f"an ETF needs K >= 2 classes, got {num_classes}")
    gram = _centering(num_classes) * num_classes / (num_classes - 1)
    return Prediction("etf", gram, gram.copy(), True, {"closed_form": True})


def weight_decay_lambda(
    weight_decay: float, classifier_sq_norm: float, features_sq_norm: float
) -> dict[str, float]:
    """The regularized-UFM penalties of a network trained by SGD with `weight_decay`.

    SGD with weight decay wd on the loss (1/N) sum CE minimises (1/N) sum CE + (wd/2) ||theta||^2,
    so the classifier's penalty is exact: lambda_W = wd/2 in the plain convention
    lambda ||W||_F^2 of Hong & Ling. Features are not decayed directly, so lambda_H is a
    modelling choice; we take the one under which the measured network is a balanced point of
    the UFM: at every stationary point, rescaling (W, H) -> (a W, H / a) leaves the loss
    unchanged, so lambda_W ||W||_F^2 = lambda_H ||H||_F^2, i.e.
    lambda_H = lambda_W ||W||_F^2 / sum_i ||h_i||^2. Then lambda = 2 sqrt(lambda_W lambda_H).
    """
    values = (weight_decay, classifier_sq_norm, features_sq_norm)
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"weight decay and squared norms must be finite and > 0, got {values}")
    lambda_w = weight_decay / 2
    lambda_h = lambda_w * classifier_sq_norm / features_sq_norm
    return {
        "lambda_w": lambda_w,
        "lambda_h": lambda_h,
        "lambda": 2 * math.sqrt(lambda_w * lambda_h),
    }


def hong_ling_prediction(counts: Sequence[int] | np.ndarray, lam: float) -> dict[str, Any]:
    """Minority collapse of the regularized UFM (Hong & Ling 2023) on a step profile:
    collapse iff lambda >= sqrt(n_B)/N. Returns lambda, the threshold and the verdict;
    `applicable` is False for counts with more than two distinct values."""
    counts = np.asarray(counts, dtype=np.int64)
    values = np.unique(counts)
    if len(values) != 2:
        return {"applicable": False, "lambda": lam, "note": "needs a step profile"}
    threshold = hong_ling_threshold(int(values[0]), int(counts.sum()))
    return {
        "applicable": True,
        "lambda": lam,
        "threshold": threshold,
        "ratio": lam / threshold,
        "collapse": bool(lam >= threshold),
    }


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either side is constant."""
    ra = _ranks(np.asarray(a, dtype=np.float64))
    rb = _ranks(np.asarray(b, dtype=np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=np.float64)
    for value in np.unique(x):  # ties share their mean rank
        tie = x == value
        ranks[tie] = ranks[tie].mean()
    return ranks


CONSTANT_SPREAD = 1e-6  # standard deviation of pair cosines below which a side is constant


@dataclass
class GeometryComparison:
    """Measured against predicted cosine matrices over the off-diagonal class pairs."""

    max_abs: float
    mean_abs: float
    correlation: float  # Pearson over the pairs; nan if either side is constant (CONSTANT_SPREAD)
    minority_measured: float
    minority_predicted: float

    def as_dict(self) -> dict[str, float]:
        return dict(vars(self))


def compare_geometry(
    measured: np.ndarray, predicted: np.ndarray, minority: Sequence[int]
) -> GeometryComparison:
    """Compare two cosine matrices (K, K): max and mean |difference| and correlation over the
    pairs i < j, and the mean pairwise cosine inside `minority` (>= 2 classes) of each."""
    measured = np.asarray(measured, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if measured.shape != predicted.shape or measured.ndim != 2:
        raise ValueError(f"cosine matrices differ in shape: {measured.shape} vs {predicted.shape}")
    iu = np.triu_indices(measured.shape[0], 1)
    a, b = measured[iu], predicted[iu]
    diff = np.abs(a - b)
    # A side that does not vary beyond rounding and solver tolerance (a balanced prediction:
    # every pair at -1/(K-1)) has no correlation; corrcoef would return the rounding's noise.
    varies = a.std() > CONSTANT_SPREAD and b.std() > CONSTANT_SPREAD
    corr = float(np.corrcoef(a, b)[0, 1]) if varies else math.nan
    return GeometryComparison(
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        correlation=corr,
        minority_measured=gram_group_cosines(measured, minority)[0],
        minority_predicted=gram_group_cosines(predicted, minority)[0],
    )

