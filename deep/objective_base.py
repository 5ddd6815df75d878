"""What every training objective builds on, and the registry the objectives are filled into.

The base classes (`Objective`, `BatchObjective`, `LossObjective`), the run description they are
built from (`ObjectiveContext`), option handling, the registry `OBJECTIVES` and its first
entries, the per-sample losses of `ufm.losses` (`ce`, `dr`, `dr-balanced`). This module imports
none of the method modules; they import it and register themselves (timm's pattern), and
`deep.objectives` imports them all, so that the registry is complete wherever it is read
through `deep.objectives`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from deep.heads import Head
from ufm.losses import Loss, get_loss
from ufm.registry import Registry

__all__ = [
    "OBJECTIVES",
    "BatchObjective",
    "LossObjective",
    "Objective",
    "ObjectiveContext",
    "ObjectiveFactory",
    "resolve_options",
]


@dataclass(frozen=True)
class ObjectiveContext:
    """What an objective may need to know about the run it trains."""

    num_classes: int
    feature_dim: int
    class_counts: tuple[int, ...]  # training images per class, from the data
    epochs: int  # length of the run [epochs]
    e_w: float = 1.0  # E_W of the head: squared norm of the classifier vectors
    e_h: float = 1.0  # E_H of the head: squared norm of the features
    options: Mapping[str, float] = field(default_factory=dict)  # method hyper-parameters
    milestones: tuple[int, ...] = ()  # learning-rate decay epochs of the schedule [epochs]
    seed: int = 0  # seed of the objective's own random draws (initial class centres)
    head: Head | None = None  # the network's head, for methods that read or train through its
    #                           classifier; held by reference, never as a submodule


class Objective(nn.Module):
    """Batch loss lam mean_i L(h_i, z_i, y_a,i) + (1 - lam) mean_i L(h_i, z_i, y_b,i)."""

    def per_sample(self, h: Tensor, z: Tensor, y: Tensor) -> Tensor:
        """h (B, d), z (B, K), y (B,) -> (B,)."""
        raise NotImplementedError

    def forward(self, h: Tensor, z: Tensor, y_a: Tensor, y_b: Tensor, lam: float) -> Tensor:
        loss = self.per_sample(h, z, y_a).mean()
        if lam == 1.0:
            return loss
        return lam * loss + (1.0 - lam) * self.per_sample(h, z, y_b).mean()

    def param_groups(self) -> list[dict]:
        """Optimizer groups for parameters of the objective itself (none by default)."""
        return []

    def start_epoch(self, epoch: int) -> None:
        """Called before each training epoch (0-based), also after a resume."""


class BatchObjective(Objective):
    """An objective defined on the whole batch: lam L(h, z, y_a) + (1 - lam) L(h, z, y_b).

    For losses that couple samples (class means, contrastive terms, weighted means). They are
    computed in float32 or wider even under autocast.
    """

    def batch_loss(self, h: Tensor, z: Tensor, y: Tensor) -> Tensor:
        """h (B, d), z (B, K), y (B,) -> scalar."""
        raise NotImplementedError

    def forward(self, h: Tensor, z: Tensor, y_a: Tensor, y_b: Tensor, lam: float) -> Tensor:
        with torch.autocast(h.device.type, enabled=False):
            loss = self.batch_loss(h, z, y_a)
            if lam == 1.0:
                return loss
            return lam * loss + (1.0 - lam) * self.batch_loss(h, z, y_b)


class LossObjective(Objective):
    """A per-sample loss of the logits from `ufm.losses`, averaged over the batch."""

    def __init__(self, loss: Loss) -> None:
        super().__init__()
        self.loss = loss

    def per_sample(self, h: Tensor, z: Tensor, y: Tensor) -> Tensor:
        return self.loss.value(z, y)

    def extra_repr(self) -> str:
        return repr(self.loss)


def resolve_options(
    name: str, options: Mapping[str, float], defaults: Mapping[str, float]
) -> dict[str, float]:
    """`defaults` overridden by `options`; an option the method does not take is an error."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        takes = ", ".join(f"{k} (default {v:g})" for k, v in defaults.items()) or "none"
        raise ValueError(f"loss {name!r} has no option {unknown[0]!r}; its options: {takes}")
    return {**defaults, **{k: float(v) for k, v in options.items()}}


ObjectiveFactory = Callable[[ObjectiveContext], Objective]
OBJECTIVES: Registry[ObjectiveFactory] = Registry("loss")


def _ufm_loss(name: str) -> ObjectiveFactory:
    def factory(ctx: ObjectiveContext) -> Objective:
        if ctx.options:
            raise ValueError(f"loss {name!r} takes no options, got {dict(ctx.options)}")
        return LossObjective(get_loss(name, e_w=ctx.e_w, e_h=ctx.e_h))

    return factory


for _name in ("ce", "dr", "dr-balanced"):
    OBJECTIVES.add(_name, _ufm_loss(_name))
