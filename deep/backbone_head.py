"""A backbone and a head in one module: images (B, C, H, W) -> (h (B, d), z (B, K))."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from deep.heads import HEADS, Head
from deep.resnet import BACKBONES, init_weights

if TYPE_CHECKING:
    from deep.config import HeadConfig

__all__ = ["Network", "build_network"]


class Network(nn.Module):
    """backbone -> head; `head.classifier()` gives the W (and b) that the NC metrics read."""

    def __init__(self, backbone: nn.Module, head: Head) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.backbone(x))


def build_network(
    arch: str,
    head: str,
    *,
    in_channels: int,
    num_classes: int,
    width: int,
    head_cfg: HeadConfig,
    seed: int,
) -> Network:
    """Build the registered backbone `arch` and head `head`, initialised from `seed` on the CPU.

    Module constructors draw default weights from torch's global generator; `fork_rng` puts its
    state back afterwards, and `init_weights` redraws every weight from the run's own seed.
    """
    with torch.random.fork_rng(devices=[]):
        net = _construct(arch, head, in_channels, num_classes, width, head_cfg)
    init_weights(net, torch.Generator().manual_seed(seed))
    return net


def _construct(
    arch: str, head: str, in_channels: int, num_classes: int, width: int, head_cfg: HeadConfig
) -> Network:
    backbone = BACKBONES.get(arch)(in_channels=in_channels, width=width)
    dim = backbone.feature_dim
    try:
        classifier = HEADS.get(head)(dim, num_classes, head_cfg)
    except ValueError as exc:
        if head in HEADS and dim < num_classes - 1:
            needed = -(-(num_classes - 1) // (dim // width))  # ceil((K - 1) / 64)
            raise ValueError(
                f"{exc} (head {head!r} on {arch} of width {width} has feature dimension {dim}; "
                f"raise the width, e.g. --set model.width={needed})"
            ) from None
        raise
    return Network(backbone, classifier)
