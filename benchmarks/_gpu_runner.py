"""A command in the repository root, its output to a log file, until it ends or a deadline.

The GPU check (`benchmarks.gpu`) runs its tests, training runs and LPM solves this way: at the
deadline the command gets SIGINT (deep.train stops after writing its last epoch), then a grace
period, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["REPO", "run_until", "start", "wait"]

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    """This environment with the repository on the path: nothing needs to be installed."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    env.pop("WORLD_SIZE", None)
    return env


def run_until(command: list[str], deadline: float, log: Path, grace: float = 30.0) -> dict:
    """Run `command` in the repository root, output to `log`, until it ends or `deadline`
    (time.monotonic()); at the deadline it gets SIGINT (deep.train stops after writing its last
    epoch), then `grace` seconds, then SIGKILL. Returns status (finished, failed or stopped),
    returncode and seconds."""
    return wait(start(command, log), deadline, grace)


def start(command: list[str], log: Path) -> tuple[subprocess.Popen, float]:
    """Start `command` in the repository root, output to `log`: the process and its start
    time (time.monotonic()), for `wait`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    return proc, time.monotonic()


def wait(started: tuple[subprocess.Popen, float], deadline: float, grace: float) -> dict:
    """Wait for a process of `start` until `deadline`, then stop it as `run_until` does."""
    proc, began = started
    stopped = False
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        stopped = True
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    status = "stopped" if stopped else ("finished" if proc.returncode == 0 else "failed")
    return {"status": status, "returncode": proc.returncode, "seconds": time.monotonic() - began}
