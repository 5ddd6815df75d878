"""The verdicts of a sweep: runs compared by `deep.compare`, summarised per (dataset, method, R)
over seeds, and turned into empirical statements that each PASS or FAIL with their numbers.

A statement is UNDECIDED where these runs cannot measure it (one ratio only, no certified
prediction). A difference counts when it exceeds the seed spread: TOL_SIGMAS sample standard
deviations, pooled over the groups compared, and at least TOL_FLOOR (a sweep of one or two
seeds has an uncertain standard deviation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "SWEEP_FIELDS",
    "TOL_FLOOR",
    "TOL_SIGMAS",
    "VERDICTS",
    "Verdict",
    "summarize_sweep",
    "verdicts",
]


# ----------------------------------------------------------------------------- a sweep


def _mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan, 0
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return float(np.mean(vals)), std, len(vals)


def _pred_value(run: dict[str, Any], name: str, part: str, key: str) -> float | None:
    pred = run["predictions"].get(name, {})
    return pred.get(part, {}).get(key) if pred.get("certified") else None


SWEEP_FIELDS: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "minority_cosine_w": lambda r: r["measured"]["minority_cosine_w"],
    "minority_cosine_h": lambda r: r["measured"]["minority_cosine_h"],
    "minority_cosine_h_uncentred": lambda r: r["measured"]["minority_cosine_h_uncentred"],
    "nc1": lambda r: r["measured"]["nc1"],
    "train_acc": lambda r: r["measured"]["train_acc"],
    "test_acc": lambda r: r["test_acc"],
    "norm_order": lambda r: r["measured"]["norm_order"],
    "e_w": lambda r: r["measured"]["e_w"],
    "e_h": lambda r: r["measured"]["e_h"],
    "lpm_minority_cosine_w": lambda r: _pred_value(r, "lpm", "w", "minority_predicted"),
    "lpm_minority_cosine_h": lambda r: _pred_value(r, "lpm", "h", "minority_predicted"),
    "seli_minority_cosine_w": lambda r: _pred_value(r, "seli", "w", "minority_predicted"),
    "lpm_error_w": lambda r: _pred_value(r, "lpm", "w", "mean_abs"),
    "lpm_error_h": lambda r: _pred_value(r, "lpm", "h", "mean_abs"),
    "seli_error_w": lambda r: _pred_value(r, "seli", "w", "mean_abs"),
    "seli_error_h": lambda r: _pred_value(r, "seli", "h", "mean_abs"),
    "etf_error_w": lambda r: _pred_value(r, "etf", "w", "mean_abs"),
    "etf_error_h": lambda r: _pred_value(r, "etf", "h", "mean_abs"),
    "hong_ling_ratio": lambda r: r["hong_ling"].get("ratio"),
}


def summarize_sweep(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, method, R): mean, sample std and n over seeds of SWEEP_FIELDS,
    and how many runs reached the terminal phase and had a certified LPM prediction."""
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["dataset"], run["method"], run["imbalance"]), []).append(run)
    rows = []
    for (dataset, method, ratio), members in sorted(groups.items()):
        row: dict[str, Any] = {"dataset": dataset, "method": method, "imbalance": ratio}
        row["num_classes"] = len(members[0]["counts"])
        row["seeds"] = sorted(r["seed"] for r in members)
        row["terminal"] = sum(r["measured"]["nc1_trajectory"]["reached"] for r in members)
        row["lpm_certified"] = sum(
            bool(r["predictions"].get("lpm", {}).get("certified")) for r in members
        )
        for name, get in SWEEP_FIELDS.items():
            row[name] = _mean_std([get(r) for r in members])
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- verdicts


@dataclass
class Verdict:
    """An empirical statement measured on a sweep: PASS, FAIL, or UNDECIDED (not measurable
    on these runs, e.g. no certified prediction or one imbalance ratio only), with its numbers."""

    name: str
    statement: str
    status: str
    numbers: str
    tolerance: str

    def as_dict(self) -> dict[str, str]:
        return dict(vars(self))


