"""Closed forms of the theory: optima, thresholds and limiting geometries.

Every function states its formula and source; each has a numerical twin in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "balanced_regularized_optimum",
    "class_averaged_etf_optimum",
    "etf_feature_distance_bound",
    "etf_margin_loss",
    "hong_ling_threshold",
    "seli_classifier_gram",
    "seli_mean_logits",
    "theorem1_value",
]


def etf_margin_loss(num_classes: int, e_w: float, norm: float) -> float:
    """CE of a feature of norm s aligned with its ETF classifier vector (||w*_k|| = sqrt(E_W)):

    phi(s) = log(1 + (K-1) exp(-K sqrt(E_W) s / (K-1))).
    """
    k = num_classes
    return math.log1p((k - 1) * math.exp(-k * math.sqrt(e_w) * norm / (k - 1)))


def theorem1_value(num_classes: int, e_w: float, e_h: float) -> float:
    """Optimum of the fixed-ETF decoupled LPM with CE, for any counts (Yang et al. 2022, Thm 1):

        log(1 + (K-1) exp(-K sqrt(E_W E_H) / (K-1))),

    attained only at h*_{k,i} = sqrt(E_H/E_W) w*_k. It is also the balanced LPM optimum
    (Fang et al. 2021): 0.5597815 for K = 10, E_W = 1, E_H = 5.
    """
    return etf_margin_loss(num_classes, e_w, math.sqrt(e_h))


def etf_feature_distance_bound(
    loss: str, gap: float, num_classes: int, e_w: float, e_h: float, weight: float = 1.0
) -> float:
    """What an objective gap proves about the features of the fixed-ETF decoupled LPM.

    For feasible H (||h_i||^2 <= E_H) whose mean objective f(H) = (1/N) sum_i l(h_i) is within
    `gap` of the optimum, a bound on the root-mean-square distance to Theorem 1's minimizer,
    sqrt((1/N) sum_i ||h_i - h*_i||^2), h*_i = sqrt(E_H/E_W) w*_{y_i}, from the growth of each
    per-sample loss around h* (c = sqrt(E_W E_H)):

    - "ce", quadratic growth: the KKT multiplier nu = ||grad CE(h*)|| / (2 sqrt(E_H)) > 0 makes
      the Lagrangian 2 nu-strongly convex, so l(h) - l* >= nu ||h - h*||^2 on the ball, with
      ||grad CE(h*)|| = (1 - p) K sqrt(E_W) / (K-1), p = 1 / (1 + (K-1) exp(-K c / (K-1)));
      bound sqrt(gap / nu).
    - "dr", quartic growth (the optimal hyperplane w*_k^T h = c touches the ball only at h*):
      w*_k^T (h - h*) <= -sqrt(E_W/E_H) ||h - h*||^2 / 2, hence
      DR(h) >= E_W ||h - h*||^4 / (8 E_H c); bound (8 E_H c gap / E_W)^(1/4) (a bound on the
      mean fourth power, hence on the root mean square).
    - "dr-balanced": DR with per-sample weights >= `weight` (> 0): the "dr" bound of gap/weight.

    A gap of 1e-9 certifies ~1e-4 for CE but only ~1e-2 for DR (K = 10, E_W = 1, E_H = 5).
    Source: ../shared/DESIGN.md section 4 (the growth bounds); Yang et al. 2022 (Theorems 1-2).
    """
    if not (math.isfinite(gap) and gap >= 0):
        raise ValueError(f"gap must be a finite number >= 0, got {gap!r}")
    if not weight > 0:
        raise ValueError(f"weight must be > 0, got {weight!r}")
    k = num_classes
    c = math.sqrt(e_w * e_h)
    if loss == "ce":
        tail = (k - 1) * math.exp(-k * c / (k - 1))
        grad_norm = tail / (1 + tail) * k * math.sqrt(e_w) / (k - 1)
        return math.sqrt(gap / (grad_norm / (2 * math.sqrt(e_h))))
    if loss in ("dr", "dr-balanced"):
        scaled = gap if loss == "dr" else gap / weight
        return (8 * e_h * c * scaled / e_w) ** 0.25
    raise ValueError(f"no growth bound for loss {loss!r}; known: ce, dr, dr-balanced")


def class_averaged_etf_optimum(
    counts: Sequence[int] | np.ndarray, e_w: float, e_h: float
) -> tuple[float, np.ndarray]:
    """Fixed ETF + CE under the class-averaged constraint (1/K) sum_k (1/n_k) sum_i ||h||^2 <= E_H.

    By Jensen and the ETF's symmetry h_{k,i} = s_k w*_k/||w*_k||, leaving the convex problem
    min_s sum_k (n_k/N) phi(s_k) s.t. (1/K) sum_k s_k^2 <= E_H (phi: `etf_margin_loss`). Its KKT
    conditions (n_k/N) phi'(s_k) + (2 mu/K) s_k = 0 are solved by nested root finding.
    Returns (optimal value, norms s_k (K,)); the norms grow with n_k.
    """
    from scipy.optimize import brentq  # here: scipy's import costs a third of a second

    n = np.asarray(counts, dtype=np.float64)
    k = len(n)
    a, b = k - 1.0, k * math.sqrt(e_w) / (k - 1)
    weights = n / n.sum()

    def slope(s: float) -> float:  # -phi'(s) > 0, decreasing in s
        return a * b / (a + math.exp(b * s))

    def norms(mu: float) -> np.ndarray:
        top = 10.0 * math.sqrt(k * e_h) + 10.0
        return np.array(
            [
                brentq(
                    lambda s, w=w: w * slope(s) - 2 * mu * s / k, 0.0, top, xtol=1e-15, rtol=1e-15
                )
                for w in weights
            ]
        )

    def excess(log_mu: float) -> float:
        return float(np.mean(norms(math.exp(log_mu)) ** 2) - e_h)

    log_mu = brentq(excess, -60.0, 20.0, xtol=1e-14, rtol=1e-15)
    s = norms(math.exp(log_mu))
    value = float(sum(w * etf_margin_loss(k, e_w, si) for w, si in zip(weights, s, strict=True)))
    return value, s


def balanced_regularized_optimum(
    num_classes: int, n_per_class: int, lam: float
) -> tuple[float, float]:
    """Global optimum of the regularized UFM with balanced classes (Zhu et al., NeurIPS 2021),
    in the convex form of `ufm.convex.NuclearPenaltyUFM` (lambda = 2 sqrt(lambda_W lambda_H),
    or sqrt(lambda_W lambda_H) for the 1/2 convention):

        Z* = a* (I - 1 1^T/K),   a* = log(1/(lambda sqrt(n)) - (K-1))   if lambda sqrt(n) < 1/K,

    else a* = 0 (everything collapses to 0). With Z = a Zbar the objective is
    log(1 + (K-1) e^{-a}) + lambda sqrt(n) (K-1) a (||Zbar||_* = K-1, Y = sqrt(n) Z), whose
    stationarity e^{-a}/(1 + (K-1) e^{-a}) = lambda sqrt(n) gives a*. Any bias is a multiple of
    1 (irrelevant to CE). Factors: W W^T = sqrt(lambda_H/lambda_W) sqrt(n) a* Zbar, a simplex
    ETF. Returns (optimal value, a*).
    """
    if num_classes < 2 or n_per_class < 1:
        raise ValueError(f"need K >= 2 and n >= 1, got K={num_classes}, n={n_per_class}")
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lambda must be a finite number > 0, got {lam!r}")
    k, t = num_classes, lam * math.sqrt(n_per_class)
    a = math.log(1.0 / t - (k - 1)) if t < 1.0 / k else 0.0
    return math.log1p((k - 1) * math.exp(-a)) + t * (k - 1) * a, a


def hong_ling_threshold(n_minority: int, num_samples: int) -> float:
    """Minority-collapse threshold of the regularized UFM (Hong & Ling 2023), step profile:

    the K_B minority classes (n_B samples each) collapse to one vector iff
    lambda >= sqrt(n_B)/N, with lambda = 2 sqrt(lambda_W lambda_H) for penalties
    lambda ||.||^2 ("plain") and lambda = sqrt(lambda_W lambda_H) for (lambda/2)||.||^2 ("half"),
    see `ufm.problems.effective_lambda`. (5, 500, 5, 100) gives 10/3000 = 0.0033333.
    """
    if n_minority < 1 or num_samples < n_minority:
        raise ValueError(f"need 1 <= n_B <= N, got n_B={n_minority}, N={num_samples}")
    return math.sqrt(n_minority) / num_samples


def _centering(num_classes: int) -> np.ndarray:
    return np.eye(num_classes) - np.ones((num_classes, num_classes)) / num_classes


def seli_classifier_gram(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """SELI classifier geometry (Thrampoulidis et al., NeurIPS 2022), Frobenius-normalised:

        W W^T ∝ (Zbar D Zbar)^{1/2},   Zbar = I - 1 1^T/K,  D = diag(n_k)  -> (K, K).

    Balanced counts give the simplex-ETF Gram matrix (I - 1 1^T/K)/sqrt(K-1).
    """
    n = np.asarray(counts, dtype=np.float64)
    zbar = _centering(len(n))
    vals, vecs = np.linalg.eigh(zbar @ np.diag(n) @ zbar)  # PSD, rank K-1
    vals = np.where(vals > 1e-12 * vals.max(), vals, 0.0)  # the null direction 1 exactly
    root = (vecs * np.sqrt(vals)) @ vecs.T
    return root / np.linalg.norm(root)


def seli_mean_logits(num_classes: int) -> np.ndarray:
    """SELI logits of the class means: Z = W Hbar^T ∝ Zbar = I - 1 1^T/K, normalised, (K, K)."""
    zbar = _centering(num_classes)
    return zbar / np.linalg.norm(zbar)
