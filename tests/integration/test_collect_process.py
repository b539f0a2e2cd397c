"""The real `python -m mktpred collect` process: SIGTERM, Ctrl-C and a hard kill mid-burst."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from mktpred.cli.app import app
from mktpred.simulate import SimulatedExchange
from tests.integration.procs import reaped, wait_until

WAIT = 30.0


def _start(url: str, raw_dir: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "mktpred", "collect", "--url", url, "--products", "BTC-USD,ETH-USD",
           "--raw-dir", str(raw_dir), "--flush-interval", "0.2", "--stall-timeout", "5", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _frames(raw_dir: Path) -> list[str]:
    out = []
    for seg in sorted(raw_dir.glob("coinbase_*.jsonl")):
        data = seg.read_bytes()
        assert data.endswith(b"\n")
        for line in data.split(b"\n")[:-1]:
            if b',"msg":' in line:
                out.append(line[line.index(b',"msg":') + 7: -1].decode())
    return out


def test_sigterm_mid_burst_seals_everything_received_and_exits_0(tmp_path: Path) -> None:
    """SIGTERM during a 3,000 frames/s burst: exit 0, one sealed segment holding every frame read, in order."""
    raw = tmp_path / "raw"
    with SimulatedExchange(products=["BTC-USD", "ETH-USD"], rate=3000.0, seed=11, depth=200,
                           record_sent=True) as sim:
        proc = _start(sim.url, raw, "--json")
        with reaped(proc, WAIT):
            assert sim.wait_for(lambda s: bool(s.connections()) and s.connections()[0].frames_sent >= 3000, WAIT)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=WAIT)
        sent = list(sim.connections()[0].sent)
    assert proc.returncode == 0, err
    assert not list(raw.glob("*.part"))
    summary = json.loads(out)
    assert summary["stopped_by"] == "stop" and len(summary["segments"]) == 1
    recorded = _frames(raw)
    assert len(recorded) == summary["frames"] >= 1000
    assert recorded == sent[: len(recorded)]
    # (whether frames were still in flight at the signal is a race, so it is not asserted)
    last = json.loads(Path(summary["segments"][0]).read_bytes().split(b"\n")[-2])
    assert last["event"] == "close" and last["reason"] == "shutdown"


def test_ctrl_c_seals_and_exits_130(tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) also drains and seals, then exits 130 with one error line."""
    raw = tmp_path / "raw"
    with SimulatedExchange(products=["BTC-USD", "ETH-USD"], rate=500.0, seed=12, depth=200) as sim:
        proc = _start(sim.url, raw)
        with reaped(proc, WAIT):
            assert sim.wait_for(lambda s: bool(s.connections()) and s.connections()[0].frames_sent >= 300, WAIT)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130
    assert "error: interrupted" in err and "Traceback" not in err
    assert not list(raw.glob("*.part")) and len(_frames(raw)) >= 100


def test_torn_part_from_a_killed_process_is_repaired_on_next_start(tmp_path: Path) -> None:
    """A SIGKILLed recorder leaves a .part; with a torn last line it is trimmed and sealed on the next start."""
    raw = tmp_path / "raw"
    with SimulatedExchange(products=["BTC-USD", "ETH-USD"], rate=500.0, seed=13, depth=200) as sim:
        proc = _start(sim.url, raw)
        try:
            assert wait_until(lambda: any(p.stat().st_size > 50_000 for p in raw.glob("*.jsonl.part")), WAIT)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=WAIT)
        (part,) = raw.glob("*.jsonl.part")
        whole = part.read_bytes()
        whole = whole[: whole.rfind(b"\n") + 1]
        torn = b'{"recv_ns":1795543769578741889,"conn":"x","msg":{"channel":"l2_da'
        with open(part, "ab") as fh:
            fh.write(torn)
            os.fsync(fh.fileno())
        result = CliRunner().invoke(app, ["collect", "--url", sim.url, "--raw-dir", str(raw), "--duration", "0.5",
                                          "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    sealed = part.with_name(part.name.removesuffix(".part"))
    assert summary["repaired"] == [{"part": str(part), "sealed": str(sealed), "trimmed_bytes": len(torn)}]
    assert summary["trimmed_bytes"] == len(torn)
    assert not part.exists() and sealed.read_bytes() == whole
    assert sealed != Path(summary["segments"][0])