# A difference counts when it exceeds the seed spread: TOL_SIGMAS sample standard deviations
# (pooled over the groups compared) or TOL_FLOOR, whichever is larger. The floor covers sweeps
# with one or two seeds, whose standard deviation is itself uncertain.
TOL_SIGMAS = 3.0
TOL_FLOOR = 0.05


def _tol(*stds: float) -> float:
    finite = [s for s in stds if math.isfinite(s)]
    return max(TOL_SIGMAS * (max(finite) if finite else 0.0), TOL_FLOOR)


def _by_ratio(rows: Sequence[dict[str, Any]], method: str, dataset: str) -> list[dict[str, Any]]:
    return sorted(
        (r for r in rows if r["method"] == method and r["dataset"] == dataset),
        key=lambda r: r["imbalance"],
    )


def _undecided(name: str, statement: str, why: str) -> Verdict:
    return Verdict(name, statement, "UNDECIDED", why, "")


def _rises_with_r(rows, dataset) -> Verdict:
    name, statement = (
        "learnable_minority_rises",
        "learnable + CE: minority classifier cosine rises with R",
    )
    line = _by_ratio(rows, "linear+ce", dataset)
    if len(line) < 2:
        return _undecided(name, statement, "needs learnable + CE runs at two ratios")
    lo, hi = line[0]["minority_cosine_w"], line[-1]["minority_cosine_w"]
    tol = _tol(lo[1], hi[1])
    numbers = f"R={line[0]['imbalance']:g}: {lo[0]:+.3f}, R={line[-1]['imbalance']:g}: {hi[0]:+.3f}"
    return Verdict(name, statement, _status(hi[0] - lo[0] > tol), numbers, f"rise > {tol:.3f}")


def _learnable_collapse(rows, dataset) -> Verdict:
    name = "learnable_minority_collapses"
    statement = (
        "learnable + CE at the largest R: minority classifiers collapse (mean cosine >= 0.9)"
    )
    line = _by_ratio(rows, "linear+ce", dataset)
    if not line:
        return _undecided(name, statement, "no learnable + CE runs")
    value, std, n = line[-1]["minority_cosine_w"]
    numbers = f"R={line[-1]['imbalance']:g}: {value:+.3f} ± {std:.3f} (n={n})"
    return Verdict(name, statement, _status(value >= 0.9), numbers, "threshold 0.9")


def _etf_features(rows, dataset) -> Verdict:
    name = "etf_minority_means_stay"
    statement = "fixed ETF + DR: centred minority class means keep cosine -1/(K-1) at every R"
    line = _by_ratio(rows, "etf+dr", dataset)
    if not line:
        return _undecided(name, statement, "no fixed ETF + DR runs")
    target = -1.0 / (line[0]["num_classes"] - 1)
    tol = _tol(*[r["minority_cosine_h"][1] for r in line])
    worst = max(abs(r["minority_cosine_h"][0] - target) for r in line)
    parts = [f"R={r['imbalance']:g}: {r['minority_cosine_h'][0]:+.3f}" for r in line]
    numbers = ", ".join(parts) + f"; target {target:+.3f}, worst |diff| {worst:.3f}"
    return Verdict(name, statement, _status(worst <= tol), numbers, f"|diff| <= {tol:.3f}")


