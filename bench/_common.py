"""Helpers the convert and csv2parquet benches share: run ``mktpred`` in a child and measure it.

Imported by the bench scripts as ``from _common import ...`` (a script's own folder is on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

GIB = 2**30


@dataclass(frozen=True)
class ChildRun:
    """One ``mktpred ... --json`` child: its JSON result and what it cost."""

    doc: dict[str, Any]
    wall_s: float
    cpu_s: float  #: user + system
    peak_rss_gib: float


def run_mktpred_json(args: list[str], threads: int = 0) -> ChildRun:
    """Run ``python -m mktpred <args>`` (which must include ``--json``) in a child process;
    ``threads`` > 0 sets ``MKTPRED_CONVERT_THREADS``.  Exits the bench when the child fails."""
    env = dict(os.environ)
    if threads:
        env["MKTPRED_CONVERT_THREADS"] = str(threads)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mktpred", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{args[0]} failed ({status}): {out[-2000:]!r}")
    return ChildRun(json.loads(out), wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024 / GIB)
