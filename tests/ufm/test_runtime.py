"""ufm.runtime: the allocator setting is applied once, where glibc is, and can be turned off."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = "from ufm.runtime import keep_freed_memory as k; print(k(), k())"


def _run(env_value: str | None) -> str:
    env = {"PATH": "/usr/bin:/bin"}
    if env_value is not None:
        env["NC_VERIFY_KEEP_FREED_MEMORY"] = env_value
    done = subprocess.run(
        [sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_applies_once_and_can_be_turned_off() -> None:
    import platform

    applied = _run(None)
    if platform.libc_ver()[0] == "glibc":
        assert applied == "True True"  # idempotent: the second call reports the first
    else:
        assert applied == "False False"
    assert _run("0") == "False False"
