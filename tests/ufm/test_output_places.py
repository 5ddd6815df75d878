"""Output files follow the umask; output places are checked (and left as found) up front."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ufm.io import (
    atomic_write_text,
    check_new_output_dir,
    check_output_dir,
    check_output_file,
    current_umask,
)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_atomic_files_follow_the_umask(tmp_path, mask) -> None:
    before = os.umask(mask)
    try:
        path = atomic_write_text(tmp_path / "summary.json", "{}")
        assert current_umask() == mask
    finally:
        os.umask(before)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_a_checked_place_is_left_as_found(tmp_path) -> None:
    check_output_dir(tmp_path / "a" / "b" / "c")
    assert list(tmp_path.iterdir()) == []
    check_new_output_dir(tmp_path / "new")
    check_output_file(tmp_path / "x" / "out.json", "--json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "check", "message"),
    [
        ("file", check_output_dir, "is a file, not a folder"),
        ("dir", check_output_file, "is a folder; give a file name"),
        ("full", check_new_output_dir, "exists and is not empty"),
        ("proc", check_output_dir, "cannot write there"),
        ("below-file", check_output_dir, "cannot write there"),
    ],
)
def test_unusable_places_are_one_line(tmp_path, make, check, message) -> None:
    target = {
        "file": tmp_path / "f",
        "dir": tmp_path,
        "full": tmp_path,
        "proc": Path("/proc/nc-verify"),
        "below-file": tmp_path / "f" / "sub",
    }[make]
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match=message) as info:
        check(target, "--out")
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
