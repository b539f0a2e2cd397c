"""The whole chain as a user runs it, each step a `mktpred` process: simulate -> collect -> convert
-> validate -> convert --write-csv -> csv2parquet, and both stores hold the same rows."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import duckdb

from mktpred.store.schemas import TABLE_SCHEMAS
from tests.integration.procs import reaped, wait_until

WAIT = 60.0
_SCRIPT = Path(sys.executable).with_name("mktpred")
#: the console script when it is installed beside this Python, else the module
MKTPRED = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "mktpred"]
TABLES = ("l2", "ticker", "trades", "messages", "events")
#: at 200 msg/s: a duplicated frame and a stall on connection 0, a drop on connection 1,
#: one sequence number skipped every 100 frames on every connection
FAULTS = ["duplicate:after=60", "gap:every=100", "stall:seconds=2,after=150", "drop:after=250"]


def mktpred(*args: str, cwd: Path, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MKTPRED, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


class Simulator:
    """`mktpred simulate --port 0 ...` in the background; its URL is the first line on stdout."""

    def __init__(self, cwd: Path, faults: list[str]) -> None:
        self.log = cwd / "simulate.log"
        args = ["simulate", "--port", "0", "--products", "BTC-USD,ETH-USD", "--rate", "200", "--seed", "7",
                "--depth", "200", *(a for f in faults for a in ("--fault", f))]
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen([*MKTPRED, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=err, text=True)
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(self.proc.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(WAIT)
        assert first and first[0].startswith("ws://127.0.0.1:"), (first, self.log.read_text())
        self.url = first[0].strip()

    def stop(self) -> str:
        """Ctrl-C: exit 0; returns its stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            assert self.proc.wait(WAIT) == 0
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(WAIT)
            self.proc.stdout.close()  # type: ignore[union-attr]
        return self.log.read_text()


def _collect_until(raw: Path, url: str, cwd: Path, done: Any) -> dict[str, Any]:
    """`collect --duration 60`, stopped with SIGTERM (exit 0) once ``done(part_text)`` holds."""
    cmd = [*MKTPRED, "collect", "--url", url, "--products", "BTC-USD,ETH-USD", "--raw-dir", str(raw),
           "--duration", "60", "--stall-timeout", "1", "--flush-interval", "0.2", "--json"]
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with reaped(proc, WAIT):
        def ready() -> bool:
            parts = list(raw.glob("*.jsonl.part"))
            return bool(parts) and done(parts[0].read_text(errors="replace"))

        assert wait_until(ready, WAIT, interval=0.05), "the recorder never saw what the faults should cause"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    summary: dict[str, Any] = json.loads(out)
    return summary


def _after_third_open(text: str) -> bool:
    """Three connections opened (stall, then drop) and the third delivered 100 records."""
    opens = [i for i, line in enumerate(text.splitlines()) if '"event":"open"' in line]
    return len(opens) >= 3 and len(text.splitlines()) - opens[2] > 100


def _same_rows(a: Path, b: Path) -> dict[str, int]:
    """Rows per table, after checking that the two stores hold the same multiset of rows."""
    counts = {}
    con = duckdb.connect()
    for table in TABLES:
        cols = ", ".join(f'"{c}"' for c in TABLE_SCHEMAS[table].names)
        left = f"SELECT {cols} FROM read_parquet('{a}/{table}/*/*.parquet')"
        right = f"SELECT {cols} FROM read_parquet('{b}/{table}/*/*.parquet')"
        n_a = con.sql(f"SELECT count(*) FROM ({left})").fetchall()[0][0]
        n_b = con.sql(f"SELECT count(*) FROM ({right})").fetchall()[0][0]
        assert n_a == n_b, (table, n_a, n_b)
        for x, y in ((left, right), (right, left)):
            extra = con.sql(f"SELECT * FROM ({x} EXCEPT ALL {y}) LIMIT 3").fetchall()
            assert not extra, (table, extra)
        counts[table] = n_a
    return counts


