"""Classifier heads: what turns backbone features into the features h and logits z = W h (+ b).

- `linear`: a learnable linear classifier with bias, z = W h + b (W (K, d), b (K,) trained).
- `etf`: the fixed simplex ETF of Yang et al. (NeurIPS 2022): h = sqrt(E_H) x'/||x'|| with
  x' = BatchNorm1d(x), and z = W* h with rows w*_k = sqrt(E_W) m_k of `ufm.etf.simplex_etf`.
  W* is a registered buffer drawn from a seed: it is saved in every checkpoint and is never
  seen by the optimizer.
- `cosine`: the normalised linear classifier of LDAM's CIFAR models (Cao et al., NeurIPS
  2019): h = x/||x||, z_k = cos(x, w_k) = h^T w_k/||w_k|| in [-1, 1], W learnable, no bias; a
  loss scales z itself.

`logits(h)` is the map from features to logits alone, for objectives that train the classifier
on features of their own choosing (detached ones, say).

Heads compute in float32 even under autocast: the logits feed the loss directly, and bf16's
relative rounding (2^-8) is as large as the DR gradient (z_k - c)/c near its optimum.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ufm.etf import simplex_etf
from ufm.registry import Registry

if TYPE_CHECKING:
    from deep.config import HeadConfig

__all__ = ["HEADS", "CosineHead", "ETFHead", "Head", "LinearHead"]

HEADS: Registry = Registry("head")


class Head(nn.Module):
    """x (B, d) -> (h (B, d), z (B, K)); `classifier()` gives (W (K, d), b (K,) or None)."""

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.autocast(x.device.type, enabled=False):
            low = x.dtype in (torch.float16, torch.bfloat16)
            return self.features_and_logits(x.float() if low else x)

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def logits(self, h: Tensor) -> Tensor:
        """Logits z (B, K) of features h (B, d), in float32 even under autocast."""
        with torch.autocast(h.device.type, enabled=False):
            return self.logits_of(h.float() if h.dtype in (torch.float16, torch.bfloat16) else h)

    def logits_of(self, h: Tensor) -> Tensor:
        raise NotImplementedError

    def classifier(self) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError


@HEADS.register("linear")
class LinearHead(Head):
    """A learnable classifier with bias: h = x, z = W h + b."""

    def __init__(self, feature_dim: int, num_classes: int, cfg: HeadConfig | None = None) -> None:
        super().__init__(feature_dim, num_classes)
        self.fc = nn.Linear(feature_dim, num_classes, bias=True)

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x, self.logits_of(x)

    def logits_of(self, h: Tensor) -> Tensor:
        return self.fc(h)

    def classifier(self) -> tuple[Tensor, Tensor | None]:
        return self.fc.weight, self.fc.bias


@HEADS.register("etf")
class ETFHead(Head):
    """Fixed simplex ETF: h = sqrt(E_H) BN(x)/||BN(x)||, z = W* h, W* = sqrt(E_W) M^T (K, d)."""

    def __init__(self, feature_dim: int, num_classes: int, cfg: HeadConfig) -> None:
        super().__init__(feature_dim, num_classes)
        if not (cfg.e_w > 0 and cfg.e_h > 0):
            raise ValueError(f"E_W and E_H must be > 0, got e_w={cfg.e_w!r}, e_h={cfg.e_h!r}")
        self.bn = nn.BatchNorm1d(feature_dim)
        self.feature_norm = math.sqrt(cfg.e_h)
        etf = simplex_etf(num_classes, feature_dim, seed=cfg.etf_seed, dtype=torch.float32)
        self.register_buffer("weight", math.sqrt(cfg.e_w) * etf.T.contiguous())  # (K, d)

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.feature_norm * F.normalize(self.bn(x), dim=1, eps=1e-8)  # (B, d)
        return h, self.logits_of(h)

    def logits_of(self, h: Tensor) -> Tensor:
        return h @ self.weight.T  # (B, K)

    def classifier(self) -> tuple[Tensor, Tensor | None]:
        return self.weight, None


@HEADS.register("cosine")
class CosineHead(Head):
    """Normalised linear classifier (Cao et al. 2019): h = x/||x||, z = W~ h, W~ = unit rows of W.

    Features and classifier both live on the unit sphere, so z_k = cos(x, w_k), and
    `classifier()` gives W~, the classifier as it acts (z = W~ h, as for every head).
    """

    def __init__(self, feature_dim: int, num_classes: int, cfg: HeadConfig | None = None) -> None:
        super().__init__(feature_dim, num_classes)
        # A bias-free nn.Linear holds W (K, d), so that init_weights draws it from the run's seed.
        self.fc = nn.Linear(feature_dim, num_classes, bias=False)

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.normalize(x, dim=1, eps=1e-12)  # (B, d)
        return h, self.logits_of(h)

    def logits_of(self, h: Tensor) -> Tensor:
        return F.normalize(h, dim=1, eps=1e-12) @ F.normalize(self.fc.weight, dim=1).T  # (B, K)

    def classifier(self) -> tuple[Tensor, Tensor | None]:
        return F.normalize(self.fc.weight, dim=1), None
