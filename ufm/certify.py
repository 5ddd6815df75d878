"""`python -m ufm.certify`: the certified LPM optimum and its minority geometry for given class
counts, from the convex form alone (no primal solves, so no feature matrix of N x d).

    python -m ufm.certify --classes 1000 --n-max 1280 --imbalance 256      # ImageNet-LT size
    python -m ufm.certify --classes 8142 --n-max 1000 --imbalance 500 --tol 1e-6   # iNaturalist
    python -m ufm.certify --counts 500,500,50,50 --out runs/certify/mine
    python -m ufm.certify --counts-file counts.txt                           # one count a line

The LPM of Fang et al. (PNAS 2021) with budgets E_W, E_H is solved in its nuclear-norm form
(`ufm.convex.solve_lpm_convex`, grouped by equal counts) to a certified relative gap `--tol`.
Its optimum Z = W Hbar^T (K x K) gives the Grams of the classifier and of the class means for
any d >= K (Z = U S V^T: W W^T = sqrt(E_W/E_H) U S U^T, Hbar Hbar^T = sqrt(E_H/E_W) V S V^T),
computed here in the reduced coordinates (m x m, m = distinct counts). Reported: the optimum,
its lower bound and relative gap, the KKT multiplier mu = ||grad f(Z)||_op of the budget, and
over the minority group (`ufm.imbalance.minority_group`: the tail third, at least two classes,
or the minority classes of a step profile) the mean and max pairwise cosine of the classifier
rows w_k and of the class means centred at their mean, with the norm ratios head / tail.
`--out DIR` writes certificate.json (all of it) and geometry.npz (counts, norms, minority
indices) atomically.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ufm.convex import ConvexResult, solve_lpm_convex
from ufm.grouped import ClassGroups
from ufm.imbalance import ClassProfile, head_medium_tail, make_profile, minority_group
from ufm.io import atomic_write_bytes, atomic_write_json, check_output_dir, code_version
from ufm.losses import class_mean_cross_entropy
from ufm.metrics import centred_gram, gram_group_cosines
from ufm.problems import _check_counts, _check_positive
from ufm.runtime import keep_freed_memory, torch_threads

__all__ = ["certified_geometry", "certify", "main"]


def certified_geometry(
    res: ConvexResult, counts: np.ndarray, minority: np.ndarray, e_w: float, e_h: float
) -> dict[str, Any]:
    """Minority cosines and norms of the LPM optimum `res` (module docstring)."""
    groups = ClassGroups.from_counts(counts)
    q, a = groups.reduce(res.z)  # Z = U Q U^T + sum alpha_a (I_a - u_a u_a^T)
    size = torch.as_tensor(groups.sizes, dtype=q.dtype, device=q.device)
    alpha = torch.where(size > 1, a / torch.sqrt((size - 1).clamp_min(1)), 0.0)
    root_a = torch.sqrt(size - 1) * alpha.abs()  # |alpha| in the coordinates of the algebra
    balance = math.sqrt(e_w / e_h)
    u, s, vh = torch.linalg.svd(q)  # (Q Q^T)^{1/2} = U S U^T, (Q^T Q)^{1/2} = V S V^T
    gram_w = groups.expand((u * s) @ u.T, root_a) * balance  # (K, K) W W^T
    gram_h = groups.expand((vh.T * s) @ vh, root_a) / balance  # (K, K) Hbar Hbar^T
    gram_hc = centred_gram(gram_h)  # the class means centred at their mean
    norm_w = gram_w.diagonal().clamp_min(0).sqrt()
    norm_h = gram_hc.diagonal().clamp_min(0).sqrt()
    thirds = head_medium_tail(counts)
    out: dict[str, Any] = {}
    for name, gram in (("w", gram_w), ("h", gram_hc)):
        mean, top = gram_group_cosines(gram, minority)
        out[f"minority_cosine_{name}"] = mean
        out[f"minority_max_cosine_{name}"] = top
    for name, norm in (("w", norm_w), ("h", norm_h)):
        head, tail = (float(norm[thirds[g]].mean()) for g in ("head", "tail"))
        out[f"norm_ratio_{name}"] = head / tail if tail > 0 else math.inf
    out["norm_w"], out["norm_h"] = norm_w.cpu().numpy(), norm_h.cpu().numpy()
    return out


def _multiplier(res: ConvexResult, counts: np.ndarray) -> float:
    """mu = ||grad f(Z)||_op at the optimum, from the reduced gradient (m x m)."""
    n = torch.as_tensor(counts, dtype=res.z.dtype, device=res.z.device)
    _, grad = class_mean_cross_entropy(res.z.T, n / n.sum())
    groups = ClassGroups.from_counts(counts)
    g_q, g_a = groups.reduce(grad)
    size = torch.as_tensor(groups.sizes, dtype=g_q.dtype, device=g_q.device)
    alpha = torch.where(size > 1, g_a / torch.sqrt((size - 1).clamp_min(1)), 0.0)
    return max(float(torch.linalg.matrix_norm(g_q, ord=2)), float(alpha.abs().max()))


def certify(
    profile: ClassProfile,
    e_w: float = 1.0,
    e_h: float = 5.0,
    *,
    tol: float = 1e-8,
    max_seconds: float | None = None,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(report, arrays): the certified LPM optimum for `profile.counts` and its geometry."""
    counts = profile.counts
    start = time.perf_counter()
    res = solve_lpm_convex(counts, e_w, e_h, tol=tol, max_seconds=max_seconds, device=device)
    geometry = certified_geometry(res, counts, profile.minority, e_w, e_h)
    report = {
        "classes": len(counts),
        "samples": int(counts.sum()),
        "distinct_counts": ClassGroups.from_counts(counts).num_groups,
        "imbalance_ratio": profile.ratio,
        "e_w": e_w,
        "e_h": e_h,
        "optimum": res.value,
        "lower_bound": res.lower_bound,
        "relative_gap": res.relative_gap,
        "tol": tol,
        "multiplier": _multiplier(res, counts),
        "iterations": res.iterations,
        "solve_seconds": res.seconds,
        "minority": profile.minority.tolist(),
        **{k: v for k, v in geometry.items() if not isinstance(v, np.ndarray)},
    }
    report["seconds"] = time.perf_counter() - start
    arrays = {
        "counts": counts,
        "minority": profile.minority,
        "norm_w": geometry["norm_w"],
        "norm_h": geometry["norm_h"],
    }
    return report, arrays


