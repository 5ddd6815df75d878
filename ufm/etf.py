"""The simplex equiangular tight frame (ETF).

    M = sqrt(K/(K-1)) U (I_K - 1 1^T / K),   U in R^{d x K}, U^T U = I_K

(Papyan, Han & Donoho, PNAS 2020; Yang et al., NeurIPS 2022, eq. 1). Its columns m_k satisfy
m_k^T m_j = K/(K-1) delta_kj - 1/(K-1): unit norms, equal pairwise angles arccos(-1/(K-1)),
sum_k m_k = 0 and rank K-1. Since I - 1 1^T/K = V V^T for any orthonormal basis V (K x (K-1))
of the complement of the all-ones vector, M = sqrt(K/(K-1)) (U V) V^T, and U V is a Haar-random
d x (K-1) frame. This form needs only d >= K-1 and is the one built here, for every d.
"""

from __future__ import annotations

import math

import torch

__all__ = ["centering_basis", "etf_gram", "haar_frame", "simplex_etf"]


def _check_sizes(num_classes: int, dim: int) -> None:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"a simplex ETF needs num_classes >= 2 (an integer), got {num_classes!r}")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < num_classes - 1:
        raise ValueError(
            f"a simplex ETF of K={num_classes} classes spans K-1={num_classes - 1} dimensions, "
            f"so it needs dim >= {num_classes - 1}; got dim={dim!r}. Raise the feature "
            f"dimension or use fewer classes."
        )


def centering_basis(num_classes: int, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Orthonormal basis V of {x in R^K : 1^T x = 0}, shape (K, K-1), with V V^T = I - 1 1^T/K.

    Deterministic (Helmert basis): column j is (1, ..., 1, -j, 0, ..., 0)/sqrt(j (j+1)).
    """
    k = num_classes
    basis = torch.zeros(k, k - 1, dtype=torch.float64)
    for j in range(1, k):
        basis[:j, j - 1] = 1.0
        basis[j, j - 1] = -float(j)
        basis[:, j - 1] /= math.sqrt(j * (j + 1))
    return basis.to(dtype)


def haar_frame(
    dim: int, cols: int, *, seed: int, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """A Haar-distributed orthonormal frame U in R^{dim x cols} (U^T U = I), from `seed` only.

    QR of a Gaussian matrix with the signs of diag(R) moved into Q (Mezzadri 2007), drawn from
    a private generator so that global random state is neither used nor changed.
    """
    if cols > dim:
        raise ValueError(f"an orthonormal frame of {cols} columns needs dim >= {cols}, got {dim}")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    gauss = torch.randn(dim, cols, generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return (q * signs).to(dtype)


def simplex_etf(
    num_classes: int,
    dim: int,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A seeded simplex ETF M of shape (dim, K): column k is the unit vector m_k.

    M = sqrt(K/(K-1)) U V^T with U (dim x (K-1)) Haar from `seed` and V the centering basis
    (module docstring). Needs dim >= K-1; the same seed gives the same ETF, on any device.
    """
    _check_sizes(num_classes, dim)
    u = haar_frame(dim, num_classes - 1, seed=seed)
    v = centering_basis(num_classes)
    m = math.sqrt(num_classes / (num_classes - 1)) * (u @ v.T)  # (d, K)
    return m.to(dtype=dtype, device=device)


def etf_gram(num_classes: int, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The Gram matrix every simplex ETF has: K/(K-1) I - 1 1^T/(K-1), shape (K, K)."""
    k = num_classes
    eye = torch.eye(k, dtype=dtype)
    return (k * eye - torch.ones(k, k, dtype=dtype)) / (k - 1)