def _csv_leg(tmp: Path, raw: Path, store: Path) -> None:
    """convert --write-csv, csv2parquet of those CSV files into a second store, same rows in both."""
    csv_dir, store2 = tmp / "csv", tmp / "store2"
    # --force: the segments are up to date, and convert writes CSV only for segments it converts
    res = mktpred("convert", "--raw-dir", str(raw), "--parquet-dir", str(store), "--write-csv",
                  "--csv-dir", str(csv_dir), "--force", "--json", cwd=tmp)
    assert res.returncode == 0, res.stderr
    assert {p.parent.parent.name for p in csv_dir.glob("*/date=*/*.csv")} == set(TABLES)
    res = mktpred("csv2parquet", str(csv_dir), "--parquet-dir", str(store2), "--json", cwd=tmp)
    assert res.returncode == 0, res.stderr
    counts = _same_rows(store, store2)
    assert counts["l2"] > 0 and counts["messages"] > 0


def test_clean_chain_exits_0_everywhere(tmp_path: Path) -> None:
    """No faults: every step exits 0, validate passes, and the CSV round trip keeps every row."""
    raw, store = tmp_path / "raw", tmp_path / "store"
    sim = Simulator(tmp_path, [])
    try:
        res = mktpred("collect", "--url", sim.url, "--products", "BTC-USD,ETH-USD", "--raw-dir", str(raw),
                      "--duration", "2", "--json", cwd=tmp_path)
    finally:
        log = sim.stop()
    assert res.returncode == 0, res.stderr
    collected = json.loads(res.stdout)
    assert collected["stopped_by"] == "duration" and collected["reconnects"] == collected["gaps"] == 0
    assert "0 faults fired" in log

    res = mktpred("convert", "--raw-dir", str(raw), "--parquet-dir", str(store), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    converted = json.loads(res.stdout)
    assert converted["rows"]["messages"] == collected["frames"] and converted["invalid"] == 0

    res = mktpred("validate", "--parquet-dir", str(store), "--raw-dir", str(raw), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert report["status"] == "pass" and report["gaps_total"] == 0

    _csv_leg(tmp_path, raw, store)
    res = mktpred("validate", "--parquet-dir", str(tmp_path / "store2"), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_faulty_chain_recovers_and_validate_reports_the_injected_gap(tmp_path: Path) -> None:
    """A duplicate, gaps, a stall and a drop: the recorder reconnects twice and exits 0; validate
    lists the gaps (known to the collector) and fails on the duplicated frame (exit 1); the CSV
    round trip still keeps every row."""
    raw, store = tmp_path / "raw", tmp_path / "store"
    sim = Simulator(tmp_path, FAULTS)
    try:
        collected = _collect_until(raw, sim.url, tmp_path, _after_third_open)
    finally:
        log = sim.stop()
    for kind in ("duplicate", "gap", "stall", "drop"):
        assert f"fault {kind} on connection" in log, log
    assert collected["reconnects"] >= 2 and collected["stalls"] >= 1
    assert collected["gaps"] >= 2 and collected["duplicates"] >= 1

    res = mktpred("convert", "--raw-dir", str(raw), "--parquet-dir", str(store), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["invalid"] == 0

    res = mktpred("validate", "--parquet-dir", str(store), "--raw-dir", str(raw), "--json", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: 1 check failed: sequence")
    report = json.loads(res.stdout)
    sequence = next(c for c in report["checks"] if c["name"] == "sequence")
    assert sequence["status"] == "fail" and "duplicate" in sequence["details"]
    first_conn = min(g["conn"] for g in report["gaps"])
    injected = [g for g in report["gaps"] if g["conn"] == first_conn]
    assert injected and all(g["known"] and g["missing"] == 1 for g in report["gaps"])
    assert report["gaps_total"] >= 2

    _csv_leg(tmp_path, raw, store)
    shutil.rmtree(tmp_path / "csv", ignore_errors=True)
