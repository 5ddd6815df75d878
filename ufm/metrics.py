"""Neural-collapse metrics (Papyan, Han & Donoho, PNAS 2020) and their imbalanced variants.

Pure, vectorized functions of features H (N, d), labels y (N,), classifier W (K, d) and bias b
(K,). They compute in float64 by default on the device of their inputs. With mu_k the class
means, mu_G the global mean and Mbar (K, d) the centred means mu_k - mu_G:

- NC1 = tr(Sigma_W Sigma_B^+) / K, Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T
  (per sample, the default) or (1/K) sum_k (1/n_k) sum_{y_i = k} (...) (class-averaged).
- NC2: equinorm = std/mean of the norms (of the rows of Mbar, of W); equiangularity = std of
  the pairwise cosines; max-angle = mean |cos + 1/(K-1)|; ETF distance
  || A A^T/||A A^T||_F - (I - 1 1^T/K)/sqrt(K-1) ||_F for A = W (or Mbar).
- NC3 self-duality: || W^T/||W||_F - Mbar^T/||Mbar||_F ||_F.
- NC4: fraction of samples whose classifier argmax differs from the nearest class mean.
- Minority collapse (Fang et al., PNAS 2021): mean / max pairwise cosine of classifier vectors
  and of centred class means inside a group of classes.

Conventions that differ across papers under imbalance are explicit: `global_mean` is the mean
of the samples ("samples") or of the class means ("classes"); Sigma_B is class-averaged
(1/K) sum_k (mu_k - mu_G)(...)^T ("classes") or sample-weighted sum_k (n_k/N)(...) ("samples");
Sigma_W (`within_cov`) is per sample, (1/N) sum_i ("samples", Papyan et al.'s, so head classes
dominate it under imbalance), or class-averaged, (1/K) sum_k (1/n_k) sum_{y_i = k} ("classes",
every class's spread counts once).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "centred_gram",
    "class_means",
    "equiangularity",
    "equinorm",
    "etf_distance",
    "gram_cosines",
    "gram_group_cosines",
    "group_cosines",
    "group_spread",
    "last_layer_geometry",
    "max_angle",
    "nc1",
    "nc_metrics",
    "ncc_mismatch",
    "pairwise_cosines",
    "self_duality",
]

_CONVENTIONS = ("samples", "classes")
GramT = TypeVar("GramT", Tensor, np.ndarray)


def _check_labels(h: Tensor, y: Tensor, num_classes: int) -> None:
    if h.ndim != 2:
        raise ValueError(f"features must have shape (N, d), got {tuple(h.shape)}")
    if y.shape != (h.shape[0],):
        raise ValueError(f"labels must have shape ({h.shape[0]},), got {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}]"
        )


def class_means(
    h: Tensor, y: Tensor, num_classes: int, *, global_mean: str = "classes"
) -> tuple[Tensor, Tensor, Tensor]:
    """Class means mu (K, d), global mean mu_G (d,) and counts n (K,) of features h (N, d).

    Every class must have at least one sample. `global_mean`: "samples" or "classes".
    """
    _check_labels(h, y, num_classes)
    if global_mean not in _CONVENTIONS:
        raise ValueError(f"global_mean must be one of {_CONVENTIONS}, got {global_mean!r}")
    counts = torch.bincount(y, minlength=num_classes).to(h.dtype)  # (K,)
    if bool((counts == 0).any()):
        empty = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"classes {empty} have no samples; NC metrics need every class")
    sums = torch.zeros(num_classes, h.shape[1], dtype=h.dtype, device=h.device)
    sums.index_add_(0, y, h)
    mu = sums / counts[:, None]  # (K, d)
    mu_g = h.mean(0) if global_mean == "samples" else mu.mean(0)
    return mu, mu_g, counts


def nc1(
    h: Tensor,
    y: Tensor,
    num_classes: int,
    *,
    global_mean: str = "classes",
    between_cov: str = "classes",
    within_cov: str = "samples",
    rcond: float = 1e-10,
) -> float:
    """NC1 = tr(Sigma_W Sigma_B^+)/K (Papyan et al. 2020, Fig. 6) of h (N, d), y (N,).

    Sigma_W: `within_cov="samples"` weights every sample by 1/N (Papyan et al.),
    `"classes"` every class by 1/K and its samples by 1/n_k. Sigma_B^+ is the pseudo-inverse
    with relative cut-off `rcond` on the eigenvalues; it is 0 for perfectly collapsed features
    and invariant to rotations and scalings of h.
    """
    h = h.to(torch.float64)
    mu, mu_g, counts = class_means(h, y, num_classes, global_mean=global_mean)
    if between_cov not in _CONVENTIONS:
        raise ValueError(f"between_cov must be one of {_CONVENTIONS}, got {between_cov!r}")
    if within_cov not in _CONVENTIONS:
        raise ValueError(f"within_cov must be one of {_CONVENTIONS}, got {within_cov!r}")
    within = h - mu[y]  # (N, d)
    if within_cov == "classes":
        within = within / torch.sqrt(num_classes * counts)[y][:, None]  # rows / sqrt(K n_y)
        sigma_w = within.T @ within  # (d, d)
    else:
        sigma_w = within.T @ within / h.shape[0]  # (d, d)
    centred = mu - mu_g  # (K, d)
    weights = (
        counts / counts.sum()
        if between_cov == "samples"
        else torch.full_like(counts, 1 / num_classes)
    )
    sigma_b = (centred * weights[:, None]).T @ centred  # (d, d)
    return float(torch.trace(sigma_w @ _pinv_psd(sigma_b, rcond)) / num_classes)


def _pinv_psd(a: Tensor, rcond: float) -> Tensor:
    vals, vecs = torch.linalg.eigh(a)
    keep = vals > rcond * vals.abs().max().clamp_min(torch.finfo(a.dtype).tiny)
    inv = torch.where(
        keep, 1.0 / torch.where(keep, vals, torch.ones_like(vals)), torch.zeros_like(vals)
    )
    return (vecs * inv) @ vecs.T


def _normalized(a: Tensor) -> Tensor:
    return a / a.norm(dim=1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)


def pairwise_cosines(a: Tensor) -> Tensor:
    """Cosine matrix of the rows of a (K, d) -> (K, K)."""
    u = _normalized(a.to(torch.float64))
    return u @ u.T


def _off_diagonal(c: Tensor) -> Tensor:
    k = c.shape[0]
    return c[~torch.eye(k, dtype=torch.bool, device=c.device)]


def equinorm(a: Tensor) -> float:
    """std/mean of the row norms of a (K, d) (NC2, equal norms)."""
    norms = a.to(torch.float64).norm(dim=1)
    return float(norms.std(unbiased=False) / norms.mean())


def equiangularity(a: Tensor) -> float:
    """Standard deviation of the pairwise cosines of the rows of a (NC2, equal angles)."""
    return float(_off_diagonal(pairwise_cosines(a)).std(unbiased=False))


def max_angle(a: Tensor) -> float:
    """Mean |cos(a_k, a_j) + 1/(K-1)| over pairs (NC2, maximal angles)."""
    k = a.shape[0]
    return float((_off_diagonal(pairwise_cosines(a)) + 1.0 / (k - 1)).abs().mean())


def etf_distance(a: Tensor) -> float:
    """|| A A^T/||A A^T||_F - (I - 1 1^T/K)/sqrt(K-1) ||_F for a (K, d)."""
    a = a.to(torch.float64)
    k = a.shape[0]
    gram = a @ a.T
    target = (torch.eye(k, dtype=a.dtype, device=a.device) - 1.0 / k) / math.sqrt(k - 1)
    return float(torch.linalg.norm(gram / torch.linalg.norm(gram) - target))


def self_duality(w: Tensor, centred_means: Tensor) -> float:
    """NC3: || W^T/||W||_F - Mbar^T/||Mbar||_F ||_F; w and centred_means (K, d)."""
    w = w.to(torch.float64)
    m = centred_means.to(torch.float64)
    return float(torch.linalg.norm(w / torch.linalg.norm(w) - m / torch.linalg.norm(m)))


def ncc_mismatch(h: Tensor, y: Tensor, w: Tensor, b: Tensor | None, means: Tensor) -> float:
    """NC4: fraction of samples with argmax_k (W h + b)_k != argmin_k ||h - mu_k||."""
    h = h.to(torch.float64)
    logits = h @ w.to(torch.float64).T  # (N, K)
    if b is not None:
        logits = logits + b.to(torch.float64)
    dist = torch.cdist(h, means.to(torch.float64))  # (N, K)
    return float((logits.argmax(1) != dist.argmin(1)).to(torch.float64).mean())


def _group_index(group: Sequence[int] | Tensor, device: torch.device) -> Tensor:
    idx = torch.as_tensor(group, dtype=torch.long, device=device)
    if idx.ndim != 1 or idx.numel() < 2:
        raise ValueError(f"a group needs at least 2 classes, got {idx.tolist()}")
    return idx


def group_cosines(a: Tensor, group: Sequence[int] | Tensor) -> tuple[float, float]:
    """Mean and max pairwise cosine of the rows a[group] (minority collapse: both -> 1)."""
    off = _off_diagonal(pairwise_cosines(a[_group_index(group, a.device)]))
    return float(off.mean()), float(off.max())


def centred_gram(gram: GramT) -> GramT:
    """C G C, C = I - 1 1^T / K: the Gram of the rows centred at their mean (the mean of class
    means) from the Gram G (K, K) of the rows, numpy or torch alike:
    (C G C)_ij = G_ij - mean_l G_il - mean_l G_lj + mean_lm G_lm."""
    return gram - gram.mean(1)[:, None] - gram.mean(0)[None, :] + gram.mean()


def gram_cosines(gram: np.ndarray) -> np.ndarray:
    """The cosine matrix G_ij / sqrt(G_ii G_jj) of a Gram matrix G (K, K), float64, clipped
    to [-1, 1] (a zero row gives zeros, not NaN)."""
    gram = np.asarray(gram, dtype=np.float64)
    d = np.sqrt(np.clip(np.diag(gram), np.finfo(np.float64).tiny, None))
    return np.clip(gram / np.outer(d, d), -1.0, 1.0)


def gram_group_cosines(
    gram: Tensor | np.ndarray, group: Sequence[int] | Tensor
) -> tuple[float, float]:
    """Mean and max of G_ij / sqrt(G_ii G_jj), i != j in `group`, from a Gram matrix G (K, K).

    `group_cosines` of any A with A A^T = G (W W^T, Hbar Hbar^T of a convex optimum), without
    the factor; a cosine matrix is its own Gram. Computed in float64.
    """
    g = torch.as_tensor(gram).to(torch.float64)
    idx = _group_index(group, g.device)
    sub = g[idx][:, idx]  # (|G|, |G|)
    d = sub.diagonal().clamp_min(torch.finfo(g.dtype).tiny).sqrt()
    off = _off_diagonal(sub / (d[:, None] * d[None, :]))
    return float(off.mean()), float(off.max())


def group_spread(a: Tensor, group: Sequence[int] | Tensor, *, rms: bool = False) -> float:
    """How far the rows a[group] are from being equal: ||a_G - abar_G||_F / ||a||_F, a (K, m).

    0 exactly when the group's rows coincide (minority collapse). a: classifier vectors w_k, or
    rows of the logits Z = W Hbar^T (equal rows of Z are equal classifiers when Hbar has full
    rank). With `rms`, sqrt(mean_{k in G} ||a_k - abar_G||^2) / sqrt(mean_k ||a_k||^2), which is
    the same times sqrt(K / |G|) (Hong & Ling 2023's figure). NaN when a = 0. float64.
    """
    a = a.to(torch.float64)
    sub = a[_group_index(group, a.device)]
    total = torch.linalg.matrix_norm(a)
    if float(total) == 0.0:
        return math.nan
    spread = float(torch.linalg.matrix_norm(sub - sub.mean(0)) / total)
    return spread * math.sqrt(a.shape[0] / sub.shape[0]) if rms else spread


def nc_metrics(
    h: Tensor,
    y: Tensor,
    w: Tensor | None = None,
    b: Tensor | None = None,
    *,
    num_classes: int | None = None,
    minority: Sequence[int] | Tensor | None = None,
    global_mean: str = "classes",
    between_cov: str = "classes",
    within_cov: str = "samples",
) -> dict[str, float]:
    """Every NC metric of features h (N, d), labels y (N,), classifier w (K, d), bias b (K,).

    Keys: nc1, equinorm_h, equiangular_h, max_angle_h, etf_distance_h, and, with w:
    equinorm_w, equiangular_w, max_angle_w, etf_distance (of W), self_duality, ncc_mismatch;
    with `minority` (>= 2 class indices): minority_cosine_h / _max_h, and with w
    minority_cosine_w / _max_w. `global_mean`, `between_cov`, `within_cov`: see `nc1`.
    """
    k = (
        num_classes
        if num_classes is not None
        else (w.shape[0] if w is not None else int(y.max()) + 1)
    )
    h64 = h.detach().to(torch.float64)
    y = y.detach().to(device=h.device, dtype=torch.long)
    mu, mu_g, _ = class_means(h64, y, k, global_mean=global_mean)
    centred = mu - mu_g  # (K, d)
    out = {
        "nc1": nc1(
            h64, y, k, global_mean=global_mean, between_cov=between_cov, within_cov=within_cov
        ),
        "equinorm_h": equinorm(centred),
        "equiangular_h": equiangularity(centred),
        "max_angle_h": max_angle(centred),
        "etf_distance_h": etf_distance(centred),
    }
    if w is not None:
        w = w.detach().to(h.device)  # the features' device, like y
        bias = None if b is None else b.detach().to(h.device)
        if w.shape != (k, h.shape[1]):
            raise ValueError(
                f"classifier must have shape ({k}, {h.shape[1]}), got {tuple(w.shape)}"
            )
        out |= {
            "equinorm_w": equinorm(w),
            "equiangular_w": equiangularity(w),
            "max_angle_w": max_angle(w),
            "etf_distance": etf_distance(w),
            "self_duality": self_duality(w, centred),
            "ncc_mismatch": ncc_mismatch(h64, y, w, bias, mu),
        }
    if minority is not None:
        out["minority_cosine_h"], out["minority_cosine_max_h"] = group_cosines(centred, minority)
        if w is not None:
            out["minority_cosine_w"], out["minority_cosine_max_w"] = group_cosines(w, minority)
    return out


def last_layer_geometry(
    h: Tensor, y: Tensor, w: Tensor, b: Tensor | None = None, *, num_classes: int | None = None
) -> dict[str, Tensor]:
    """What a layer-peeled prediction is compared with, from features h (N, d), labels y (N,),
    classifier w (K, d) and bias b (K,); float64, on the inputs' device.

    - cosine_w, norm_w: pairwise cosines (K, K) and norms (K,) of the classifier rows;
    - cosine_h, norm_h: of the class means centred at the mean of class means, mu_k - mu_G;
    - cosine_h_uncentred, norm_h_uncentred: of the class means mu_k as they are (post-ReLU
      features share a large mean, so the two differ a lot);
    - means (K, d), w (K, d), b (K,) (zeros without bias), counts n_k (K,);
    - e_w = (1/K) sum_k ||w_k||^2; e_h = (1/K) sum_k (1/n_k) sum_i ||h_ki||^2, the LPM's
      class-averaged feature energy (Fang et al. 2021); e_h_samples = (1/N) sum_i ||h_i||^2;
      e_h_means = (1/K) sum_k ||mu_k||^2; features_sq_norm = sum_i ||h_i||^2 (the UFM penalty's).
    """
    k = num_classes if num_classes is not None else w.shape[0]
    h64 = h.detach().to(torch.float64)
    y = y.detach().to(device=h.device, dtype=torch.long)
    w64 = w.detach().to(device=h.device, dtype=torch.float64)
    if w64.shape != (k, h.shape[1]):
        raise ValueError(f"classifier must have shape ({k}, {h.shape[1]}), got {tuple(w.shape)}")
    mu, mu_g, counts = class_means(h64, y, k)
    centred = mu - mu_g  # (K, d)
    sq = (h64 * h64).sum(1)  # (N,)
    per_class = torch.zeros(k, dtype=torch.float64, device=h.device).index_add_(0, y, sq)
    bias = torch.zeros(k, dtype=torch.float64, device=h.device) if b is None else b.detach()
    return {
        "cosine_w": pairwise_cosines(w64),
        "norm_w": w64.norm(dim=1),
        "cosine_h": pairwise_cosines(centred),
        "norm_h": centred.norm(dim=1),
        "cosine_h_uncentred": pairwise_cosines(mu),
        "norm_h_uncentred": mu.norm(dim=1),
        "means": mu,
        "w": w64,
        "b": bias.to(device=h.device, dtype=torch.float64),
        "counts": counts,
        "e_w": (w64 * w64).sum(1).mean(),
        "e_h": (per_class / counts).mean(),
        "e_h_samples": sq.mean(),
        "e_h_means": (mu * mu).sum(1).mean(),
        "features_sq_norm": sq.sum(),
    }
