"""Re-balanced losses of the long-tail literature, registered as training objectives.

Each wires a formula of `ufm.longtail_losses` to the training class counts (ObjectiveContext), which
come from the data. Options (loss.options) and their defaults:

- `logit-adjusted`: CE(z + tau log pi, y) (Menon et al., ICLR 2021); tau = 1.
- `balanced-softmax`: -log(n_y e^{z_y} / sum_j n_j e^{z_j}) (Ren et al., NeurIPS 2020).
- `ldam`: CE(s (z - Delta_y e_y), y), Delta_k = max_margin (n_min/n_k)^(1/4) (Cao et al.,
  NeurIPS 2019); max_margin = 0.5, scale s = 30, meant for the `cosine` head.
- `ldam-drw`, `ce-drw`: LDAM or CE with deferred re-weighting (Cao et al. 2019): the batch mean
  is sum_i w_{y_i} L_i / sum_i w_{y_i} with w = 1 before epoch `drw_epoch` (0-based) and
  w_k = (1 - beta)/(1 - beta^n_k), normalised to sum K, from it on; beta = 0.9999, drw_epoch
  = the first learning-rate milestone (epoch 160 of the paper's 200), or 80% of the run when
  the schedule has none. The weights follow from the epoch alone, so a resumed run has them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from deep.objective_base import (
    OBJECTIVES,
    BatchObjective,
    LossObjective,
    Objective,
    ObjectiveContext,
    resolve_options,
)
from ufm.longtail_losses import (
    balanced_softmax_cross_entropy,
    class_weighted_mean,
    drw_class_weights,
    ldam_loss,
    ldam_margins,
    logit_adjusted_cross_entropy,
)
from ufm.losses import CrossEntropy

__all__ = ["LDAM", "CountAdjusted", "DeferredReweighting", "drw_start_epoch"]


class CountAdjusted(Objective):
    """A per-sample loss of logits, labels and the training class counts (B,)."""

    def __init__(self, loss: Callable[[Tensor, Tensor, Tensor], Tensor], counts: Tensor) -> None:
        super().__init__()
        self.loss = loss
        self.register_buffer("counts", counts.to(torch.float64), persistent=False)  # (K,)

    def per_sample(self, h: Tensor, z: Tensor, y: Tensor) -> Tensor:
        return self.loss(z, y, self.counts)


class LDAM(Objective):
    """LDAM, CE(s (z - Delta_y e_y), y), with margins Delta (K,) from the class counts."""

    def __init__(self, counts: Tensor, max_margin: float, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.register_buffer("margins", ldam_margins(counts, max_margin), persistent=False)

    def per_sample(self, h: Tensor, z: Tensor, y: Tensor) -> Tensor:
        return ldam_loss(z, y, self.margins, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}, margins={self.margins.tolist()}"


class DeferredReweighting(BatchObjective):
    """A per-sample objective averaged with class weights that switch on at epoch `start`."""

    def __init__(self, loss: Objective, counts: Tensor, beta: float, start: int) -> None:
        super().__init__()
        self.loss = loss
        self.start = start
        k = len(counts)
        self.register_buffer("drw_weights", drw_class_weights(counts, beta), persistent=False)
        self.register_buffer("class_weights", torch.ones(k, dtype=torch.float64), persistent=False)

    def start_epoch(self, epoch: int) -> None:
        on = epoch >= self.start
        self.class_weights.copy_(self.drw_weights if on else torch.ones_like(self.drw_weights))

    def batch_loss(self, h: Tensor, z: Tensor, y: Tensor) -> Tensor:
        return class_weighted_mean(self.loss.per_sample(h, z, y), y, self.class_weights)

    def extra_repr(self) -> str:
        return f"start={self.start}"


def drw_start_epoch(ctx: ObjectiveContext, value: float | None) -> int:
    """The first re-weighted epoch (0-based): `value`, else the first milestone, else 80%."""
    if value is None:
        return ctx.milestones[0] if ctx.milestones else round(0.8 * ctx.epochs)
    if not (float(value).is_integer() and value >= 0):
        raise ValueError(f"drw_epoch must be a whole number of epochs >= 0, got {value!r}")
    return int(value)


def _counts(ctx: ObjectiveContext) -> Tensor:
    return torch.tensor(ctx.class_counts, dtype=torch.float64)


def _logit_adjusted(ctx: ObjectiveContext) -> Objective:
    tau = resolve_options("logit-adjusted", ctx.options, {"tau": 1.0})["tau"]
    return CountAdjusted(lambda z, y, n: logit_adjusted_cross_entropy(z, y, n, tau), _counts(ctx))


def _balanced_softmax(ctx: ObjectiveContext) -> Objective:
    resolve_options("balanced-softmax", ctx.options, {})
    return CountAdjusted(balanced_softmax_cross_entropy, _counts(ctx))


_LDAM = {"max_margin": 0.5, "scale": 30.0}
_DRW = {"beta": 0.9999, "drw_epoch": -1.0}  # -1: the schedule's default (drw_start_epoch)


BaseFactory = Callable[[ObjectiveContext, dict[str, float]], Objective]


def _ldam_of(ctx: ObjectiveContext, opts: dict[str, float]) -> Objective:
    return LDAM(_counts(ctx), opts["max_margin"], opts["scale"])


def _ce_of(ctx: ObjectiveContext, opts: dict[str, float]) -> Objective:
    return LossObjective(CrossEntropy())


def _plain(name: str, base: BaseFactory, defaults: dict[str, float]):
    def factory(ctx: ObjectiveContext) -> Objective:
        return base(ctx, resolve_options(name, ctx.options, defaults))

    return factory


def _with_drw(name: str, base: BaseFactory, defaults: dict[str, float]):
    def factory(ctx: ObjectiveContext) -> Objective:
        opts = resolve_options(name, ctx.options, {**defaults, **_DRW})
        start = drw_start_epoch(ctx, None if opts["drw_epoch"] == -1 else opts["drw_epoch"])
        return DeferredReweighting(base(ctx, opts), _counts(ctx), opts["beta"], start)

    return factory


OBJECTIVES.add("logit-adjusted", _logit_adjusted)
OBJECTIVES.add("balanced-softmax", _balanced_softmax)
OBJECTIVES.add("ldam", _plain("ldam", _ldam_of, _LDAM))
OBJECTIVES.add("ldam-drw", _with_drw("ldam-drw", _ldam_of, _LDAM))
OBJECTIVES.add("ce-drw", _with_drw("ce-drw", _ce_of, {}))
