"""The GPU check's results folder: results.json, and results.md drawn from it part by part.

`Results` rewrites both files whole (atomically) after every part, so a check cut off still
leaves what finished; `results_markdown` renders the dict of results.json as Markdown, one
section per part of `benchmarks._gpu_parts.PARTS`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._gpu_parts import PARTS
from ufm.io import atomic_write_json, atomic_write_text

__all__ = ["Results", "results_markdown"]


class Results:
    """results.json and results.md in the results folder, rewritten whole after every part."""

    def __init__(self, folder: Path, header: dict[str, Any]) -> None:
        self.folder = folder
        self.data: dict[str, Any] = header | {"parts": {}}

    def part(self, name: str, value: dict[str, Any]) -> None:
        self.data["parts"][name] = value
        self.write()

    def write(self) -> None:
        atomic_write_json(self.folder / "results.json", self.data)
        atomic_write_text(self.folder / "results.md", results_markdown(self.data))


def results_markdown(results: dict[str, Any]) -> str:
    """The results as Markdown: a line on the machine, then one section per part."""
    dev = results["device"]
    lines = [
        f"# GPU check, {results['started']}{' (--tiny)' if results['tiny'] else ''}",
        "",
        f"{dev['name']}, torch {dev['torch']}, CUDA {dev['cuda']}, python {dev['python']}; "
        f"budget {results['budget_s']:g} s; code {results['version'].get('commit', '?')}",
        f"`{results['command']}`",
    ]
    if not results.get("finished"):
        lines.append("**Not finished**: still running, or stopped before its end.")
    parts = results["parts"]
    for name in PARTS:
        if name in parts:
            part = parts[name]
            lines += ["", f"## {name}: {part['status']}", ""]
            lines += _SECTIONS[name](part) if _DATA_KEY[name] in part else [part.get("note", "")]
    return "\n".join(lines) + "\n"


def _tests_md(part: dict[str, Any]) -> list[str]:
    counts = ", ".join(f"{part.get(k, 0)} {k}" for k in ("passed", "failed", "errors", "skipped"))
    return [f"`{part['command']}`: {counts}, {part['seconds']:.1f} s (log: tests.log)"]


def _throughput_md(part: dict[str, Any]) -> list[str]:
    lines = [
        part.get("setting", ""),
        "",
        "| precision | compile | pipeline img/s | raw step img/s | pipeline / raw | warm-up s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in part["rows"]:
        if "error" in r:
            lines.append(f"| {r['precision']} | {r['compile']} | error: {r['error']} | | | |")
            continue
        lines.append(
            f"| {r['precision']} | {r['compile']} | {r['pipeline']:.0f} | {r['raw']:.0f} | "
            f"{r['ratio']:.3f} | {r['warmup_s']:.1f} |"
        )
    return lines


def _runs_md(part: dict[str, Any]) -> list[str]:
    lines = [
        "| run | status | epochs | wall s | train s | img/s | top-1 | head | medium | tail | NC1 | "
        "ETF dist. | min. cos W | min. cos H |",
        "| --- " * 14 + "|",
    ]
    for r in part["runs"]:
        nc = r.get("nc") or {}
        cells = [
            r["name"],
            r["status"],
            f"{r.get('epochs_done', 0)}/{r.get('epochs', '?')}",
            _fmt(r.get("wall_s"), ".0f"),
            _fmt(r.get("train_seconds"), ".0f"),
            _fmt(r.get("images_per_second"), ".0f"),
            *(_fmt(_percent(r.get(k)), ".1f") for k in ("test_acc", "head", "medium", "tail")),
            _fmt(nc.get("nc1"), ".3g"),
            _fmt(nc.get("etf_distance"), ".3f"),
            _fmt(nc.get("minority_cosine_w"), "+.3f"),
            _fmt(nc.get("minority_cosine_h"), "+.3f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"- {r['name']}: {r['log_tail'][-1]}" for r in part["runs"] if r.get("log_tail")]
    return [*lines, part.get("note", "")]


def _percent(x: float | None) -> float | None:
    return None if x is None else 100 * x


def _fmt(x: float | None, spec: str) -> str:
    return "" if x is None else format(x, spec)


def _lpm_md(part: dict[str, Any]) -> list[str]:
    lines = [
        f"`{part['command']}` ({part['note']})",
        "",
        "| K | groups | solver | precision | device | certified | seconds | iterations "
        "| relative gap | value |",
        "| --- " * 10 + "|",
    ]
    for r in part["rows"]:
        value = "" if r.get("value") is None else f"{r['value']:.10f}"
        lines.append(
            f"| {r['classes']} | {r['groups']} | {r['solver']} | {r.get('precision', 'float64')} "
            f"| {r['device']} | "
            f"{r['certified']} | {r['seconds']:.2f} | {r['iterations']} | "
            f"{r['relative_gap']:.1e} | {value} |"
        )
    return lines


_SECTIONS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "tests": _tests_md,
    "throughput": _throughput_md,
    "paper": _runs_md,
    "sweep": _runs_md,
    "lpm": _lpm_md,
}
_DATA_KEY = {
    "tests": "command",
    "throughput": "rows",
    "paper": "runs",
    "sweep": "runs",
    "lpm": "rows",
}