def _read_counts(args: argparse.Namespace) -> np.ndarray | None:
    if args.counts is not None and args.counts_file is not None:
        raise ValueError("give --counts or --counts-file, not both")
    if args.counts is not None:
        text = args.counts.replace(",", " ")
    elif args.counts_file is not None:
        path = Path(args.counts_file)
        if not path.is_file():
            raise ValueError(f"--counts-file {path}: no such file")
        text = path.read_text()
    else:
        return None
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        raise ValueError("class counts must be integers >= 1, separated by commas") from None
    return _check_counts(values)


def _profile(args: argparse.Namespace) -> ClassProfile:
    counts = _read_counts(args)
    if counts is None:
        return make_profile(
            args.profile,
            num_classes=args.classes,
            n_max=args.n_max,
            ratio=args.imbalance,
            num_minority=args.minority_classes,
        )
    return ClassProfile(counts, minority_group(counts), "given")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ufm.certify",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--counts", default=None, help="class counts, comma separated")
    p.add_argument("--counts-file", default=None, help="file of class counts (whitespace)")
    p.add_argument("--profile", default="exp", choices=("exp", "step"), help="without --counts")
    p.add_argument("--classes", type=int, default=10, help="number of classes K")
    p.add_argument("--n-max", type=int, default=5000, help="samples of the largest class")
    p.add_argument("--imbalance", type=float, default=100.0, help="n_max / n_min")
    p.add_argument("--minority-classes", type=int, default=None, help="step: minority classes")
    p.add_argument("--e-w", type=float, default=1.0, help="classifier energy E_W")
    p.add_argument("--e-h", type=float, default=5.0, help="feature energy E_H")
    p.add_argument("--tol", type=float, default=1e-8, help="certified relative gap")
    p.add_argument("--max-seconds", type=float, default=None, help="give up after this long")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=1, help="torch threads (m x m work: 1 suits)")
    p.add_argument("--out", default=None, help="folder for certificate.json and geometry.npz")
    return p


def _check_args(args: argparse.Namespace) -> None:
    _check_positive(args.e_w, "--e-w")
    _check_positive(args.e_h, "--e-h")
    if not (math.isfinite(args.tol) and 0 < args.tol < 1):
        raise ValueError(f"--tol must be in (0, 1), got {args.tol!r}")
    if args.max_seconds is not None:
        _check_positive(args.max_seconds, "--max-seconds")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available here; use --device cpu")
    if args.out is not None:
        check_output_dir(args.out)


def _print(report: dict[str, Any]) -> None:
    print(
        f"LPM, K = {report['classes']} ({report['distinct_counts']} distinct counts), "
        f"N = {report['samples']}, rho = {report['imbalance_ratio']:g}, "
        f"E_W = {report['e_w']:g}, E_H = {report['e_h']:g}"
    )
    print(
        f"  optimum {report['optimum']:.12f}  lower bound {report['lower_bound']:.12f}  "
        f"relative gap {report['relative_gap']:.1e} (certified <= {report['tol']:g})"
    )
    print(
        f"  multiplier mu = {report['multiplier']:.6e}; {report['iterations']} iterations, "
        f"{report['solve_seconds']:.1f} s"
    )
    print(
        f"  minority ({len(report['minority'])} classes): cosine of classifiers mean "
        f"{report['minority_cosine_w']:+.6f} max {report['minority_max_cosine_w']:+.6f}; "
        f"of centred class means mean {report['minority_cosine_h']:+.6f} "
        f"max {report['minority_max_cosine_h']:+.6f}"
    )
    print(
        f"  norms head / tail: classifiers {report['norm_ratio_w']:.4f}, "
        f"centred class means {report['norm_ratio_h']:.4f}"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    keep_freed_memory()  # m x m temporaries every iteration (8 MB at iNaturalist's m = 999)
    try:
        _check_args(args)
        profile = _profile(args)
        with torch_threads(args.threads), torch.no_grad():
            report, arrays = certify(
                profile,
                args.e_w,
                args.e_h,
                tol=args.tol,
                max_seconds=args.max_seconds,
                device=args.device,
            )
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _print(report)
    if args.out is not None:
        out = Path(args.out)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(out / "geometry.npz", buf.getvalue())
        atomic_write_json(out / "certificate.json", {**report, "version": code_version()})
        print(f"  wrote {out / 'certificate.json'} and {out / 'geometry.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
