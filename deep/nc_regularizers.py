"""Objectives that induce neural collapse on long-tailed data, registered by name.

`ce-nc-reg`: Liu et al., AISTATS 2023, "Inducing Neural Collapse in Deep Long-tailed Learning":

    L = CE(z, y) + lambda1 L_NC1(h, mu) + lambda2 L_NC2(mu)

with learnable class centres mu (K, d) (`ufm.longtail_losses.nc1_regularizer`, `nc2_regularizer`).
Options: lambda1 = 0.01, lambda2 = 0.1, centre_lr = 0.5. The centres are drawn N(0, 1) from
the run's objective seed and take their own SGD step: learning rate centre_lr, fixed (not
scheduled), no momentum, no weight decay; they receive gradients from the two regularizers
only, with the weights lambda1 and lambda2 as written.

`allnc`: Zhang et al. 2024, "All-around Neural Collapse for Imbalanced Classification" (AllNC):
three parts, each a formula of `ufm.longtail_losses`:

- HyCon (`hybrid_contrastive_loss`) for NC1: a contrastive loss with two views, the samples
  and their class means, pulling each sample to its class.
- P2P (`peer_to_peer_loss`) for NC2 / NC3: class means and classifier vectors as peers,
  aligned pairwise (self-duality) and pushed apart from the other pairs (equiangularity).
- GBBN, a generalised bilateral-branch schedule that progressively decouples feature and
  classifier learning: a conventional branch, CE on the head's logits z (trains backbone and
  classifier together), and a re-balancing branch, logit-adjusted CE on the logits of the
  detached features (trains the classifier alone), mixed with the cumulative weight
  alpha = 1 - (epoch/epochs)^branch_power of Zhou et al. (CVPR 2020):

    L = alpha CE(z, y) + (1 - alpha) LA(head(sg[h]), y) + hycon_weight HyCon + p2p_weight P2P

Choices made here where the method's description leaves details open: the two branches share
the backbone and the head (no second classifier, no re-sampled stream: re-balancing is by
logit adjustment, strength adjust_tau); HyCon and P2P act on features centred at the mean of
the batch's class means, with class means from the batch itself (so they carry gradients),
HyCon's denominator class-averaged (hycon_balanced = 1) and no projection head; HyCon and P2P
keep their weights throughout. Options and defaults: hycon_weight 1, hycon_tau 0.1,
hycon_balanced 1, p2p_weight 1, p2p_tau 0.1, adjust_tau 1, branch_power 2. AllNC reads the
classifier of the run's head (ObjectiveContext.head); use it with a learnable head.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from deep.objective_base import (
    OBJECTIVES,
    BatchObjective,
    Objective,
    ObjectiveContext,
    resolve_options,
)
from ufm.longtail_losses import (
    batch_class_means,
    bilateral_branch_weight,
    hybrid_contrastive_loss,
    logit_adjusted_cross_entropy,
    nc1_regularizer,
    nc2_regularizer,
    peer_to_peer_loss,
)
from ufm.losses import cross_entropy

__all__ = ["AllNC", "NCRegularized"]


class NCRegularized(BatchObjective):
    """CE + lambda1 L_NC1(h, mu) + lambda2 L_NC2(mu), with learnable class centres mu (K, d)."""

    def __init__(
        self, ctx: ObjectiveContext, lambda1: float, lambda2: float, centre_lr: float
    ) -> None:
        super().__init__()
        self.lambda1, self.lambda2, self.centre_lr = lambda1, lambda2, centre_lr
        gen = torch.Generator().manual_seed(ctx.seed)
        self.centres = nn.Parameter(torch.randn(ctx.num_classes, ctx.feature_dim, generator=gen))

    def param_groups(self) -> list[dict]:
        return [
            {
                "params": [self.centres],
                "lr": self.centre_lr,
                "momentum": 0.0,
                "weight_decay": 0.0,
                "nesterov": False,
                "scheduled": False,
            }
        ]

    def batch_loss(self, h: Tensor, z: Tensor, y: Tensor) -> Tensor:
        centres = self.centres.to(h.dtype)
        ce = cross_entropy(z, y).mean()
        return (
            ce
            + self.lambda1 * nc1_regularizer(h, y, centres)
            + self.lambda2 * nc2_regularizer(centres)
        )

    def extra_repr(self) -> str:
        return f"lambda1={self.lambda1:g}, lambda2={self.lambda2:g}, centre_lr={self.centre_lr:g}"


class AllNC(BatchObjective):
    """HyCon + P2P + the bilateral-branch mix of CE and detached logit-adjusted CE."""

    def __init__(self, ctx: ObjectiveContext, opts: dict[str, float]) -> None:
        super().__init__()
        if ctx.head is None:
            raise ValueError("loss 'allnc' reads the head's classifier; the context has no head")
        self.opts = opts
        self.num_classes, self.epochs = ctx.num_classes, ctx.epochs
        # Bound methods, not the module: the head belongs to the network (and its checkpoint).
        self._logits = ctx.head.logits
        self._classifier = ctx.head.classifier
        counts = torch.tensor(ctx.class_counts, dtype=torch.float64)
        self.register_buffer("counts", counts, persistent=False)  # (K,)
        self.alpha = 1.0  # weight of the conventional branch, set by start_epoch

    def start_epoch(self, epoch: int) -> None:
        self.alpha = bilateral_branch_weight(epoch, self.epochs, self.opts["branch_power"])

    def batch_loss(self, h: Tensor, z: Tensor, y: Tensor) -> Tensor:
        o = self.opts
        loss = self.alpha * cross_entropy(z, y).mean()
        if self.alpha < 1.0:
            z_rebalanced = self._logits(h.detach()).to(h.dtype)  # (B, K): trains the head only
            rebalanced = logit_adjusted_cross_entropy(z_rebalanced, y, self.counts, o["adjust_tau"])
            loss = loss + (1.0 - self.alpha) * rebalanced.mean()
        if o["hycon_weight"]:
            hycon = hybrid_contrastive_loss(
                h, y, self.num_classes, o["hycon_tau"], bool(o["hycon_balanced"])
            )
            loss = loss + o["hycon_weight"] * hycon
        if o["p2p_weight"]:
            loss = loss + o["p2p_weight"] * self._p2p(h, y)
        return loss

    def _p2p(self, h: Tensor, y: Tensor) -> Tensor:
        means, counts = batch_class_means(h, y, self.num_classes)
        present = counts > 0
        centred = means - means[present].mean(dim=0).detach()  # (K, d)
        w, _ = self._classifier()
        return peer_to_peer_loss(centred, present, w.to(h.dtype), self.opts["p2p_tau"])

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.opts.items())


_NC_REG = {"lambda1": 0.01, "lambda2": 0.1, "centre_lr": 0.5}
_ALLNC = {
    "hycon_weight": 1.0,
    "hycon_tau": 0.1,
    "hycon_balanced": 1.0,
    "p2p_weight": 1.0,
    "p2p_tau": 0.1,
    "adjust_tau": 1.0,
    "branch_power": 2.0,
}


def _nc_reg(ctx: ObjectiveContext) -> Objective:
    o = resolve_options("ce-nc-reg", ctx.options, _NC_REG)
    return NCRegularized(ctx, o["lambda1"], o["lambda2"], o["centre_lr"])


def _allnc(ctx: ObjectiveContext) -> Objective:
    return AllNC(ctx, resolve_options("allnc", ctx.options, _ALLNC))


OBJECTIVES.add("ce-nc-reg", _nc_reg)
OBJECTIVES.add("allnc", _allnc)
