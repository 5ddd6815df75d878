"""The registry of theorem checks: one `Check` per statement, each a function of a size.

A check solves the problem its statement is about (from random starts, never from the answer),
compares what it finds with the statement, and returns a `CheckResult`. The comparison is a list
of `Measurement`s, each a number with the bound it must respect:

- relation "<=": an error that must not exceed its tolerance (a distance to a closed form, a
  certified gap, a violated inequality);
- relation ">=": a quantity that must reach a margin (the separation of classes that must not
  collapse, a multiplier that must reach a threshold).

A check passes when every measurement holds. Its status is PASS, FAIL (a measurement does not
hold) or ERROR (the check raised: it measured nothing, and its last traceback line says why). Its
headline error is the "<=" measurement that uses the largest fraction of its tolerance; every
measurement, and every failed one by name, is kept in `details`.

Checks register themselves with `@register(...)` when their module is imported;
`all_checks()` imports the modules listed in `CHECK_MODULES`, in that order.
"""

from __future__ import annotations

import importlib
import math
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ufm.runtime import torch_threads

__all__ = [
    "CHECKS",
    "CHECK_MODULES",
    "SIZES",
    "Check",
    "CheckReport",
    "CheckResult",
    "Measurement",
    "Size",
    "all_checks",
    "get_check",
    "register",
]

Size = Literal["full", "small"]
SIZES: tuple[str, ...] = ("full", "small")

# One module per check, in the order of the table.
CHECK_MODULES: tuple[str, ...] = (
    "etf_geometry",
    "theorem1",
    "theorem2",
    "convergence",
    "ce_gradient",
    "lpm_relaxation",
    "minority_collapse",
    "hong_ling_collapse",
    "regularized_imbalance",
    "seli_limit",
    "etf_immunity",
    "class_averaged_ablation",
)


@dataclass(frozen=True)
class Measurement:
    """One compared quantity: `value` must be `relation` (<= or >=) `bound`."""

    label: str
    value: float
    bound: float
    relation: str = "<="

    def __post_init__(self) -> None:
        if self.relation not in ("<=", ">="):
            raise ValueError(f"relation must be '<=' or '>=', got {self.relation!r}")
        if not self.bound > 0:
            raise ValueError(f"{self.label}: a bound must be > 0, got {self.bound!r}")

    @property
    def holds(self) -> bool:
        """False for NaN values: a computation that broke never passes."""
        v = float(self.value)
        return v <= self.bound if self.relation == "<=" else v >= self.bound

    @property
    def usage(self) -> float:
        """value / bound for "<=", bound / value for ">=": > 1 exactly when it fails."""
        v = float(self.value)
        if math.isnan(v):
            return math.inf
        if self.relation == "<=":
            return v / self.bound
        return math.inf if v <= 0 else self.bound / v

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": _finite(self.value),
            "relation": self.relation,
            "bound": self.bound,
            "holds": self.holds,
        }


def _finite(value: float) -> float | str:
    """JSON has no inf or NaN: those are written as strings."""
    v = float(value)
    return v if math.isfinite(v) else str(v)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: passed, its headline error and tolerance, and the evidence."""

    passed: bool
    max_error: float
    tolerance: float
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # "TypeError: ...": the check raised instead of measuring

    @property
    def status(self) -> str:
        """ "PASS", "FAIL" (a measurement does not hold) or "ERROR" (the check raised)."""
        if self.error is not None:
            return "ERROR"
        return "PASS" if self.passed else "FAIL"

    @classmethod
    def from_measurements(cls, measurements: Iterable[Measurement], **details: Any) -> CheckResult:
        """Passed iff every measurement holds; the headline is the most used "<=" tolerance."""
        ms = list(measurements)
        errors = [m for m in ms if m.relation == "<="]
        if not errors:
            raise ValueError("a check needs at least one '<=' measurement (an error)")
        worst = max(errors, key=lambda m: m.usage)
        failed = [m.label for m in ms if not m.holds]
        return cls(
            passed=not failed,
            max_error=float(worst.value),
            tolerance=worst.bound,
            details={
                "headline": worst.label,
                "failed": failed,
                "measurements": [m.as_dict() for m in ms],
                **details,
            },
        )


@dataclass(frozen=True)
class CheckReport:
    """A check's result with its name, source and wall time (a row of the table)."""

    name: str
    statement: str
    source: str
    size: str
    result: CheckResult
    seconds: float

    @property
    def status(self) -> str:
        """ "PASS", "FAIL" or "ERROR" (see `CheckResult.status`)."""
        return self.result.status

    def as_dict(self) -> dict[str, Any]:
        """The JSON row: name, source, status, passed, max_error, tolerance, seconds, details."""
        return {
            "name": self.name,
            "source": self.source,
            "status": self.status,
            "passed": self.result.passed,
            "max_error": _finite(self.result.max_error),
            "tolerance": _finite(self.result.tolerance),
            "seconds": self.seconds,
            "details": {"statement": self.statement, "size": self.size, **self.result.details},
        }


@dataclass(frozen=True)
class Check:
    """A statement, where it comes from, and the function that checks it at a size."""

    name: str
    statement: str
    source: str
    function: Callable[[Size], CheckResult]

    def run(self, size: Size = "full", threads: int | None = 1) -> CheckReport:
        """Run the check; an exception is an ERROR (not a FAIL): `error` holds the last line of
        its traceback and `details` the whole traceback.

        `threads`: torch's intra-op threads while it runs (None: leave them as they are). The
        checks compute with K <= 100 matrices, where one thread is fastest; on a loaded 2-core
        machine the default threads made the small suite 35x slower (100 s instead of 3 s).
        """
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {size!r}")
        start = time.perf_counter()
        try:
            with torch_threads(threads):
                result = self.function(size)
        except Exception:  # a check that cannot run has measured nothing: neither PASS nor FAIL
            lines = traceback.format_exc().rstrip().splitlines()
            result = CheckResult(
                passed=False,
                max_error=math.inf,
                tolerance=math.nan,
                details={"failed": [], "traceback": "\n".join(lines)},
                error=lines[-1],
            )
        seconds = time.perf_counter() - start
        return CheckReport(self.name, self.statement, self.source, size, result, seconds)


CHECKS: dict[str, Check] = {}


def register(
    name: str, *, statement: str, source: str
) -> Callable[[Callable[[Size], CheckResult]], Callable[[Size], CheckResult]]:
    """Decorator: add `function(size) -> CheckResult` to the registry under a new `name`."""

    def decorator(function: Callable[[Size], CheckResult]) -> Callable[[Size], CheckResult]:
        if name in CHECKS:
            raise ValueError(f"check {name!r} is registered already")
        CHECKS[name] = Check(name, statement, source, function)
        return function

    return decorator


def all_checks() -> list[Check]:
    """Every registered check, in the order of `CHECK_MODULES` (imported on first use)."""
    for module in CHECK_MODULES:
        importlib.import_module(f"proofs_checks.{module}")
    order = {f"proofs_checks.{module}": i for i, module in enumerate(CHECK_MODULES)}
    return sorted(CHECKS.values(), key=lambda c: order.get(c.function.__module__, len(order)))


def get_check(name: str) -> Check:
    """The check `name`; a ValueError lists the registered names otherwise."""
    checks = {c.name: c for c in all_checks()}
    if name not in checks:
        raise ValueError(f"unknown check {name!r}; registered: {', '.join(checks)}")
    return checks[name]