def _status(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _nc1_falls(runs, dataset) -> Verdict:
    name = "nc1_falls_in_terminal_phase"
    statement = "NC1 falls through the terminal phase (last evaluation below its first fitted one)"
    mine = [r for r in runs if r["dataset"] == dataset]
    phases = [(r["measured"]["nc1_trajectory"], r["measured"]["epoch"]) for r in mine]
    reached = [p for p, _ in phases if p["reached"]]
    past = [p for p, last in phases if p["reached"] and p["since_epoch"] < last]
    if not past:
        why = f"no run trained past its terminal start ({len(reached)}/{len(mine)} reached it)"
        return _undecided(name, statement, why)
    fell = [p for p in past if p["nc1_last"] < p["nc1_at_start"]]
    numbers = (
        f"{len(reached)}/{len(mine)} runs reached the terminal phase; NC1 fell in "
        f"{len(fell)}/{len(past)} that trained past its start"
    )
    return Verdict(name, statement, _status(len(fell) == len(past)), numbers, "every such run")


def _better_prediction(rows, dataset, first: str, second: str) -> Verdict:
    name = f"{first}_beats_{second}"
    statement = (
        f"learnable + CE at the largest R: the {first.upper()} prediction is closer to the "
        "measured "
        f"classifier cosines than the {second.upper()} one"
    )
    line = _by_ratio(rows, "linear+ce", dataset)
    if not line:
        return _undecided(name, statement, "no learnable + CE runs")
    row = line[-1]
    a, b = row[f"{first}_error_w"], row[f"{second}_error_w"]
    if a[2] == 0 or b[2] == 0:
        return _undecided(
            name, statement, f"no certified {first if a[2] == 0 else second} prediction"
        )
    tol = _tol(a[1], b[1])
    numbers = f"R={row['imbalance']:g}: mean |cos diff| {first} {a[0]:.3f}, {second} {b[0]:.3f}"
    return Verdict(name, statement, _status(a[0] < b[0] - tol), numbers, f"margin > {tol:.3f}")


def _minority_predicted(rows, dataset, name: str) -> Verdict:
    verdict = f"{name}_predicts_minority_cosine"
    statement = (
        f"learnable + CE at the largest R: the {name.upper()} prediction of the mean minority "
        "classifier cosine matches the measured one"
    )
    line = _by_ratio(rows, "linear+ce", dataset)
    if not line:
        return _undecided(verdict, statement, "no learnable + CE runs")
    row = line[-1]
    predicted, measured = row[f"{name}_minority_cosine_w"], row["minority_cosine_w"]
    if predicted[2] == 0:
        return _undecided(verdict, statement, f"no certified {name} prediction")
    tol = _tol(predicted[1], measured[1])
    diff = abs(predicted[0] - measured[0])
    numbers = (
        f"R={row['imbalance']:g}: predicted {predicted[0]:+.3f}, measured {measured[0]:+.3f}, "
        f"|diff| {diff:.3f}"
    )
    return Verdict(verdict, statement, _status(diff <= tol), numbers, f"|diff| <= {tol:.3f}")


def _hong_ling(runs, dataset) -> Verdict:
    name = "hong_ling_threshold"
    statement = (
        "regularized UFM with lambda from weight decay: minority collapse predicted (lambda >= "
        "sqrt(n_B)/N) exactly where the measured minority classifier cosine is >= 0.9"
    )
    mine = [r for r in runs if r["dataset"] == dataset and r["hong_ling"].get("applicable")]
    if not mine:
        return _undecided(name, statement, "no learnable run on a step profile")
    agree = [
        r for r in mine if r["hong_ling"]["collapse"] == (r["measured"]["minority_cosine_w"] >= 0.9)
    ]
    ratios = ", ".join(
        f"R={r['imbalance']:g}/s{r['seed']}: lambda/lambda* {r['hong_ling']['ratio']:.2f}"
        for r in mine
    )
    numbers = f"{len(agree)}/{len(mine)} agree; {ratios}"
    return Verdict(name, statement, _status(len(agree) == len(mine)), numbers, "every run")


VERDICTS = (
    "learnable_minority_rises",
    "learnable_minority_collapses",
    "etf_minority_means_stay",
    "nc1_falls_in_terminal_phase",
    "lpm_beats_etf",
    "seli_beats_etf",
    "lpm_predicts_minority_cosine",
    "seli_predicts_minority_cosine",
    "hong_ling_threshold",
)


def verdicts(
    runs: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]
) -> dict[str, list[Verdict]]:
    """Every verdict of VERDICTS, per dataset."""
    out = {}
    for dataset in sorted({r["dataset"] for r in runs}):
        out[dataset] = [
            _rises_with_r(rows, dataset),
            _learnable_collapse(rows, dataset),
            _etf_features(rows, dataset),
            _nc1_falls(runs, dataset),
            _better_prediction(rows, dataset, "lpm", "etf"),
            _better_prediction(rows, dataset, "seli", "etf"),
            _minority_predicted(rows, dataset, "lpm"),
            _minority_predicted(rows, dataset, "seli"),
            _hong_ling(runs, dataset),
        ]
    return out
