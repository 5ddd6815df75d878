"""Training objectives: the loss a batch is trained on, by name from a registry.

An objective maps the head's features h (B, d) and logits z (B, K) and the batch's targets to
one scalar. Mixup (Zhang et al. 2018) enters only through the targets: with labels y_a, y_b and
weight lam, the objective is lam L(y_a) + (1 - lam) L(y_b), as in Yang et al.'s code.

The per-sample formulas live in `ufm.losses` (one source of truth): `ce` is cross-entropy,
`dr` is dot regression with target sqrt(E_W E_H), `dr-balanced` is DR with the in-batch
class-balanced weights gamma / n_k^batch of the authors' code. The methods of the long-tail
literature register themselves from `deep.rebalancing` (logit adjustment, balanced softmax,
LDAM, deferred re-weighting) and `deep.nc_regularizers` (Liu et al.'s NC1 / NC2 terms, AllNC).

Objectives are modules so that a method can bring learnable parameters of its own (class
centres of an NC regulariser, say): `param_groups()` hands them to the optimizer with their own
hyper-parameters (a group with "scheduled": False keeps its learning rate), and
`start_epoch(epoch)` lets a method change with the schedule (deferred re-weighting).

The base classes and the registry live in `deep.objective_base`, which imports no method; the
method modules import it and register themselves (a new method does the same), and this module
imports them all, so the registry read from here is complete (no import circle).
"""

from __future__ import annotations

# The method modules register themselves into OBJECTIVES on import; importing them here (and
# only here) fills the registry before anything reads it.
from deep import nc_regularizers, rebalancing  # noqa: F401
from deep.objective_base import OBJECTIVES, Objective, ObjectiveContext

__all__ = ["OBJECTIVES", "Objective", "ObjectiveContext", "build_objective"]


def build_objective(name: str, ctx: ObjectiveContext) -> Objective:
    """The registered objective `name` for the run described by `ctx`."""
    return OBJECTIVES.get(name)(ctx)
