"""The cost-growth figure: the fitted exponent recovers a known power law; the figure is drawn."""

from __future__ import annotations

import pytest

from figures.cost_growth import draw_cost_growth, fitted_exponent


def _rows() -> list[dict]:
    rows = []
    for k in (10, 100, 300, 1000):
        rows.append(
            dict(
                classes=k,
                solver="grouped",
                seconds=1e-4 * k**2.0,
                iterations=k,
                certified=True,
                profile="exp",
            )
        )
        rows.append(
            dict(
                classes=k,
                solver="full",
                seconds=1e-5 * k**3.0,
                iterations=k,
                certified=k < 1000,
                profile="exp",
            )
        )
    return rows


def test_fitted_exponent_recovers_the_power() -> None:
    rows = _rows()
    assert fitted_exponent(rows, "grouped") == pytest.approx(2.0, abs=1e-9)
    assert fitted_exponent(rows, "full") == pytest.approx(3.0, abs=1e-9)  # certified rows only
    assert fitted_exponent(rows, "full", k_min=300) is None  # one certified point left


def test_figure_is_written(tmp_path) -> None:
    paths = draw_cost_growth(_rows(), tmp_path)
    assert [p.name for p in paths] == ["cost_growth.png", "cost_growth.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    with pytest.raises(ValueError, match="no benchmark rows"):
        draw_cost_growth([], tmp_path)


def test_precisions_are_separate_series() -> None:
    rows = [
        {"classes": k, "solver": "grouped", "precision": p, "profile": "exp", "certified": True,
         "seconds": c * k**e, "iterations": 10}
        for p, c, e in (("float32", 1e-3, 2.0), ("float64", 2e-3, 2.5))
        for k in (100, 300, 1000)
    ]
    assert fitted_exponent(rows, "grouped", precision="float32") == pytest.approx(2.0, abs=1e-9)
    assert fitted_exponent(rows, "grouped", precision="float64") == pytest.approx(2.5, abs=1e-9)
