"""First-order solvers for the problems of `ufm.problems` and `ufm.convex`, registered by name.

A problem gives f = smooth part + penalty, the gradient of the smooth part, and the proximal map
of the penalty composed with the projection onto its feasible set (`prox`).

- "pgd": plain proximal / projected gradient x+ = prox(x - t grad f(x)) with Armijo backtracking
  (the step only shrinks). The reference method of the neural-collapse literature.
- "fast": accelerated proximal gradient (Nesterov / FISTA, Beck & Teboulle 2009) with
  (i) a step that shrinks on a failed sufficient-decrease test and grows by `grow` (1.2) after
  every accepted one, capped by the inverse of the curvature just measured, so it follows the
  local curvature instead of a global bound; (ii) function- and gradient-based adaptive restart
  (O'Donoghue & Candès 2015), which keeps it monotone; (iii) the problem's own preconditioning
  where it has one (class-averaged feature budgets: every sample's curvature made independent
  of its class count); (iv) float32 iterations while float32 suffices, then float64, without
  losing the momentum. On the DR problems, whose objective is flat orthogonally to w*_k, the
  growing step lets the projection do the alignment.

Both start from `problem.random_start(seed)` (never from the answer), compute in the problem's
dtype and device, and stop when every criterion given holds: the gap to `target` (a known or
certified optimum) <= tol, or else the problem's own certificate f - lower_bound <= tol (checked
every `check_every` iterations); and the gradient mapping's norm <= grad_tol (stationarity:
the objective converges quadratically faster than the point, so a gap alone can leave
within-class spread that the metrics would see). Or at `max_iter` / `max_seconds`.
With `relative=True` both gaps are divided by max(|target or bound|, 1e-300).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ufm.problems import Problem, Vars
from ufm.registry import Registry

__all__ = ["SOLVERS", "SolveResult", "accelerated_gradient", "projected_gradient", "solve"]


@dataclass
class SolveResult:
    """Final point, its objective, how it stopped, and the history of f per iteration."""

    x: Vars
    objective: float
    iterations: int
    seconds: float
    converged: bool
    reason: str
    history: dict[str, np.ndarray] = field(repr=False)
    lower_bound: float | None = None


def _dot(a: Vars, b: Vars) -> float:
    return float(sum(torch.vdot(u.reshape(-1), v.reshape(-1)) for u, v in zip(a, b, strict=True)))


def _axpy(x: Vars, t: float, g: Vars) -> Vars:
    return tuple(torch.add(u, v, alpha=t) for u, v in zip(x, g, strict=True))


def _sub(a: Vars, b: Vars) -> Vars:
    return tuple(u - v for u, v in zip(a, b, strict=True))


@dataclass
class _Monitor:
    """Records (iteration, seconds, objective) and decides when to stop."""

    problem: Problem
    tol: float
    target: float | None
    max_iter: int
    max_seconds: float | None
    check_every: int
    relative: bool
    grad_tol: float | None

    def __post_init__(self) -> None:
        if not (self.tol > 0 and math.isfinite(self.tol)):
            raise ValueError(f"tol must be a finite number > 0, got {self.tol!r}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter!r}")
        if self.target is not None and not math.isfinite(self.target):
            raise ValueError(f"target must be finite, got {self.target!r}")
        self.start = time.perf_counter()
        self.rows: list[tuple[int, float, float]] = []
        self.bound: float | None = None

    def _gap_ok(self, it: int, f: float, x: Vars) -> bool | None:
        """Gap to the target, or to the best certified lower bound found so far (every bound is
        a bound on f*, so an earlier one stays valid); certificates are computed every
        `check_every` iterations."""
        if self.target is not None:
            return self._small(f - self.target, self.target)
        if it % self.check_every == 0 or it >= self.max_iter:
            bound = self.problem.lower_bound(x)
            if bound is not None and (self.bound is None or bound > self.bound):
                self.bound = bound
        return None if self.bound is None else self._small(f - self.bound, self.bound)

    @property
    def gap_reason(self) -> str:
        return "target gap reached" if self.target is not None else "certified gap reached"

    def _small(self, gap: float, reference: float) -> bool:
        scale = max(abs(reference), 1e-300) if self.relative else 1.0
        return gap <= self.tol * scale

    def record(self, it: int, f: float) -> None:
        self.rows.append((it, time.perf_counter() - self.start, f))

    def stop(self, it: int, f: float, x: Vars, step: _Step, final: bool = True) -> str | None:
        """Why to stop now, or None; with final=False (a warm-up phase) only the limits count."""
        if not math.isfinite(f):
            raise FloatingPointError(f"objective became {f} at iteration {it}")
        if not final:
            return self._limits(it)
        gap_ok = self._gap_ok(it, f, x)  # None: no optimum or certificate to compare with
        stationary = None if self.grad_tol is None else step.mapping <= self.grad_tol
        if gap_ok is not False and stationary is not False and (gap_ok or stationary):
            reasons = [self.gap_reason] if gap_ok else []
            return " and ".join([*reasons, "stationary"] if stationary else reasons)
        return self._limits(it)

    def _limits(self, it: int) -> str | None:
        if it >= self.max_iter:
            return "max_iter"
        if self.max_seconds is not None and time.perf_counter() - self.start > self.max_seconds:
            return "max_seconds"
        return None

    def result(self, x: Vars, f: float, it: int, reason: str) -> SolveResult:
        arr = np.array(self.rows, dtype=np.float64).reshape(-1, 3)
        history = {
            "iteration": arr[:, 0].astype(np.int64),
            "seconds": arr[:, 1],
            "objective": arr[:, 2],
        }
        converged = reason not in ("max_iter", "max_seconds")
        seconds = time.perf_counter() - self.start
        return SolveResult(x, f, it, seconds, converged, reason, history, self.bound)


# Rounding noise of an objective that sums many terms, relative to max(1, |f|), per dtype.
_NOISE = {torch.float64: 1e-11, torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}


def _noise(problem: Problem, value: float) -> float:
    return _NOISE.get(getattr(problem, "dtype", torch.float64), 1e-11) * max(1.0, abs(value))


@dataclass
class _Step:
    """An accepted prox-gradient step from y: x+ = prox(y - t g), d = x+ - y."""

    x: Vars
    smooth: float  # s(x+)
    grad: Vars | None  # grad s(x+), when it was computed
    t: float
    d: Vars
    curvature: float  # local curvature along d: 2 (s(x+) - s(y) - <g, d>) / ||d||^2

    @property
    def mapping(self) -> float:
        """Norm of the gradient mapping ||d||/t at y (0 at a stationary point)."""
        return math.sqrt(_dot(self.d, self.d)) / self.t


def _armijo_step(
    problem: Problem, y: Vars, sy: float, gy: Vars, t: float, with_grad: bool = False
) -> _Step:
    """Backtrack t until x+ = prox(y - t g), d = x+ - y, passes the sufficient-decrease test

        s(x+) <= s(y) + <g, d> + ||d||^2/(2t)          (s: the smooth part).

    Once ||d||^2/(2t) is below the rounding noise of s, that test can no longer be decided and
    the equivalent curvature test <grad s(x+) - g, d> <= ||d||^2/t is used instead: it stays
    accurate to the precision of the gradients, so iterates keep converging after f has.
    """
    noise = _noise(problem, sy)
    for _ in range(100):
        x_new = problem.prox(_axpy(y, -t, gy), t)
        d = _sub(x_new, y)
        dd = _dot(d, d)
        if dd == 0.0:
            return _Step(x_new, sy, gy if with_grad else None, t, d, 0.0)
        gd = _dot(gy, d)
        if dd / (2 * t) > noise:  # the sufficient-decrease test, in curvature form
            if with_grad:
                s_t, g_new = problem.value_and_grad(x_new)
                s_new = float(s_t)
            else:
                s_new, g_new = problem.smooth_value(x_new), None
            curvature = 2 * (s_new - sy - gd) / dd
            accepted = curvature <= 1.0 / t
        else:
            s_t, g_new = problem.value_and_grad(x_new)
            s_new = float(s_t)
            curvature = _dot(_sub(g_new, gy), d) / dd
            accepted = curvature <= 1.0 / t and s_new <= sy + gd + dd / (2 * t) + noise
        if accepted:
            return _Step(x_new, s_new, g_new, t, d, curvature)
        t *= 0.5
    raise FloatingPointError("line search failed: the gradient does not match the objective")


def projected_gradient(
    problem: Problem,
    x0: Vars,
    *,
    tol: float = 1e-9,
    target: float | None = None,
    max_iter: int = 100_000,
    max_seconds: float | None = None,
    check_every: int = 10,
    relative: bool = False,
    grad_tol: float | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> SolveResult:
    """Plain projected (proximal) gradient with Armijo backtracking; the step never grows."""
    mon = _Monitor(problem, tol, target, max_iter, max_seconds, check_every, relative, grad_tol)
    x = problem.prox(x0, 0.0)
    s_t, g = problem.value_and_grad(x)
    s = float(s_t)
    t = 64.0 / problem.smoothness()  # generous first trial, halved until accepted
    mon.record(0, s + problem.penalty(x))
    it = 0
    while True:
        it += 1
        st = _armijo_step(problem, x, s, g, t, with_grad=True)
        x, s, g, t = st.x, st.smooth, st.grad, st.t
        f = s + problem.penalty(x)
        mon.record(it, f)
        if callback is not None:
            callback(it, f)
        if reason := mon.stop(it, f, x, st):
            return mon.result(x, f, it, reason)


def accelerated_gradient(
    problem: Problem,
    x0: Vars,
    *,
    tol: float = 1e-9,
    target: float | None = None,
    max_iter: int = 100_000,
    max_seconds: float | None = None,
    check_every: int = 10,
    relative: bool = False,
    grad_tol: float | None = None,
    callback: Callable[[int, float], None] | None = None,
    grow: float = 1.2,
    precondition: bool = True,
    float32_warmup: bool = True,
) -> SolveResult:
    """FISTA with a growing/shrinking step and adaptive restart (module docstring).

    With `precondition`, a problem that offers `preconditioned()` (an equivalent problem in
    better-scaled variables) and `transfer(x, other)` is solved in those variables. With
    `float32_warmup`, a float64 problem that offers `with_dtype(dtype)` is iterated in float32
    (half the memory traffic) until that precision stops paying, then in float64, keeping the
    momentum and the step. The start, the history and the result are the original problem's.
    """
    opts = dict(
        tol=tol,
        target=target,
        max_iter=max_iter,
        max_seconds=max_seconds,
        check_every=check_every,
        relative=relative,
        grad_tol=grad_tol,
        callback=callback,
        grow=grow,
    )
    if precondition and hasattr(problem, "preconditioned"):
        inner = problem.preconditioned()
        if inner is not problem:
            res = accelerated_gradient(
                inner,
                problem.transfer(x0, inner),
                **opts,
                precondition=False,
                float32_warmup=float32_warmup,
            )
            res.x = inner.transfer(res.x, problem)
            return res
    low = None
    if float32_warmup and problem.dtype == torch.float64 and hasattr(problem, "with_dtype"):
        low = problem.with_dtype(torch.float32)
    return _fista(problem, x0, low=low, **opts)


def _warmup_done(
    low: Problem, rows: list[tuple[int, float, float]], f: float, target: float | None, tol: float
) -> bool:
    """Leave float32 once it reaches a gap of 1e-5 (or tol) or stops gaining over 5 steps."""
    if target is not None and f - target <= max(tol, 1e-5) * max(1.0, abs(target)):
        return True
    return len(rows) > 5 and rows[-6][2] - f <= 10 * _noise(low, f)


def _fista(
    problem: Problem,
    x0: Vars,
    *,
    low: Problem | None = None,
    tol: float,
    target: float | None,
    max_iter: int,
    max_seconds: float | None,
    check_every: int,
    relative: bool,
    grad_tol: float | None,
    callback: Callable[[int, float], None] | None,
    grow: float,
) -> SolveResult:
    """The iteration; with `low` (the problem in float32) it starts there and switches to
    `problem`'s precision mid-run, keeping the momentum and the step."""
    mon = _Monitor(problem, tol, target, max_iter, max_seconds, check_every, relative, grad_tol)
    cur = low or problem
    x = cur.prox(tuple(v.to(cur.dtype) for v in x0), 0.0)
    s_t, gy = cur.value_and_grad(x)
    y, sy = x, float(s_t)
    f = sy + cur.penalty(x)
    t = 64.0 / cur.smoothness()  # generous first trial, halved until accepted
    theta = 1.0
    mon.record(0, f)
    it = 0
    while True:
        it += 1
        st = _armijo_step(cur, y, sy, gy, t)
        f_new = st.smooth + cur.penalty(st.x)
        if f_new > f + _noise(cur, f):  # function restart: a plain step from x
            s_x, g_x = cur.value_and_grad(x)
            st = _armijo_step(cur, x, float(s_x), g_x, st.t)
            f_new = st.smooth + cur.penalty(st.x)
            theta = 1.0
        step = _sub(st.x, x)
        theta_new = (1.0 + math.sqrt(1.0 + 4.0 * theta * theta)) / 2.0
        if _dot(st.d, step) < 0:  # gradient restart: the momentum points uphill
            theta, theta_new = 1.0, 1.0
        y = _axpy(st.x, (theta - 1.0) / theta_new, step)
        x, f, theta = st.x, f_new, theta_new
        if cur is low and _warmup_done(low, mon.rows, f, target, tol):
            cur = problem
            # A point feasible in float32 can lie ~1e-7 outside the set in float64: project it
            # again, or certificates would be computed (and met) at an infeasible point.
            x = problem.prox(tuple(v.to(problem.dtype) for v in x), 0.0)
            y = tuple(v.to(problem.dtype) for v in y)
            f = problem.objective(x)
        sy_t, gy = cur.value_and_grad(y)
        sy = float(sy_t)
        # Grow the step, but not past the inverse of the curvature just measured along d.
        t = st.t * grow if st.curvature <= 0 else min(st.t * grow, 1.0 / st.curvature)
        mon.record(it, f)
        if callback is not None:
            callback(it, f)
        if reason := mon.stop(it, f, x, st, final=cur is problem):
            return mon.result(tuple(v.to(problem.dtype) for v in x), f, it, reason)


Solver = Callable[..., SolveResult]
SOLVERS: Registry[Solver] = Registry("solver")
SOLVERS.add("pgd", projected_gradient)
SOLVERS.add("fast", accelerated_gradient)


def solve(
    problem: Problem, solver: str = "fast", *, seed: int = 0, **options: object
) -> SolveResult:
    """Solve `problem` from `problem.random_start(seed)` with the registered `solver`."""
    run = SOLVERS.get(solver)
    with torch.no_grad():
        return run(problem, problem.random_start(seed), **options)
