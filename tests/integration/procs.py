"""Helpers for tests that drive real `mktpred` processes: wait on a condition, never leak a child."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``pred`` every ``interval`` seconds until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return False


@contextmanager
def reaped(proc: subprocess.Popen[str], timeout: float) -> Iterator[subprocess.Popen[str]]:
    """Kill and reap ``proc`` on the way out when it is still running (a failed assertion, a timeout)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=timeout)
