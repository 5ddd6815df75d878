"""The methods the results table compares: each a head, an objective and its options.

This is the one place where a method's name maps to what it trains; `python -m deep.table`
turns a method into `deep.train` flags (--head, --loss, --set loss.options=...), so a method
needs nothing but registered heads and objectives. Options left out take the objective's
defaults (deep.rebalancing, deep.nc_regularizers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ufm.registry import Registry

__all__ = ["METHODS", "ORDER", "Method"]


@dataclass(frozen=True)
class Method:
    head: str  # registered head (deep.heads)
    loss: str  # registered objective (deep.objectives)
    reference: str  # the paper the method comes from
    options: Mapping[str, float] = field(default_factory=dict)  # loss.options
    settings: Mapping[str, Any] = field(default_factory=dict)  # further dotted config keys

    def overrides(self) -> dict[str, Any]:
        """Dotted config keys that select the method."""
        return {
            "head.name": self.head,
            "loss.name": self.loss,
            "loss.options": dict(self.options),
            **self.settings,
        }


METHODS: Registry[Method] = Registry("method")
ORDER: list[str] = []  # the methods in the order a table lists them: baselines first


def _add(name: str, method: Method) -> None:
    METHODS.add(name, method)
    ORDER.append(name)


_add("ce", Method("linear", "ce", "learnable linear classifier, cross-entropy"))
_add("etf-dr", Method("etf", "dr", "Yang et al., NeurIPS 2022: fixed ETF, dot regression"))
_add(
    "etf-dr-balanced",
    Method("etf", "dr-balanced", "Yang et al. 2022, released code: DR with in-batch balance"),
)
_add(
    "logit-adjusted",
    Method("linear", "logit-adjusted", "Menon et al., ICLR 2021: logit-adjusted CE", {"tau": 1.0}),
)
_add(
    "balanced-softmax",
    Method(
        "linear",
        "balanced-softmax",
        "Ren et al., NeurIPS 2020: balanced softmax (the loss of logit-adjusted at tau = 1: "
        "same seed, same run)",
    ),
)
_add(
    "ldam-drw",
    Method("cosine", "ldam-drw", "Cao et al., NeurIPS 2019: LDAM, deferred re-weighting"),
)
_add(
    "nc-reg",
    Method("linear", "ce-nc-reg", "Liu et al., AISTATS 2023: CE + NC1 / NC2 regularizers"),
)
_add("allnc", Method("linear", "allnc", "Zhang et al. 2024: AllNC (HyCon, P2P, GBBN)"))
