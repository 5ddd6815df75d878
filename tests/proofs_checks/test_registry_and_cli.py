"""The registry's records and the command line: table, --only, --json, --list, exit status."""

from __future__ import annotations

import json
import math

import pytest
import torch

from proofs_checks import __main__ as cli
from proofs_checks.registry import (
    CHECK_MODULES,
    CHECKS,
    Check,
    CheckResult,
    Measurement,
    all_checks,
    get_check,
    register,
)
from ufm.runtime import torch_threads

JSON_KEYS = {
    "name",
    "source",
    "status",
    "passed",
    "max_error",
    "tolerance",
    "seconds",
    "details",
}


def test_every_module_registers_one_check_in_order() -> None:
    checks = all_checks()
    assert [c.function.__module__ for c in checks] == [f"proofs_checks.{m}" for m in CHECK_MODULES]
    assert len(checks) == 12
    for c in checks:
        assert c.statement and "\n" not in c.statement and len(c.statement) <= 100
        assert c.source and callable(c.function)


def test_registering_a_name_twice_is_refused() -> None:
    all_checks()
    with pytest.raises(ValueError, match="registered already"):
        register("theorem1", statement="s", source="s")(lambda size: None)


def test_unknown_check_and_size_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown check 'nope'"):
        get_check("nope")
    with pytest.raises(ValueError, match="size"):
        get_check("etf_geometry").run("huge")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "bound", "relation", "holds"),
    [
        (1e-13, 1e-12, "<=", True),
        (1e-11, 1e-12, "<=", False),
        (math.nan, 1.0, "<=", False),
        (0.5, 1e-3, ">=", True),
        (1e-4, 1e-3, ">=", False),
        (math.nan, 1e-3, ">=", False),
    ],
)
def test_measurement_relations(value: float, bound: float, relation: str, holds: bool) -> None:
    m = Measurement("m", value, bound, relation)
    assert m.holds is holds
    assert (m.usage <= 1) is holds


def test_measurement_rejects_bad_bounds_and_relations() -> None:
    with pytest.raises(ValueError, match="bound"):
        Measurement("m", 1.0, 0.0)
    with pytest.raises(ValueError, match="relation"):
        Measurement("m", 1.0, 1.0, "<")


def test_result_headline_is_the_most_used_tolerance() -> None:
    result = CheckResult.from_measurements(
        [
            Measurement("small", 1e-14, 1e-12),
            Measurement("close", 9e-7, 1e-6),
            Measurement("margin", 1e-5, 1e-3, ">="),
        ]
    )
    assert not result.passed
    assert (result.max_error, result.tolerance) == (9e-7, 1e-6)
    assert result.details["headline"] == "close" and result.details["failed"] == ["margin"]
    with pytest.raises(ValueError, match="at least one"):
        CheckResult.from_measurements([Measurement("margin", 1.0, 1e-3, ">=")])


def test_a_check_that_raises_is_an_error_not_a_failure() -> None:
    def broken(size: str) -> CheckResult:
        raise TypeError("unsupported operand type(s)")

    report = Check("broken", "s", "src", broken).run("small")
    assert report.status == "ERROR" and report.result.status == "ERROR"
    assert not report.result.passed and math.isinf(report.result.max_error)
    assert report.result.error == "TypeError: unsupported operand type(s)"
    assert "unsupported operand" in report.result.details["traceback"]
    row = report.as_dict()
    assert row["status"] == "ERROR" and row["passed"] is False
    assert row["max_error"] == "inf" and row["tolerance"] == "nan"
    json.dumps(row, allow_nan=False)
    failing = CheckResult.from_measurements([Measurement("error", 1.0, 1e-12)])
    passing = CheckResult.from_measurements([Measurement("error", 0.0, 1e-12)])
    assert (failing.status, passing.status) == ("FAIL", "PASS")
    assert failing.error is None


def test_an_error_is_shown_as_error_with_its_last_traceback_line(
    monkeypatch, tmp_path, capsys
) -> None:
    def broken(size: str) -> CheckResult:
        return {}["missing"]  # a KeyError inside the check

    def failing(size: str) -> CheckResult:
        return CheckResult.from_measurements([Measurement("error", 1.0, 1e-12)])

    monkeypatch.setitem(CHECKS, "broken", Check("broken", "s", "src", broken))
    monkeypatch.setitem(CHECKS, "fails", Check("fails", "s", "src", failing))
    path = tmp_path / "out.json"
    assert cli.main(["--only", "broken,etf_geometry", "--size", "small", "--json", str(path)]) == 3
    out = capsys.readouterr().out
    assert "ERROR" in out and "broken: KeyError: 'missing'" in out
    assert "1 error" in out
    rows = {r["name"]: r for r in json.loads(path.read_text())}
    assert rows["broken"]["status"] == "ERROR" and rows["etf_geometry"]["status"] == "PASS"
    # An error outranks a failure in the exit status; a failure alone is 1.
    assert cli.main(["--only", "broken,fails", "--size", "small"]) == 3
    assert cli.main(["--only", "fails", "--size", "small"]) == 1


def test_list_prints_name_statement_and_source(capsys) -> None:
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    for c in all_checks():
        assert c.name in out and c.statement in out and c.source in out


def test_only_and_json(tmp_path, capsys) -> None:
    path = tmp_path / "out.json"
    assert (
        cli.main(["--only", "etf_geometry,ce_gradient", "--size", "small", "--json", str(path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "etf_geometry" in out and "PASS" in out and "theorem1" not in out
    rows = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert [r["name"] for r in rows] == ["etf_geometry", "ce_gradient"]
    for row in rows:
        assert set(row) == JSON_KEYS
        assert row["passed"] is True and row["status"] == "PASS"
        assert row["max_error"] <= row["tolerance"]
        assert row["details"]["measurements"] and row["details"]["statement"]


def test_unknown_name_is_a_usage_error(capsys) -> None:
    assert cli.main(["--only", "theorem9"]) == 2
    assert "unknown check" in capsys.readouterr().err


def test_exit_status_is_1_when_a_check_fails(monkeypatch, capsys) -> None:
    def failing(size: str) -> CheckResult:
        return CheckResult.from_measurements([Measurement("error", 1.0, 1e-12)])

    monkeypatch.setitem(CHECKS, "always_fails", Check("always_fails", "s", "src", failing))
    assert cli.main(["--only", "always_fails,etf_geometry", "--size", "small"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "always_fails: error: 1, not <= 1e-12" in out
    assert "1/2 checks passed" in out


def test_checks_run_single_threaded_and_restore_the_thread_count() -> None:
    before = torch.get_num_threads()
    seen = []

    def probe(size: str) -> CheckResult:
        seen.append(torch.get_num_threads())
        return CheckResult.from_measurements([Measurement("ok", 0.0, 1.0)])

    Check("probe", "s", "src", probe).run("small")
    Check("probe", "s", "src", probe).run("small", threads=None)
    assert seen == [1, before] and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"), torch_threads(0):
        pass
