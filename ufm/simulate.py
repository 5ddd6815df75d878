"""`python -m ufm.simulate`: the layer-peeled model, fixed ETF versus learnable classifier,
cross-entropy versus dot regression, on one set of class counts, side by side.

Every configuration is solved from a random start by the chosen solver and compared with its
global optimum: Theorem 1's closed form (fixed ETF + CE), 0 (DR), or the certified optimum of the
LPM's convex form (learnable + CE). One table is printed and a run folder is written:

    run.json        kind "ufm", the command line, the code version (ufm.runfolder, format 1)
    config.yaml     every option and the class counts
    history.csv     configuration, iteration, seconds, objective, gap (the convergence curves)
    geometry.npz    per configuration, the cosine matrices (K, K) and norms (K,) of the
                    classifier rows and of the centred class means, keys "<classifier>+<loss>.
                    cosine_w|cosine_h|norm_w|norm_h" (the geometry figures read it)
    summary.json    per configuration: objective, the certified lower bound on the optimum,
                    the gap between them, the row's status, the feature distance the gap
                    certifies, metrics (written last and atomically: a killed run has none)

The gap is always taken against a lower bound on f* (a closed form, 0, or the convex form's
Frank-Wolfe certificate), so it bounds objective - f* from above; an objective below the lower
bound by more than rounding is an error (the reference does not belong to the problem). A row is
certified when the run converged to that gap; whether its reference optimum is certified is shown
apart. A run in which some row did not converge says so in one line and exits with status 1.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ufm.convex import solve_lpm_convex
from ufm.footprint import available_memory, check_primal_fits, primal_footprint
from ufm.imbalance import ClassProfile, make_profile
from ufm.io import check_new_output_dir, code_version, new_run_dir
from ufm.losses import LOSSES
from ufm.metrics import class_means, nc_metrics, pairwise_cosines
from ufm.problems import FixedETFModel, LayerPeeledModel, Problem, Vars
from ufm.runfolder import draw_figures, start_run, write_geometry, write_history, write_summary
from ufm.runtime import keep_freed_memory, torch_threads
from ufm.solvers import SOLVERS, solve
from ufm.theory import etf_feature_distance_bound

__all__ = [
    "SimulateConfig",
    "main",
    "run_configuration",
    "run_simulation",
    "solution_geometry",
]

CLASSIFIERS = ("etf", "learnable")
PROGRESS_SECONDS = 30.0  # [s] between progress lines of a long solve
DTYPES = {"float64": torch.float64, "float32": torch.float32}
# Rounding of an objective (a mean of <= ~1e5 terms) relative to max(1, |f|): how far below a
# certified lower bound an objective may fall before the bound is wrong, not the arithmetic.
ROUNDING = {"float64": 1e-12, "float32": 1e-5}
EXIT_NOT_CONVERGED = 1
DEGENERATE_NOTE = (
    "learnable + DR (any DR weighting) is degenerate: its minimizers include a fully collapsed "
    "classifier (all w_k equal, every h = sqrt(E_H) w/||w||), value 0; the metrics describe "
    "the minimizer this run reached, not a unique one"
)


@dataclass
class SimulateConfig:
    """Options of one simulation; the defaults are the CIFAR-10-LT-sized problem."""

    imbalance: float = 100.0  # rho = n_max / n_min (exp) or R = n_A / n_B (step)
    classes: int = 10  # K
    n_max: int = 5000  # samples of the largest class
    profile: str = "exp"  # "exp" (long tail) or "step"
    minority_classes: int | None = None  # step profile: K_B (default K // 2)
    dim: int = 64  # feature dimension d (>= K for the learnable certificate)
    e_w: float = 1.0  # classifier energy E_W
    e_h: float = 5.0  # feature energy E_H
    losses: tuple[str, ...] = ("ce", "dr")
    classifiers: tuple[str, ...] = ("etf", "learnable")
    solver: str = "fast"  # a key of ufm.solvers.SOLVERS
    seed: int = 0  # random start and ETF rotation
    tol: float = 1e-9  # stop at gap = objective - certified lower bound <= tol ...
    grad_tol: float = 1e-8  # ... and gradient mapping <= grad_tol (not for degenerate problems)
    max_iter: int = 20_000  # per configuration
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", or "auto"
    dtype: str = "float64"
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    out: str | None = None  # run folder; default runs/ufm/<timestamp>
    figures: bool = True  # draw the run's figures at the end
    counts: list[int] = field(default_factory=list, repr=False)  # filled from the profile

    def validate(self) -> None:
        if not self.losses or not self.classifiers:
            empty = "--losses" if not self.losses else "--classifiers"
            raise ValueError(f"{empty} selects nothing; give at least one name, e.g. ce,dr")
        for name in self.losses:
            LOSSES.get(name)  # ValueError naming the registered losses
        for name in self.classifiers:
            if name not in CLASSIFIERS:
                raise ValueError(f"unknown classifier {name!r}; choose from {CLASSIFIERS}")
        SOLVERS.get(self.solver)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name in ("e_w", "e_h", "tol", "grad_tol"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(
                    f"--{name.replace('_', '-')} must be a finite number > 0, got {value!r}"
                )
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if self.max_iter < 1:
            raise ValueError(f"--max-iter must be >= 1, got {self.max_iter}")
        if self.classes < 2:
            raise ValueError(f"--classes must be >= 2, got {self.classes}")
        if self.dim < self.classes - 1:
            raise ValueError(
                f"--dim {self.dim} is below K-1 = {self.classes - 1}: a simplex ETF "
                f"of {self.classes} classes does not fit; use --dim >= {self.classes - 1} "
                f"(>= {self.classes} with the learnable classifier)"
            )
        if "learnable" in self.classifiers and self.dim < self.classes:
            raise ValueError(
                f"the learnable LPM is certified only for d >= K; got --dim "
                f"{self.dim} < {self.classes}: use --dim >= {self.classes}, or --classifiers etf"
            )


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when available; an unavailable CUDA device is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


def build_problem(
    cfg: SimulateConfig, profile: ClassProfile, classifier: str, loss: str, device: torch.device
) -> Problem:
    """The problem of one configuration on `profile`'s counts: the fixed-ETF decoupled LPM
    (`classifier="etf"`, per-sample constraint ||h_i||^2 <= E_H) or Fang et al.'s LPM
    (`"learnable"`, (1/K) sum_k ||w_k||^2 <= E_W and (1/K) sum_k (1/n_k) sum_i ||h_{k,i}||^2
    <= E_H), with `loss`."""
    common = dict(
        counts=profile.counts,
        dim=cfg.dim,
        dtype=DTYPES[cfg.dtype],
        device=device,
        loss=loss,
        e_w=cfg.e_w,
        e_h=cfg.e_h,
    )
    if classifier == "etf":
        return FixedETFModel(**common, constraint="sample", etf_seed=cfg.seed)
    return LayerPeeledModel(**common)


def reference_optimum(
    cfg: SimulateConfig, problem: Problem, device: torch.device
) -> dict[str, Any]:
    """The global optimum the run is compared with, a certified lower bound on it, and how they
    are known (a closed form is its own lower bound)."""
    closed = problem.optimum()
    if closed is not None:
        source = "Theorem 1 (Yang et al. 2022)" if closed > 0 else "loss >= 0, attained"
        return {
            "optimum": closed,
            "lower_bound": closed,
            "certified": True,
            "source": source,
            "certificate_gap": 0.0,
        }
    convex = solve_lpm_convex(
        problem.counts,
        cfg.e_w,
        cfg.e_h,
        tol=min(cfg.tol, 1e-10),
        dtype=DTYPES[cfg.dtype],
        device=device,
    )
    return {
        "optimum": convex.value,
        "certified": convex.relative_gap <= min(cfg.tol, 1e-10),
        "source": "convex form, Frank-Wolfe certificate",
        "certificate_gap": convex.gap,
        "lower_bound": convex.lower_bound,
        "convex_iterations": convex.iterations,
        "convex_seconds": convex.seconds,
    }


def solution_geometry(problem: Problem, x: Vars) -> dict[str, np.ndarray]:
    """Pairwise cosines (K, K) and norms (K,) of the classifier rows w_k and of the centred class
    means mu_k - mu_G (mu_G the mean of the class means, as in `nc_metrics`), float64."""
    h = problem.features(x).to(torch.float64)
    w = problem.classifier(x).to(torch.float64)
    mu, mu_g, _ = class_means(h, problem.labels, problem.num_classes)
    centred = mu - mu_g  # (K, d)
    arrays = {
        "cosine_w": pairwise_cosines(w),
        "cosine_h": pairwise_cosines(centred),
        "norm_w": w.norm(dim=1),
        "norm_h": centred.norm(dim=1),
    }
    return {k: v.cpu().numpy() for k, v in arrays.items()}


def feature_distances(
    cfg: SimulateConfig, problem: Problem, x: Vars, loss: str, objective: float, lower: float
) -> tuple[float | None, float | None]:
    """(certified, measured) root-mean-square distance sqrt((1/N) sum_i ||h_i - h*_i||^2) of the
    features to Theorem 1's minimizer, on the fixed-ETF problem (None elsewhere).

    The certified one follows from the gap objective - lower and the loss's growth around h*
    (`ufm.theory.etf_feature_distance_bound`: of order gap^(1/2) for CE, gap^(1/4) for DR); the
    gap is first raised by the rounding of the two values (eps (8 + log2 N) max(|f|, |f*|), the
    error of a pairwise sum of N terms), so that the distance stays an upper bound at gaps near
    rounding.
    """
    if not isinstance(problem, FixedETFModel) or problem.constraint != "sample":
        return None, None
    eps = torch.finfo(problem.dtype).eps
    rounding = eps * (8 + math.log2(problem.num_samples)) * max(abs(objective), abs(lower))
    gap = max(objective - lower, 0.0) + rounding
    weight = 1.0
    if loss == "dr-balanced":  # full-set weights gamma / n_k, gamma = N / K
        weight = problem.num_samples / (problem.num_classes * int(problem.counts.max()))
    try:
        certified = etf_feature_distance_bound(
            loss, gap, problem.num_classes, cfg.e_w, cfg.e_h, weight
        )
    except ValueError:  # a loss without a known growth bound
        certified = None
    h = problem.features(x).to(torch.float64)
    h_star = problem.optimal_features().to(torch.float64)
    measured = float(((h - h_star) ** 2).sum(1).mean().sqrt())
    return certified, measured


def _progress_lines(name: str) -> Callable[[int, float], None]:
    """A solver callback printing a line every PROGRESS_SECONDS: a long solve stays visible in
    a log file, where no progress bar is drawn."""
    start = time.perf_counter()
    due = start + PROGRESS_SECONDS

    def callback(iteration: int, objective: float) -> None:
        nonlocal due
        if (now := time.perf_counter()) >= due:
            due = now + PROGRESS_SECONDS
            print(
                f"  {name}: iteration {iteration}, objective {objective:.10g}, {now - start:.0f} s",
                flush=True,
            )

    return callback


def run_configuration(
    cfg: SimulateConfig,
    profile: ClassProfile,
    classifier: str,
    loss: str,
    device: torch.device,
    *,
    progress: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Solve one configuration; returns (summary entry, history, `solution_geometry`).

    With `progress`, a line every PROGRESS_SECONDS while the solver runs."""
    problem = build_problem(cfg, profile, classifier, loss, device)
    ref = reference_optimum(cfg, problem, device)
    # A degenerate problem has no unique minimizer to be stationary at: the gap alone counts.
    grad_tol = None if getattr(problem, "degenerate", False) else cfg.grad_tol
    result = solve(
        problem,
        cfg.solver,
        seed=cfg.seed,
        tol=cfg.tol,
        target=ref["lower_bound"],  # the stopping gap is the certified one
        grad_tol=grad_tol,
        max_iter=cfg.max_iter,
        callback=_progress_lines(f"{classifier}+{loss}") if progress else None,
    )
    metrics = nc_metrics(
        problem.features(result.x),
        problem.labels,
        problem.classifier(result.x),
        problem.bias(result.x),
        num_classes=profile.num_classes,
        minority=profile.minority,
    )
    lower = ref["lower_bound"]
    gap = result.objective - lower
    slack = ROUNDING[cfg.dtype] * max(1.0, abs(lower))
    if gap < -slack:
        raise RuntimeError(
            f"{classifier} + {loss}: objective {result.objective:.10g} is below the certified "
            f"lower bound {lower:.10g} by {-gap:.1e} (rounding allows {slack:.0e}): the "
            f"reference ({ref['source']}) is not this problem's"
        )
    within_tol = gap <= cfg.tol  # the solver's own stopping rule
    certified_distance, feature_distance = feature_distances(
        cfg, problem, result.x, loss, result.objective, lower
    )
    entry = {
        "classifier": classifier,
        "loss": loss,
        "objective": result.objective,
        "optimum": ref["optimum"],
        "lower_bound": lower,
        "gap": gap,
        "relative_gap": gap / abs(lower) if lower else None,
        "certified": bool(ref["certified"] and result.converged and within_tol),
        "reference_certified": ref["certified"],
        "status": "converged" if result.converged else result.reason,
        "certified_distance": certified_distance,
        "feature_distance": feature_distance,
        "optimum_source": ref["source"],
        "iterations": result.iterations,
        "seconds": result.seconds,
        "converged": result.converged,
        "stop_reason": result.reason,
        "reference": {
            k: v for k, v in ref.items() if k not in ("optimum", "lower_bound", "certified")
        },
        "metrics": metrics,
    }
    if getattr(problem, "degenerate", False):
        entry["note"] = DEGENERATE_NOTE
    return entry, result.history, solution_geometry(problem, result.x)


