"""Losses of long-tailed learning: re-balanced losses, deferred re-weighting, NC regularizers.

Pure functions of a batch; `deep.rebalancing` and `deep.nc_regularizers` wire them into
training. Class counts n (K,) are those of the training set, never typed in.

- Logit adjustment (Menon et al., ICLR 2021) and balanced softmax (Ren et al., NeurIPS 2020).
- LDAM margins and loss, and the class weights of deferred re-weighting (Cao et al., NeurIPS
  2019), with the class-weighted mean that reduces a weighted loss.
- The NC1 and NC2 regularizers of Liu et al. (AISTATS 2023).
- HyCon and P2P, the two losses of AllNC (Zhang et al. 2024).
- The cumulative-learning weight of a bilateral-branch network (Zhou et al., CVPR 2020).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ufm.losses import _check_logits, cross_entropy

__all__ = [
    "balanced_softmax_cross_entropy",
    "batch_class_means",
    "bilateral_branch_weight",
    "class_weighted_mean",
    "drw_class_weights",
    "hybrid_contrastive_loss",
    "ldam_loss",
    "ldam_margins",
    "logit_adjusted_cross_entropy",
    "nc1_regularizer",
    "nc2_regularizer",
    "peer_to_peer_loss",
]


def _counts(class_counts: Tensor, like: Tensor) -> Tensor:
    counts = torch.as_tensor(class_counts, device=like.device).to(like.dtype)
    if counts.ndim != 1 or not bool((counts > 0).all()):
        raise ValueError(f"class counts must be a (K,) vector of positive numbers, got {counts}")
    return counts


def logit_adjusted_cross_entropy(
    z: Tensor, y: Tensor, class_counts: Tensor, tau: float = 1.0
) -> Tensor:
    """Logit-adjusted CE (Menon et al., ICLR 2021, eq. 10): CE(z_i + tau log pi, y_i).

    L(z, y) = -log( exp(z_y + tau log pi_y) / sum_j exp(z_j + tau log pi_j) ), pi = n / N the
    training class priors. The adjustment acts in the loss only; predictions use z itself,
    which then estimates the balanced (uniform-prior) posterior for tau = 1.
    z (B, K), y (B,), class_counts (K,) -> (B,).
    """
    _check_logits(z, y)
    counts = _counts(class_counts, z)
    if counts.shape != (z.shape[1],):
        raise ValueError(f"class counts must have shape ({z.shape[1]},), got {tuple(counts.shape)}")
    return cross_entropy(z + tau * torch.log(counts / counts.sum()), y)


def balanced_softmax_cross_entropy(z: Tensor, y: Tensor, class_counts: Tensor) -> Tensor:
    """Balanced softmax (Ren et al., NeurIPS 2020, eq. 4): -log( n_y e^{z_y} / sum_j n_j e^{z_j} ).

    Equal to `logit_adjusted_cross_entropy` with tau = 1, since log n_j and log pi_j differ by a
    constant that softmax ignores. z (B, K), y (B,), class_counts (K,) -> (B,).
    """
    return logit_adjusted_cross_entropy(z, y, class_counts, tau=1.0)


def ldam_margins(class_counts: Tensor, max_margin: float = 0.5) -> Tensor:
    """LDAM margins (Cao et al., NeurIPS 2019, eq. 13): Delta_k = C / n_k^(1/4).

    C is chosen so that the largest margin (the smallest class's) is `max_margin`:
    Delta_k = max_margin (n_min / n_k)^(1/4), as in the authors' code. (K,) -> (K,) float64.
    """
    if not max_margin > 0:
        raise ValueError(f"max_margin must be > 0, got {max_margin!r}")
    counts = _counts(class_counts, torch.empty((), dtype=torch.float64))
    return max_margin * (counts.min() / counts) ** 0.25


def ldam_loss(z: Tensor, y: Tensor, margins: Tensor, scale: float = 30.0) -> Tensor:
    """LDAM loss (Cao et al. 2019, eq. 10): CE(s (z - Delta_y e_y), y) per sample.

    The target logit is lowered by its class margin before the scaled softmax; with the
    normalised (cosine) classifier of the paper's CIFAR models, z_k in [-1, 1] and s = 30.
    z (B, K), y (B,), margins (K,) -> (B,).
    """
    _check_logits(z, y)
    if margins.shape != (z.shape[1],):
        raise ValueError(f"margins must have shape ({z.shape[1]},), got {tuple(margins.shape)}")
    shift = torch.zeros_like(z).scatter_(1, y[:, None], margins.to(z)[y][:, None])  # (B, K)
    return cross_entropy(scale * (z - shift), y)


def drw_class_weights(class_counts: Tensor, beta: float = 0.9999) -> Tensor:
    """Class-balanced weights of deferred re-weighting (Cao et al. 2019, after Cui et al. 2019).

    w_k = (1 - beta) / (1 - beta^n_k), the inverse effective number of samples, scaled so that
    sum_k w_k = K. (K,) -> (K,) float64.
    """
    if not 0 <= beta < 1:
        raise ValueError(f"beta must lie in [0, 1), got {beta!r}")
    counts = _counts(class_counts, torch.empty((), dtype=torch.float64))
    weights = (1.0 - beta) / (1.0 - beta**counts)
    return weights * (len(counts) / weights.sum())


def class_weighted_mean(values: Tensor, y: Tensor, class_weights: Tensor) -> Tensor:
    """sum_i w_{y_i} L_i / sum_i w_{y_i}: the mean of per-sample losses under class weights.

    The reduction of a class-weighted cross-entropy in the reference implementations
    (torch's `cross_entropy(weight=w)`); uniform weights give the plain mean.
    values (B,), y (B,), class_weights (K,) -> scalar.
    """
    w = class_weights.to(values)[y]  # (B,)
    return (w * values).sum() / w.sum()


def batch_class_means(h: Tensor, y: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Class means of a batch and the batch's class counts m_k.

    A class absent from the batch has m_k = 0 and a zero row. h (B, d), y (B,) -> (K, d), (K,).
    """
    counts = torch.bincount(y, minlength=num_classes).to(h.dtype)  # (K,)
    sums = torch.zeros(num_classes, h.shape[1], dtype=h.dtype, device=h.device)
    sums = sums.index_add(0, y, h)
    return sums / counts.clamp_min(1.0)[:, None], counts


def nc1_regularizer(h: Tensor, y: Tensor, centres: Tensor) -> Tensor:
    """L_NC1 of Liu et al. (AISTATS 2023): (1/K) sum_k (1/m_k) sum_{i: y_i = k} ||h_i - mu_k||^2.

    mu (K, d) are learnable class centres, m_k the number of samples of class k in the batch; a
    class absent from the batch contributes 0. h (B, d), y (B,), centres (K, d) -> scalar.
    """
    num_classes = centres.shape[0]
    dist = ((h - centres[y]) ** 2).sum(dim=1)  # (B,)
    per_class = torch.zeros(num_classes, dtype=h.dtype, device=h.device).index_add(0, y, dist)
    counts = torch.bincount(y, minlength=num_classes).to(h.dtype)  # (K,)
    return (per_class / counts.clamp_min(1.0)).sum() / num_classes


def nc2_regularizer(centres: Tensor, clip: float = 0.99999) -> Tensor:
    """L_NC2 of Liu et al. (AISTATS 2023): -(1/K) sum_k arccos( max_{j != k} cos(mu~_k, mu~_j) ).

    mu~_k = (mu_k - mean_j mu_j) / ||...||, the normalised centred centres. Minimising it
    maximises, for every class, the angle to its nearest neighbour (the simplex ETF is the
    optimum). The cosine is clipped to +-`clip`, where arccos' slope is finite.
    centres (K, d) -> scalar.
    """
    centred = centres - centres.mean(dim=0)  # (K, d)
    u = centred / centred.norm(dim=1, keepdim=True).clamp_min(torch.finfo(centres.dtype).tiny)
    cos = u @ u.T  # (K, K)
    eye = torch.eye(len(cos), dtype=torch.bool, device=cos.device)
    nearest = cos.masked_fill(eye, -2.0).amax(dim=1).clamp(-clip, clip)  # (K,)
    return -torch.arccos(nearest).mean()


def hybrid_contrastive_loss(
    h: Tensor, y: Tensor, num_classes: int, tau: float = 0.1, balanced: bool = True
) -> Tensor:
    """HyCon, the hybrid contrastive loss of AllNC (Zhang et al. 2024) for NC1, as built here.

    Two views only: the samples of the batch and the batch's class means. Features are centred
    at c, the mean of the batch's class means (held fixed), and normalised:
    u_i = (h_i - c)/||.||, v_k = (mu_k - c)/||.|| for the classes k present. Anchor i has the
    candidates A_i = {u_j, j != i} and {v_k}; its positives P_i are the same-class samples and
    its class mean v_{y_i} (never empty). With s(a) = u_i^T a / tau,

        L_i = -(1/|P_i|) sum_{p in P_i} ( s(p) - log D_i ),   L = mean_i L_i,

    D_i = sum_{a in A_i} exp s(a) or, `balanced`, sum_k (1/c_ik) sum_{a in A_i of class k} exp s(a)
    with c_ik the number of class-k candidates (the class-averaged denominator of balanced
    contrastive learning, Zhu et al. CVPR 2022), so head classes do not dominate the negatives.
    h (B, d), y (B,) -> scalar.
    """
    means, counts = batch_class_means(h, y, num_classes)
    present = torch.nonzero(counts > 0).flatten()  # (P,)
    centre = means[present].mean(dim=0).detach()  # (d,)
    u = _unit(h - centre)  # (B, d)
    views = torch.cat([u, _unit(means[present] - centre)])  # (B + P, d)
    labels = torch.cat([y, present])  # (B + P,)
    s = u @ views.T / tau  # (B, B + P)
    rows = torch.arange(len(y), device=h.device)
    is_self = torch.zeros_like(s, dtype=torch.bool)
    is_self[rows, rows] = True
    same = labels[None, :] == y[:, None]  # (B, B + P)
    if balanced:
        per_class = torch.bincount(labels, minlength=num_classes).to(s.dtype)  # (K,)
        c = per_class[labels][None, :] - same.to(s.dtype)  # (B, B + P): self excluded
        s_den = s - torch.log(c.clamp_min(1.0))
    else:
        s_den = s
    log_den = torch.logsumexp(s_den.masked_fill(is_self, -math.inf), dim=1)  # (B,)
    positive = same & ~is_self
    mean_pos = (s * positive).sum(dim=1) / positive.sum(dim=1)  # (B,)
    return (log_den - mean_pos).mean()


def peer_to_peer_loss(means: Tensor, present: Tensor, w: Tensor, tau: float = 0.1) -> Tensor:
    """P2P, the peer-to-peer loss of AllNC (Zhang et al. 2024) for NC2 and NC3, as built here.

    Each class mean and its classifier vector are peers. With cosines C_kj = cos(m_k, w_j) over
    the classes k in the batch (P of them; m the centred class means), a softmax over peers in
    both directions:

        L = (1/2P) sum_k [ CE(C_k. / tau, k) + CE(C_.k restricted to the batch's classes / tau, k) ]

    The first term pulls m_k to w_k and away from every other classifier vector; the second
    pulls w_k to m_k and away from the other classes' means. Its optimum has m_k parallel to w_k
    (self-duality) and the pairs spread as far apart as the softmax can tell (equiangularity).
    means (K, d), present (K,) bool, w (K, d) -> scalar.
    """
    idx = torch.nonzero(present).flatten()  # (P,)
    cos = _unit(means[idx]) @ _unit(w).T / tau  # (P, K)
    to_classifiers = cross_entropy(cos, idx).mean()
    to_means = cross_entropy(cos[:, idx].T, torch.arange(len(idx), device=w.device)).mean()
    return 0.5 * (to_classifiers + to_means)


def bilateral_branch_weight(epoch: int, epochs: int, power: float = 2.0) -> float:
    """Cumulative-learning weight alpha = 1 - (epoch / epochs)^power of a bilateral-branch
    network (Zhou et al., CVPR 2020: power 2), for 0-based `epoch` of `epochs`.

    alpha weighs the conventional (instance-balanced) branch and 1 - alpha the re-balancing
    branch: learning moves from the first to the second as training runs.
    """
    if epochs < 1 or not 0 <= epoch < epochs:
        raise ValueError(f"need 0 <= epoch < epochs, got epoch={epoch!r}, epochs={epochs!r}")
    return 1.0 - (epoch / epochs) ** power


def _unit(a: Tensor) -> Tensor:
    return a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12)
