"""The results of a table (`python -m deep.table`): the state of every cell's run folder, read
through `ufm.runfolder.read_run`, and the tables made of the finished ones.

ROOT gets results.md and results.csv (per dataset, imbalance and method: the mean and sample
standard deviation over the n finished seeds of the last epoch's overall, head, medium and
tail accuracy, NC1 and minority cosines) and runs.csv (one row per cell); cells without a
finished run are listed as missing. A folder that holds a run of another configuration is
neither resumed nor counted.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from deep.config import Config, config_from_dict, flatten
from deep.methods import METHODS
from deep.table_plan import Cell, Plan
from ufm.io import atomic_write_text
from ufm.runfolder import RunFolderError, read_run

__all__ = [
    "METRICS",
    "Record",
    "aggregate",
    "inspect_cell",
    "mean_std",
    "results_csv",
    "results_markdown",
    "runs_csv",
    "write_results",
]

# Config keys that say where and how a run executes, not what it computes.
_PLACE_KEYS = {
    "run.out",
    "run.progress",
    "run.device",
    "run.threads",
    "run.compile",
    "run.eval_batch_size",
    "run.channels_last",
    "run.save_every",
    "data.root",
    "data.download",
    "data.verify",
}


@dataclass
class Record:
    """What the folder of a cell holds."""

    cell: Cell
    status: str  # finished, incomplete, missing or conflict
    summary: dict[str, Any] | None = None
    note: str = ""


def inspect_cell(plan: Plan, cell: Cell) -> Record:
    """The state of `cell`'s folder (read by `ufm.runfolder.read_run`), checked against the
    configuration the cell asks for."""
    folder = plan.folder(cell)
    if not folder.config.is_file():
        if folder.path.is_dir() and any(folder.path.iterdir()):
            return Record(cell, "conflict", note="not a run folder (no config.yaml)")
        return Record(cell, "missing", note="not started")
    try:
        run = read_run(folder.path)
        difference = _config_difference(plan.expected_config(cell), run.config)
    except RunFolderError as exc:
        difference = f"unreadable run folder ({exc})"
    if difference:
        return Record(cell, "conflict", note=difference)
    try:
        summary = run.summary
    except RunFolderError:
        return Record(cell, "incomplete", note="no epoch finished")
    if summary.get("status") != "finished":
        note = f"{summary.get('epochs_done')} of {summary.get('epochs')} epochs"
        return Record(cell, "incomplete", summary, note)
    return Record(cell, "finished", summary)


def _config_difference(expected: Config, stored_tree: dict[str, Any]) -> str | None:
    """The first setting (outside _PLACE_KEYS) where the stored config differs, or None."""
    try:
        stored = flatten(dataclasses.asdict(config_from_dict(stored_tree)))
    except ValueError as exc:
        return f"unreadable config.yaml ({exc})"
    wanted = flatten(dataclasses.asdict(expected))
    for key in sorted(set(wanted) | set(stored)):
        if key not in _PLACE_KEYS and wanted.get(key) != stored.get(key):
            have, want = stored.get(key), wanted.get(key)
            return f"holds another configuration ({key}: {have!r}, wanted {want!r})"
    return None


# Table columns: name -> (heading, value read from summary.json, kind of number).
METRICS: dict[str, tuple[str, Callable[[dict], Any], str]] = {
    "overall": ("overall", lambda s: s.get("last_test_acc"), "acc"),
    "head": ("head", lambda s: s.get("group_acc", {}).get("head"), "acc"),
    "medium": ("medium", lambda s: s.get("group_acc", {}).get("medium"), "acc"),
    "tail": ("tail", lambda s: s.get("group_acc", {}).get("tail"), "acc"),
    "nc1": ("NC1", lambda s: s.get("nc", {}).get("nc1"), "nc1"),
    "minority_cos_w": ("min. cos W", lambda s: s.get("nc", {}).get("minority_cosine_w"), "cos"),
    "minority_cos_h": ("min. cos H", lambda s: s.get("nc", {}).get("minority_cosine_h"), "cos"),
    # The papers' splits by absolute count: > 100, 20-100, < 20 training images.
    "many_shot": ("many", lambda s: s.get("group_acc", {}).get("many_shot"), "acc"),
    "medium_shot": ("med.-shot", lambda s: s.get("group_acc", {}).get("medium_shot"), "acc"),
    "few_shot": ("few", lambda s: s.get("group_acc", {}).get("few_shot"), "acc"),
}


def _value(summary: dict, metric: str) -> float:
    value = METRICS[metric][1](summary)
    return float(value) if isinstance(value, int | float) else math.nan


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (n - 1; NaN below 2 values) and n of the finite values."""
    finite = [v for v in values if math.isfinite(v)]
    n = len(finite)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(finite) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else math.nan
    return mean, std, n


def aggregate(plan: Plan, records: Sequence[Record]) -> list[dict[str, Any]]:
    """One row per (dataset, imbalance, method), in the plan's order, over finished runs."""
    rows = []
    for dataset in plan.datasets:
        for rho in plan.imbalances:
            for method in plan.methods:
                group = [r for r in records if r.cell.group == (dataset, rho, method)]
                rows.append(_row(dataset, rho, method, group))
    return rows


