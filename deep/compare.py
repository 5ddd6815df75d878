"""Trained networks held against the layer-peeled prediction for their own class counts.

    python -m deep.compare runs/deep/<run> [runs/deep/<run> ...]
    python -m deep.compare runs/deep/collapse-fmnist            # every run folder inside
    python -m deep.compare RUNS ... --out runs/compare/mine --reference-norms 1,5

For each run (its last NC evaluation, `geometry.npz`): the predictions of `ufm.prediction`
for the run's own counts n_k,

- `lpm`: the LPM of Fang et al. (2021) at the run's measured E_W = (1/K) sum_k ||w_k||^2 and
  E_H = (1/K) sum_k (1/n_k) sum_i ||h_ki||^2 (its own class-averaged constraint), solved by the
  certified convex solver; only a certified geometry is reported as a prediction;
- `seli`: the max-margin limit (Thrampoulidis et al. 2022), a closed form;
- `etf`: the simplex ETF (Yang et al. 2022, Theorems 1-2), a closed form and the prediction of
  a fixed-ETF head;
- Hong & Ling's minority-collapse threshold lambda >= sqrt(n_B)/N, with lambda from the weight
  decay (`ufm.prediction.weight_decay_lambda` states the mapping).

Each prediction is compared with the measured cosines: of the classifier rows (a learnable head
only: a fixed head is the ETF by construction), of the class means centred at the mean of class
means (the main comparison: post-ReLU features share a large mean), and of the uncentred class
means. Several runs of one sweep (imbalance ratios, seeds) are summarised per
(dataset, method, R) with the seed spread, and `deep.verdicts` turns the sweep into statements
that each PASS or FAIL with their numbers. Everything goes to `--out` (comparison.json,
comparison.md), written atomically; `python -m figures <out>` draws it.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deep.rundir import GeometryError, load_geometry
from deep.verdicts import TOL_FLOOR, TOL_SIGMAS, summarize_sweep, verdicts
from ufm.io import atomic_write_json, atomic_write_text, check_output_dir
from ufm.metrics import gram_group_cosines
from ufm.prediction import (
    Prediction,
    compare_geometry,
    etf_prediction,
    hong_ling_prediction,
    lpm_prediction,
    seli_prediction,
    spearman,
    weight_decay_lambda,
)
from ufm.runfolder import RunFolderError, read_run, run_kind

__all__ = ["CompareError", "compare_run", "comparison_markdown", "main", "run_comparison"]


class CompareError(ValueError):
    """A run folder that cannot be compared (one message, exit status 2)."""


# ----------------------------------------------------------------------------- one run


def _read_run(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """(config, summary, geometry) of a deep.train run folder, read by `ufm.runfolder`."""
    try:
        run = read_run(path)
        if run.kind != "deep":
            raise CompareError(f"{path} is a {run.kind} run folder, not a deep.train one")
        if not run.finished:
            raise CompareError(f"{path} has no summary.json yet: the run has not finished an epoch")
        config, summary = run.config, run.summary
    except RunFolderError as exc:
        raise CompareError(str(exc)) from None
    geometry = load_geometry(path)
    counts = np.asarray(summary.get("counts", []), dtype=np.int64)
    k = len(counts)
    if geometry["cosine_w"].shape[-1] != k or len(geometry["counts"]) != k:
        raise CompareError(
            f"{path}: geometry.npz has K={geometry['cosine_w'].shape[-1]} classes but the run's "
            f"summary counts {k}; the folder mixes files of two runs"
        )
    if not np.array_equal(geometry["counts"], counts):
        raise CompareError(f"{path}: geometry.npz and summary.json disagree on the class counts")
    return config, summary, geometry


def _measured(geometry: dict[str, np.ndarray], summary: dict[str, Any]) -> dict[str, Any]:
    last = -1
    return {
        "epoch": int(geometry["epoch"][last]),
        "cosine_w": geometry["cosine_w"][last],
        "cosine_h": geometry["cosine_h"][last],
        "cosine_h_uncentred": geometry["cosine_h_uncentred"][last],
        "norm_w": geometry["norm_w"][last],
        "e_w": float(geometry["e_w"][last]),
        "e_h": float(geometry["e_h"][last]),
        "features_sq_norm": float(geometry["features_sq_norm"][last]),
        "train_acc": float(geometry["train_acc"][last]) if "train_acc" in geometry else None,
        "nc1": (summary.get("nc") or {}).get("nc1"),
        "nc1_trajectory": _nc1_trajectory(summary),
    }


def _nc1_trajectory(summary: dict[str, Any]) -> dict[str, Any]:
    phase = summary.get("terminal_phase") or {}
    return {
        "reached": bool(phase.get("reached")),
        "since_epoch": phase.get("since_epoch"),
        "nc1_at_start": phase.get("nc1_at_start"),
        "nc1_last": phase.get("nc1_last"),
    }


def _minority(config: dict[str, Any], summary: dict[str, Any], k: int) -> list[int]:
    """The minority group: on a step profile its K_B classes (the last ones, also at R = 1,
    where counts alone cannot tell them, so that a sweep compares one group at every R);
    otherwise the group the run measured (`summary.json`)."""
    data = config.get("data", {})
    if data.get("profile") == "step":
        k_b = data.get("num_minority") or k // 2
        return list(range(k - k_b, k))
    return [int(c) for c in summary.get("minority", [])]


def _predictions(
    head: str, counts: np.ndarray, measured: dict[str, Any], lpm_seconds: float
) -> list[Prediction]:
    k = len(counts)
    if head == "etf":
        return [etf_prediction(k), seli_prediction(counts)]
    return [
        lpm_prediction(counts, measured["e_w"], measured["e_h"], max_seconds=lpm_seconds),
        seli_prediction(counts),
        etf_prediction(k),
    ]


def _against(pred: Prediction, measured: dict[str, Any], minority: list[int], learnable: bool):
    out: dict[str, Any] = {"certified": pred.certified, "note": pred.note}
    out["certificate"] = {
        k: v for k, v in pred.certificate.items() if isinstance(v, int | float | bool | str)
    }
    if not pred.certified or pred.gram_h is None:
        return out  # never a number from an uncertified prediction
    if learnable:
        out["w"] = compare_geometry(measured["cosine_w"], pred.cosine_w, minority).as_dict()
        out["norm_order"] = spearman(pred.norm_w, measured["norm_w"])
    out["h"] = compare_geometry(measured["cosine_h"], pred.cosine_h, minority).as_dict()
    out["h_uncentred"] = compare_geometry(
        measured["cosine_h_uncentred"], pred.cosine_h_uncentred, minority
    ).as_dict()
    out["cosine_w"] = pred.cosine_w.tolist()
    out["cosine_h"] = pred.cosine_h.tolist()
    return out


def compare_run(path: str | Path, lpm_seconds: float = 60.0) -> dict[str, Any]:
    """Measured geometry of one run against every prediction for its counts (see module doc);
    the LPM solve gets at most `lpm_seconds` per attempt."""
    path = Path(path)
    config, summary, geometry = _read_run(path)
    counts = np.asarray(summary["counts"], dtype=np.int64)
    minority = _minority(config, summary, len(counts))
    if len(minority) < 2:
        raise CompareError(f"{path}: summary.json names no minority group of >= 2 classes")
    head = config["head"]["name"]
    measured = _measured(geometry, summary)
    learnable = head != "etf"
    preds = {
        p.name: _against(p, measured, minority, learnable)
        for p in _predictions(head, counts, measured, lpm_seconds)
    }
    wd = float(config["optim"]["weight_decay"])
    sq_w = measured["e_w"] * len(counts)  # ||W||_F^2
    hong_ling: dict[str, Any] = {"applicable": False}
    if learnable and wd > 0:
        lam = weight_decay_lambda(wd, sq_w, measured["features_sq_norm"])
        hong_ling = hong_ling_prediction(counts, lam["lambda"]) | lam
    return {
        "run": str(path),
        "dataset": summary.get("dataset", config["data"]["dataset"]),
        "method": f"{head}+{config['loss']['name']}",
        "head": head,
        "imbalance": float(config["data"]["imbalance"]),
        "seed": int(config["run"]["seed"]),
        "counts": counts.tolist(),
        "minority": minority,
        "test_acc": summary.get("last_test_acc"),
        "status": summary.get("status", "unknown"),  # "running": compared at its latest epoch
        "measured": {
            key: (value.tolist() if isinstance(value, np.ndarray) else value)
            for key, value in measured.items()
        }
        | {
            "minority_cosine_w": gram_group_cosines(measured["cosine_w"], minority)[0],
            "minority_cosine_h": gram_group_cosines(measured["cosine_h"], minority)[0],
            "minority_cosine_h_uncentred": gram_group_cosines(
                measured["cosine_h_uncentred"], minority
            )[0],
            # a fixed head's norms are equal by construction: their order is rounding
            "norm_order": spearman(counts, measured["norm_w"]) if learnable else None,
        },
        "predictions": preds,
        "hong_ling": hong_ling,
    }


# ----------------------------------------------------------------------------- the figure's lines


def prediction_lines(
    runs: Sequence[dict[str, Any]], reference: tuple[float, float], points: int = 13
) -> dict[str, Any]:
    """Predicted minority cosines (classifiers, centred class means) against R on a log grid,
    per dataset, for the figure: the LPM at the `reference` (E_W, E_H) (certified points only)
    and SELI. The LPM at each run's measured norms is in the runs and the sweep rows. The grid
    spans the sweep's ratios; counts follow the runs' step profile (K_A classes of n_A, K_B of
    floor(n_A / R)); `measured_norms` is the mean measured (E_W, E_H) of the learnable runs."""
    lines: dict[str, Any] = {}
    for dataset in sorted({r["dataset"] for r in runs}):
        mine = [r for r in runs if r["dataset"] == dataset]
        counts = np.asarray(mine[0]["counts"])
        n_a, k_b = int(counts.max()), len(mine[0]["minority"])
        k_a = len(counts) - k_b
        ratios = sorted({r["imbalance"] for r in mine})
        grid = np.unique(np.geomspace(ratios[0], ratios[-1], points).round(6))
        learn = [r for r in mine if r["head"] != "etf"]
        e_w = float(np.mean([r["measured"]["e_w"] for r in learn])) if learn else None
        e_h = float(np.mean([r["measured"]["e_h"] for r in learn])) if learn else None
        out: dict[str, Any] = {"ratio": grid.tolist(), "reference": list(reference)}
        out["measured_norms"] = [e_w, e_h]
        steps = list(_grid_counts(grid, n_a, k_a, k_b))
        out["lpm_reference"] = [_minority_pair(lpm_prediction(c, *reference), m) for c, m in steps]
        out["seli"] = [_minority_pair(seli_prediction(c), m) for c, m in steps]
        lines[dataset] = out
    return lines


def _grid_counts(grid: np.ndarray, n_a: int, k_a: int, k_b: int):
    for ratio in grid:
        n_b = max(int(np.floor(n_a / ratio + 1e-9)), 1)
        counts = np.array([n_a] * k_a + [n_b] * k_b)
        yield counts, list(range(k_a, k_a + k_b))


def _minority_pair(pred: Prediction, minority: list[int]) -> list[float | None]:
    if not pred.certified:
        return [None, None]
    return [gram_group_cosines(cos, minority)[0] for cos in (pred.cosine_w, pred.cosine_h)]


# ----------------------------------------------------------------------------- output


def _fmt(cell: tuple[float, float, int], digits: int = 3) -> str:
    mean, std, n = cell
    if n == 0:
        return "—"
    return f"{mean:+.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:+.{digits}f}"


def comparison_markdown(result: dict[str, Any]) -> str:
    """The per-run table, the sweep table and the verdicts as Markdown."""
    lines = ["# Trained networks against the layer-peeled prediction", ""]
    lines += [
        "Class means are centred at the mean of class means (`h`), or taken as they are "
        "(`h uncentred`); the LPM is solved at each run's measured E_W and E_H (class-averaged, "
        "the LPM's own constraint); a prediction whose geometry is not certified is shown as —.",
        "",
        "| run | R | seed | train acc | NC1 | min. cos W | min. cos h | LPM W | LPM h | SELI W | "
        "err LPM W | err SELI W | err ETF W | err ETF h | λ/λ* |",
        "| --- " * 15 + "|",
    ]
    for run in result["runs"]:
        m, p = run["measured"], run["predictions"]
        lpm = p.get("lpm", {})

        def cell(pred: dict[str, Any], part: str, key: str) -> str:
            value = pred.get(part, {}).get(key) if pred.get("certified") else None
            return "—" if value is None else f"{value:+.3f}"

        ratio = run["hong_ling"].get("ratio")
        lines.append(
            "| "
            + " | ".join(
                [
                    Path(run["run"]).name
                    + ("" if run["status"] == "finished" else " (unfinished)"),
                    f"{run['imbalance']:g}",
                    str(run["seed"]),
                    f"{100 * m['train_acc']:.1f}" if m["train_acc"] is not None else "—",
                    f"{m['nc1']:.3g}" if m["nc1"] is not None else "—",
                    f"{m['minority_cosine_w']:+.3f}",
                    f"{m['minority_cosine_h']:+.3f}",
                    cell(lpm, "w", "minority_predicted"),
                    cell(lpm, "h", "minority_predicted"),
                    cell(p.get("seli", {}), "w", "minority_predicted"),
                    cell(lpm, "w", "mean_abs"),
                    cell(p.get("seli", {}), "w", "mean_abs"),
                    cell(p.get("etf", {}), "w", "mean_abs"),
                    cell(p.get("etf", {}), "h", "mean_abs"),
                    "—" if ratio is None else f"{ratio:.2g}",
                ]
            )
            + " |"
        )
    lines += ["", "## Per imbalance ratio (mean ± sample std over seeds)", ""]
    lines += [
        "| dataset | method | R | seeds | terminal | min. cos W | min. cos h "
        "| min. cos h uncentred "
        "| NC1 | test acc | ρ(‖w_k‖, n_k) | LPM min. cos W | LPM certified |",
        "| --- " * 13 + "|",
    ]
    for row in result["sweep"]:
        lines.append(
            f"| {row['dataset']} | {row['method']} | {row['imbalance']:g} | {len(row['seeds'])} | "
            f"{row['terminal']}/{len(row['seeds'])} | {_fmt(row['minority_cosine_w'])} | "
            f"{_fmt(row['minority_cosine_h'])} | {_fmt(row['minority_cosine_h_uncentred'])} | "
            f"{_fmt(row['nc1'])} | {_fmt(row['test_acc'])} | {_fmt(row['norm_order'], 2)} | "
            f"{_fmt(row['lpm_minority_cosine_w'])} | "
            f"{row['lpm_certified']}/{len(row['seeds'])} |"
        )
    lines += ["", "## Verdicts", ""]
    lines += [f"Tolerances: {TOL_SIGMAS:g} seed standard deviations, at least {TOL_FLOOR:g}.", ""]
    lines += ["| dataset | verdict | status | numbers | tolerance |", "| --- " * 5 + "|"]
    for dataset, items in result["verdicts"].items():
        for v in items:
            lines.append(
                f"| {dataset} | {v['statement']} | **{v['status']}** | {v['numbers']} | "
                f"{v['tolerance']} |"
            )
    return "\n".join(lines) + "\n"


def expand_runs(paths: Sequence[Path]) -> list[Path]:
    """Run folders named, or found one level inside a named folder (a deep.table root)."""
    found: list[Path] = []
    for path in paths:
        if _kind(path) is not None:
            found.append(path)
        elif path.is_dir():
            inner = sorted(p for p in path.iterdir() if _kind(p) == "deep")
            if not inner:
                raise CompareError(f"{path} is neither a run folder nor a folder of run folders")
            found += inner
        else:
            raise CompareError(f"{path} does not exist")
    return found


def _kind(path: Path) -> str | None:
    """The kind of run folder `path` is (`ufm.runfolder.run_kind`), None if it is none."""
    try:
        return run_kind(path)
    except RunFolderError:
        return None


def _default_out(runs: Sequence[Path]) -> Path:
    parents = {p.resolve().parent for p in runs}
    if len(parents) == 1:
        return parents.pop() / "comparison"
    return Path("runs") / "compare" / f"deep-ufm-{time.strftime('%Y%m%d-%H%M%S')}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m deep.compare",
        description="Hold deep.train runs against the layer-peeled predictions for their own "
        "class counts (LPM at the measured norms, SELI, ETF, Hong & Ling's threshold); several "
        "runs of a sweep also get the per-ratio summary and the verdicts.",
    )
    p.add_argument("runs", nargs="+", type=Path, help="run folders, or folders of run folders")
    p.add_argument("--out", type=Path, help="output folder (default: <parent>/comparison)")
    p.add_argument(
        "--reference-norms",
        default="1,5",
        help="E_W,E_H of the reference LPM line of the figure (default 1,5: Fang et al.)",
    )
    p.add_argument(
        "--lpm-seconds",
        type=float,
        default=60.0,
        help="time limit of each LPM solve attempt [s] (default 60); a solve that does not "
        "certify within it gives no LPM prediction for that run",
    )
    return p


def _norms(text: str) -> tuple[float, float]:
    try:
        e_w, e_h = (float(v) for v in text.split(","))
    except ValueError:
        raise CompareError(f"--reference-norms needs E_W,E_H such as 1,5, got {text!r}") from None
    if not (e_w > 0 and e_h > 0 and math.isfinite(e_w * e_h)):
        raise CompareError(f"--reference-norms must be finite and > 0, got {text!r}")
    return e_w, e_h


def run_comparison(
    paths: Sequence[Path], reference: tuple[float, float], lpm_seconds: float = 60.0
) -> dict[str, Any]:
    """compare_run on every run, the sweep summary, the verdicts and the figure's lines."""
    runs = [compare_run(p, lpm_seconds) for p in paths]
    rows = summarize_sweep(runs)
    return {
        "kind": "deep-compare",
        "runs": runs,
        "sweep": rows,
        "verdicts": {d: [v.as_dict() for v in vs] for d, vs in verdicts(runs, rows).items()},
        "lines": prediction_lines(runs, reference),
        "tolerance": {"sigmas": TOL_SIGMAS, "floor": TOL_FLOOR},
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        reference = _norms(args.reference_norms)
        paths = expand_runs(args.runs)
        out = args.out or _default_out(paths)
        check_output_dir(out)
        started = time.perf_counter()
        if not (args.lpm_seconds > 0 and math.isfinite(args.lpm_seconds)):
            raise CompareError(f"--lpm-seconds must be a finite number > 0, got {args.lpm_seconds}")
        result = run_comparison(paths, reference, args.lpm_seconds)
    except (CompareError, GeometryError, ValueError) as exc:
        print(f"deep.compare: error: {exc}", file=sys.stderr)
        return 2
    result["seconds"] = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "comparison.json", result)
    text = comparison_markdown(result)
    atomic_write_text(out / "comparison.md", text)
    print(text, end="")
    print(
        f"deep.compare: {len(paths)} runs in {result['seconds']:.1f} s; "
        f"wrote {out}/comparison.json, comparison.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