def format_table(runs: list[dict[str, Any]]) -> str:
    """The printed table: a row per configuration of summary.json's `runs`, then the notes.

    Columns: objective; `lower bd`, the certified lower bound on the optimum; `gap`, objective
    minus that bound; `status`, the row's own ("converged" or why it stopped); `ref`, whether
    the lower bound is certified (closed form or convex certificate); `dist<=`, the feature
    distance to h* that the gap certifies (fixed ETF only); iterations, seconds, metrics.
    """
    names = [f"{r['classifier']} + {r['loss']}" for r in runs]
    w = max([15, *map(len, names)])
    s = max([9, *(len(r["status"]) for r in runs)])
    head = (
        f"{'configuration':<{w}} {'objective':>12} {'lower bd':>12} {'gap':>9} "
        f"{'status':<{s}} {'ref':>3} {'dist<=':>7} {'iters':>6} {'sec':>6} {'NC1':>8} "
        f"{'ETF-dist':>8} {'self-dual':>9} {'minCosW':>8} {'minCosH':>8}"
    )
    lines = [head, "-" * len(head)]
    for name, r in zip(names, runs, strict=True):
        m = r["metrics"]
        dist = "-" if r["certified_distance"] is None else f"{r['certified_distance']:.1e}"
        lines.append(
            f"{name:<{w}} {r['objective']:>12.8f} {r['lower_bound']:>12.8f} {r['gap']:>9.1e} "
            f"{r['status']:<{s}} {'yes' if r['reference_certified'] else 'no':>3} {dist:>7} "
            f"{r['iterations']:>6d} {r['seconds']:>6.2f} {m['nc1']:>8.1e} "
            f"{m['etf_distance']:>8.4f} {m['self_duality']:>9.4f} "
            f"{m['minority_cosine_w']:>8.4f} {m['minority_cosine_h']:>8.4f}"
        )
    notes = [f"note: {n}" for n in dict.fromkeys(r["note"] for r in runs if "note" in r)]
    return "\n".join(lines + notes)


