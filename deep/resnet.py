"""CIFAR ResNets (He et al., CVPR 2016, section 4.2), written out here, registered by depth.

ResNet-(6n+2): a 3x3 stem, then three stages of n basic blocks with 16w, 32w and 64w channels
(w = width multiplier) at full, half and quarter resolution, then global average pooling. The
output is the feature vector h of dimension 64w that a classifier head reads. Shortcuts that
change shape are option A of the paper, parameter-free: subsample by 2 and pad channels with
zeros. ResNet-32 (n = 5) has 0.46M parameters, as in the paper's table 6.

    x (B, C, H, W) -> h (B, 64 w)

Every convolution is followed by BatchNorm; both live in one `ConvBN` unit so that evaluation
can fold the normalisation into the convolution (`fold_batchnorm`), which is exact in eval mode
and saves a memory pass per layer.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ufm.registry import Registry

__all__ = [
    "BACKBONES",
    "BasicBlock",
    "CifarResNet",
    "ConvBN",
    "fold_batchnorm",
    "init_weights",
]

BACKBONES: Registry = Registry("backbone")


class ConvBN(nn.Module):
    """k x k convolution (no bias), then BatchNorm2d: (B, Cin, H, W) -> (B, Cout, H/s, W/s)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))

    def folded(self) -> nn.Conv2d:
        """One convolution equal to this unit in eval mode: W' = W g/s, b' = beta - g mu/s."""
        return fuse_conv_bn_eval(self.conv.eval(), self.bn.eval())


class PadShortcut(nn.Module):
    """Option-A shortcut: x[:, :, ::s, ::s] with zero channels appended, no parameters."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = extra_channels

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))


class BasicBlock(nn.Module):
    """relu(BN(conv(relu(BN(conv(x))))) + shortcut(x)), two 3x3 convolutions."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(cin, cout, stride)
        self.conv2 = ConvBN(cout, cout)
        reshapes = stride != 1 or cin != cout
        self.shortcut = PadShortcut(stride, cout - cin) if reshapes else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        # In place where autograd allows (BatchNorm's and a convolution's backward need their
        # inputs, not their outputs): on a CPU each fresh activation costs page faults.
        out = F.relu(self.conv1(x), inplace=True)
        out = self.conv2(out)
        out += self.shortcut(x)
        return F.relu(out, inplace=True)


class CifarResNet(nn.Module):
    """ResNet-`depth` for small images; `feature_dim` = 64 * width. x (B, C, H, W) -> (B, 64w)."""

    def __init__(self, depth: int = 32, in_channels: int = 3, width: int = 1) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"a CIFAR ResNet has depth 6n+2 with n >= 1 (8, 14, 20, 32, ...), got {depth}"
            )
        if width < 1:
            raise ValueError(f"width multiplier must be an integer >= 1, got {width!r}")
        blocks = (depth - 2) // 6
        channels = (16 * width, 32 * width, 64 * width)
        self.stem = ConvBN(in_channels, channels[0])
        layers: list[nn.Module] = []
        cin = channels[0]
        for stage, cout in enumerate(channels):
            for i in range(blocks):
                layers.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.stages = nn.Sequential(*layers)
        self.feature_dim = channels[-1]

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x), inplace=True)
        return self.stages(x).mean(dim=(2, 3))  # (B, 64w) global average pooling


for _depth in (8, 14, 20, 32, 44, 56, 110):
    BACKBONES.add(
        f"resnet{_depth}",
        lambda in_channels, width, _d=_depth: CifarResNet(_d, in_channels, width),
    )


@torch.no_grad()
def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """Kaiming-normal convolutions and linear maps (He et al. 2015), zero biases, BN at (1, 0).

    Drawn from `generator` (a CPU generator) so that a seed fixes the initial network without
    touching global random state; the network must still be on the CPU.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=generator)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            m.reset_parameters()


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """An eval-mode copy of `module` in which every ConvBN unit is one convolution.

    Equal to `module.eval()` up to float rounding; the original is left untouched.
    """
    folded = copy.deepcopy(module).eval()
    _fold_children(folded)
    return folded


def _fold_children(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, ConvBN):
            setattr(module, name, child.folded())
        else:
            _fold_children(child)
