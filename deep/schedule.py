"""Learning-rate schedule of the paper recipe: linear warm-up, then step decay.

    factor(t) = min(1, (t + 1) / (warmup_epochs * S)) * gamma^#{m in milestones : epoch(t) >= m}

with t the global step, S steps per epoch and epoch(t) = floor(t / S). A pure function of the
step, so a checkpoint only needs the step to resume it. Each optimizer group keeps its peak
rate as "initial_lr"; a group with "scheduled": False keeps it throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["StepSchedule"]


@dataclass(frozen=True)
class StepSchedule:
    """Learning-rate factor per step: linear warm-up over `warmup_epochs`, then x `gamma` at
    each milestone epoch (Yang et al.'s recipe: 5 warm-up epochs, x0.1 at 160 and 180)."""

    steps_per_epoch: int
    warmup_epochs: float = 0.0  # [epochs]
    milestones: tuple[int, ...] = ()  # [epochs]
    gamma: float = 0.1

    def factor(self, step: int) -> float:
        warm_steps = self.warmup_epochs * self.steps_per_epoch
        warm = min(1.0, (step + 1) / warm_steps) if warm_steps > 0 else 1.0
        epoch = step // self.steps_per_epoch
        return warm * self.gamma ** sum(epoch >= m for m in self.milestones)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every scheduled group's lr for `step`; returns the factor."""
        factor = self.factor(step)
        for group in optimizer.param_groups:
            scale = factor if group.get("scheduled", True) else 1.0
            group["lr"] = group["initial_lr"] * scale
        return factor