def not_converged_line(runs: list[dict[str, Any]]) -> str | None:
    """One line naming the rows that did not converge (None when every row did)."""
    bad = [r for r in runs if not r["converged"]]
    if not bad:
        return None
    rows = ", ".join(
        f"{r['classifier']} + {r['loss']} ({r['stop_reason']} after {r['iterations']} "
        f"iterations, gap {r['gap']:.1e})"
        for r in bad
    )
    return f"not converged: {len(bad)} of {len(runs)} configurations: {rows}"


def run_simulation(
    cfg: SimulateConfig, *, echo: bool = True, command: list[str] | None = None
) -> tuple[Path, dict[str, Any]]:
    """Run every configuration, write the run folder (`command`: the argv recorded in run.json)
    and return (folder, summary)."""
    cfg.validate()
    profile = make_profile(
        cfg.profile,
        num_classes=cfg.classes,
        n_max=cfg.n_max,
        ratio=cfg.imbalance,
        num_minority=cfg.minority_classes,
    )
    cfg.counts = profile.counts.tolist()
    device = resolve_device(cfg.device)
    footprint = primal_footprint(profile.counts, cfg.dim, DTYPES[cfg.dtype])
    check_primal_fits(footprint, available_memory(device), dtype_name=cfg.dtype)
    if cfg.out:  # another run's results (a deep.train folder too) are never written over
        check_new_output_dir(cfg.out)
    run_dir = Path(cfg.out) if cfg.out else new_run_dir("runs/ufm")
    start_run(run_dir, "ufm", asdict(cfg), command=command)
    if echo:
        print(
            f"K={profile.num_classes} N={profile.total} counts {cfg.counts[0]}..."
            f"{cfg.counts[-1]} (ratio {profile.ratio:g}), d={cfg.dim}, solver={cfg.solver}, "
            f"device={device}, dtype={cfg.dtype}",
            flush=True,
        )
        if footprint.bytes > 2e9:
            print(f"  estimated: {footprint.describe()}", flush=True)
    start = time.perf_counter()
    runs, rows, geometry = [], [], {}
    for classifier in cfg.classifiers:
        for loss in cfg.losses:
            with torch_threads(cfg.threads):
                entry, hist, geo = run_configuration(
                    cfg, profile, classifier, loss, device, progress=echo
                )
            runs.append(entry)
            name = f"{classifier}+{loss}"
            if echo:  # a line per configuration: logs of long runs are never silent for long
                print(
                    f"  {name}: {entry['iterations']} iterations, {entry['seconds']:.1f} s, "
                    f"gap {entry['gap']:.2e}",
                    flush=True,
                )
            geometry |= {f"{name}.{key}": value for key, value in geo.items()}
            rows += [
                {
                    "configuration": name,
                    "iteration": int(i),
                    "seconds": f"{s:.6f}",
                    "objective": repr(float(f)),
                    "gap": repr(float(f - entry["lower_bound"])),
                }
                for i, s, f in zip(
                    hist["iteration"], hist["seconds"], hist["objective"], strict=True
                )
            ]
    write_history(run_dir, rows)
    write_geometry(run_dir, geometry)
    summary = {
        "counts": cfg.counts,
        "minority": profile.minority.tolist(),
        "config": asdict(cfg),
        "runs": runs,
        "converged": all(r["converged"] for r in runs),
        "seconds": time.perf_counter() - start,
        "version": code_version(),
    }
    write_summary(run_dir, summary)
    if echo:
        print(format_table(runs))
        print(f"wrote {run_dir} ({summary['seconds']:.1f} s)")
    if cfg.figures:  # drawn by the figures package, found through its entry point
        draw_figures(run_dir, echo=print if echo else None)
    return run_dir, summary


