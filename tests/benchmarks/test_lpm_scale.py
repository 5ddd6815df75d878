"""benchmarks.lpm_scale at a tiny size: both solvers certify the same optimum, the rows and the
figure are written, and the extrapolation is a fit of what was measured."""

from __future__ import annotations

import json

import pytest

from benchmarks.lpm_scale import extrapolate, main


def test_tiny_run_writes_rows_and_figure(tmp_path) -> None:
    assert main(["--classes", "10", "30", "--full-max", "10", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [(r["classes"], r["solver"]) for r in rows] == [
        (10, "grouped"),
        (10, "full"),
        (30, "grouped"),
    ]
    assert all(r["certified"] and r["relative_gap"] <= 1e-8 for r in rows)
    assert rows[0]["value"] == pytest.approx(rows[1]["value"], abs=1e-9)
    assert (tmp_path / "cost_growth.png").stat().st_size > 1000


def test_extrapolation_follows_the_fitted_power() -> None:
    rows = [
        {"solver": "grouped", "groups": m, "seconds_per_iteration": 1e-9 * m**3}
        for m in (200, 400, 800)
    ]
    c, per_it = extrapolate(rows, 1000)
    assert c == pytest.approx(3.0, abs=1e-9)
    assert per_it == pytest.approx(1.0, rel=1e-9)
    assert extrapolate(rows[:1], 1000) is None
