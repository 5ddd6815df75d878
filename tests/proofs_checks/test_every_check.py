"""Every registered check, at the small size: the suite fails when a check fails.

A statement that the numbers refute is kept as a failing check (the assertion is never
weakened); its test is a strict xfail naming the finding, so the suite stays green while the
finding holds and turns red as soon as it no longer does. Only a FAIL counts as that failure: a
check that raises (ERROR) fails its test whether or not it is expected to fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from proofs_checks.registry import CheckReport, all_checks

# Statements that fail numerically, with the reason (see the check's details). None at present:
# `convergence` asserts Yang et al.'s claim where it holds (Frank-Wolfe) and its refutation where
# it fails (projected gradient), so it passes, and fails if either direction changes.
REFUTED: dict[str, str] = {}


def _describe(report: CheckReport) -> str:
    details = report.result.details
    failed = details.get("failed", [])
    measurements = {m["label"]: m for m in details.get("measurements", [])}
    lines = [f"{report.name} failed ({len(failed)} measurements):"]
    for label in failed[:10]:
        m = measurements.get(label)
        lines.append(f"  {label}: {m['value']} not {m['relation']} {m['bound']}" if m else label)
    if "traceback" in details:
        lines.append(details["traceback"])
    return "\n".join(lines)


def _params() -> list[object]:
    params = []
    for check in all_checks():
        reason = REFUTED.get(check.name)
        marks = [pytest.mark.xfail(strict=True, reason=reason, raises=AssertionError)]
        params.append(pytest.param(check, id=check.name, marks=marks if reason else []))
    return params


@pytest.mark.parametrize("check", _params())
def test_check_passes_at_small_size(check: object) -> None:
    report = check.run("small")  # type: ignore[attr-defined]
    if report.status == "ERROR":  # not an AssertionError: an expected failure cannot absorb it
        pytest.fail(f"{report.name} raised {report.result.error}\n{_describe(report)}")
    assert report.result.passed, _describe(report)
    assert report.result.max_error <= report.result.tolerance


def test_refuted_names_are_registered() -> None:
    assert set(REFUTED) <= {c.name for c in all_checks()}


def test_an_expected_failure_cannot_hide_an_error(tmp_path: Path) -> None:
    """The xfail above absorbs a FAIL only: under the same mark, a check that raises fails."""
    module = tmp_path / "test_marks.py"
    module.write_text(
        "import pytest\n"
        "mark = pytest.mark.xfail(strict=True, reason='refuted', raises=AssertionError)\n"
        "@mark\n"
        "def test_raises():\n"
        "    pytest.fail('convergence raised TypeError: boom')\n"
        "@mark\n"
        "def test_fails():\n"
        "    assert False\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(module)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert "1 failed, 1 xfailed" in proc.stdout, proc.stdout
    assert "FAILED test_marks.py::test_raises" in proc.stdout