def _csv(values: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in values.split(",") if v.strip())


def parse_args(argv: list[str] | None) -> SimulateConfig:
    d = SimulateConfig()
    p = argparse.ArgumentParser(
        prog="python -m ufm.simulate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--imbalance", type=float, default=d.imbalance, help="n_max/n_min (exp) or n_A/n_B (step)"
    )
    p.add_argument("--classes", type=int, default=d.classes, help="number of classes K")
    p.add_argument("--n-max", type=int, default=d.n_max, help="samples of the largest class")
    p.add_argument(
        "--profile", choices=("exp", "step"), default=d.profile, help="class-count profile"
    )
    p.add_argument(
        "--minority-classes",
        type=int,
        default=None,
        help="step profile: number of minority classes (default K/2)",
    )
    p.add_argument("--dim", type=int, default=d.dim, help="feature dimension d")
    p.add_argument("--e-w", type=float, default=d.e_w, help="classifier energy E_W")
    p.add_argument("--e-h", type=float, default=d.e_h, help="feature energy E_H")
    p.add_argument("--losses", default=",".join(d.losses), help="comma list of ce, dr")
    p.add_argument(
        "--classifiers", default=",".join(d.classifiers), help="comma list of etf, learnable"
    )
    p.add_argument("--solver", default=d.solver, help=f"one of {', '.join(SOLVERS)}")
    p.add_argument("--seed", type=int, default=d.seed, help="random start and ETF rotation")
    p.add_argument(
        "--tol", type=float, default=d.tol, help="stop at objective - certified lower bound <= tol"
    )
    p.add_argument(
        "--grad-tol",
        type=float,
        default=d.grad_tol,
        help="stationarity: gradient-mapping norm to reach as well",
    )
    p.add_argument(
        "--max-iter", type=int, default=d.max_iter, help="iterations per configuration at most"
    )
    p.add_argument("--device", default=d.device, help="cpu, cuda, cuda:N or auto")
    p.add_argument("--dtype", default=d.dtype, choices=tuple(DTYPES), help="solver precision")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's; 1 is faster on a loaded machine)",
    )
    p.add_argument("--out", default=None, help="run folder (default runs/ufm/<timestamp>)")
    p.add_argument("--no-figures", action="store_true", help="do not draw the run's figures")
    a = vars(p.parse_args(argv))
    a["losses"], a["classifiers"] = _csv(a["losses"]), _csv(a["classifiers"])
    a["figures"] = not a.pop("no_figures")
    return SimulateConfig(**a)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    keep_freed_memory()  # the solvers allocate N x d temporaries every iteration
    command = ["python", "-m", "ufm.simulate", *(sys.argv[1:] if argv is None else argv)]
    try:
        _, summary = run_simulation(cfg, command=command)
    except (ValueError, RuntimeError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # files are atomic: a stopped run simply has no summary.json
        print(
            "\nufm.simulate: interrupted; the run folder has no summary.json (run it again "
            "with a new --out)",
            file=sys.stderr,
        )
        return 130
    line = not_converged_line(summary["runs"])
    if line:
        print(line, file=sys.stderr)
        return EXIT_NOT_CONVERGED
    return 0


if __name__ == "__main__":
    sys.exit(main())