def _row(dataset: str, rho: float, method: str, group: Sequence[Record]) -> dict[str, Any]:
    done = [r for r in group if r.status == "finished"]
    spec = METHODS.get(method)
    row: dict[str, Any] = {
        "dataset": dataset,
        "imbalance": rho,
        "method": method,
        "head": spec.head,
        "loss": spec.loss,
        "options": json.dumps(dict(spec.options), sort_keys=True),
        "n": len(done),
        "n_expected": len(group),
        "seeds": " ".join(str(r.cell.seed) for r in done),
    }
    for metric in METRICS:
        mean, std, _ = mean_std([_value(r.summary or {}, metric) for r in done])
        row[f"{metric}_mean"], row[f"{metric}_std"] = mean, std
    return row


def _cell_text(row: dict[str, Any], metric: str) -> str:
    mean, std, kind = row[f"{metric}_mean"], row[f"{metric}_std"], METRICS[metric][2]
    if not math.isfinite(mean):
        return "–"
    if kind == "acc":
        text, spread = f"{100 * mean:.1f}", f"{100 * std:.1f}"
    elif kind == "nc1":
        text, spread = f"{mean:.3g}", f"{std:.2g}"
    else:
        text, spread = f"{mean:+.3f}", f"{std:.3f}"
    return f"{text} ± {spread}" if math.isfinite(std) else text


def results_markdown(
    plan: Plan, rows: Sequence[dict[str, Any]], records: Sequence[Record], command: str
) -> str:
    """results.md: one table per dataset and imbalance, the missing cells, the methods."""
    seeds = ", ".join(map(str, plan.seeds))
    lines = [
        "# Long-tailed classification: results",
        "",
        f"Preset `{plan.preset}`, seeds {seeds}. Each entry is the mean ± sample standard "
        "deviation (n - 1) over the n finished seeds, at the last epoch. Accuracies (%) are "
        "top-1 on the balanced test set; head / medium / tail average the classes of each third "
        "by training count. NC1 = tr(Σ_W Σ_B⁺)/K of the training features; min. cos: mean "
        "pairwise cosine of the minority classes' classifier vectors (W) and centred class "
        "means (H), -1/(K-1) for a simplex ETF.",
        "",
        f"    {command}",
    ]
    headings = [METRICS[m][0] for m in METRICS]
    for dataset in plan.datasets:
        for rho in plan.imbalances:
            lines += ["", f"## {dataset}, imbalance {rho:g}", ""]
            lines += [_md_row(["method", "n", *headings]), _md_row(["---"] * (2 + len(headings)))]
            for row in rows:
                if (row["dataset"], row["imbalance"]) == (dataset, rho):
                    n = f"{row['n']}/{row['n_expected']}"
                    lines.append(
                        _md_row([row["method"], n, *(_cell_text(row, m) for m in METRICS)])
                    )
    lines += ["", *_missing_section(plan, records), "", *_methods_section(plan)]
    return "\n".join(lines) + "\n"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _missing_section(plan: Plan, records: Sequence[Record]) -> list[str]:
    missing = [r for r in records if r.status != "finished"]
    if not missing:
        return ["## Missing runs", "", f"None: all {len(records)} runs finished."]
    lines = ["## Missing runs", "", f"{len(missing)} of {len(records)} runs have not finished:", ""]
    for r in missing:
        lines.append(f"- `{r.cell.name}`: {r.status}, {r.note}")
    return lines


def _methods_section(plan: Plan) -> list[str]:
    lines = ["## Methods", "", _md_row(["method", "head", "loss", "options", "reference"])]
    lines.append(_md_row(["---"] * 5))
    for name in plan.methods:
        m = METHODS.get(name)
        options = ", ".join(f"{k}={v:g}" for k, v in m.options.items()) or "defaults"
        lines.append(_md_row([name, m.head, m.loss, options, m.reference]))
    return lines


def results_csv(rows: Sequence[dict[str, Any]]) -> str:
    """results.csv: the rows of `aggregate`, NaN written as an empty field."""
    return _csv(rows)


def runs_csv(records: Sequence[Record]) -> str:
    """runs.csv: every cell, its status and, when it has one, its last epoch's numbers."""
    rows = []
    for r in records:
        summary = r.summary or {}
        row = {**dataclasses.asdict(r.cell), "status": r.status, "note": r.note}
        row["epochs_done"], row["epochs"] = summary.get("epochs_done"), summary.get("epochs")
        row |= {m: _value(summary, m) for m in METRICS}
        row["seconds"] = summary.get("seconds")
        row["code_version"] = summary.get("environment", {}).get("code_version")
        rows.append(row)
    return _csv(rows)


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return out.getvalue()


def _csv_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return value


def write_results(plan: Plan, records: Sequence[Record], command: str) -> str:
    """Write results.md, results.csv and runs.csv under the plan's root; returns results.md."""
    rows = aggregate(plan, records)
    text = results_markdown(plan, rows, records, command)
    plan.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan.root / "results.md", text)
    atomic_write_text(plan.root / "results.csv", results_csv(rows))
    atomic_write_text(plan.root / "runs.csv", runs_csv(records))
    return text
