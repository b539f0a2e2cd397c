"""`mktpred simulate` from the command line: URL, fault log lines, config, exit codes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import websocket
from typer.testing import CliRunner

from mktpred.cli.app import app
from mktpred.coinbase import subscribe_message

runner = CliRunner()


def test_serves_logs_faults_and_stops_cleanly_on_ctrl_c() -> None:
    """The command prints its URL, serves a client, logs the fault as it fires and exits 0 on Ctrl-C."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mktpred", "simulate", "--port", "0", "--products", "ETH-USD", "--rate", "200",
         "--fault", "drop:after=10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("ws://127.0.0.1:")
        ws = websocket.create_connection(url, timeout=30)
        try:
            ws.send(subscribe_message("level2", ["ETH-USD"]))
            got = 0
            with contextlib.suppress(websocket.WebSocketConnectionClosedException, ConnectionError):
                while got < 100:
                    ws.recv()
                    got += 1
            assert got == 10
        finally:
            ws.shutdown()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "ETH-USD at 200 msg/s" in err
    assert "fault drop on connection 0 at frame 10" in err
    assert "stopped: 1 connections, 10 frames sent, 1 faults fired" in err


def test_config_file_and_options(tmp_path: Path) -> None:
    """[simulate] keys are read from the config file and options override them."""
    cfg = tmp_path / "sim.toml"
    cfg.write_text('[simulate]\nport = 0\nproducts = ["SOL-USD"]\nrate = 0\n')
    result = runner.invoke(app, ["simulate", "--config", str(cfg), "--duration", "0.2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "SOL-USD as fast as possible" in result.output
    assert result.output.startswith("ws://127.0.0.1:")
    result = runner.invoke(app, ["simulate", "--config", str(cfg), "--duration", "0.2", "--products", "BTC-USD",
                                 "--rate", "30"], catch_exceptions=False)
    assert result.exit_code == 0 and "BTC-USD at 30 msg/s" in result.output


def test_bad_input_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    """A bad fault spec, a missing replay file or a bad rate: `error: ...` and exit code 2."""
    cases = [
        (["--fault", "drop:after=x"], "error: bad fault spec 'drop:after=x': after must be a number"),
        (["--replay", str(tmp_path / "nope.jsonl")], "error: replay file not found"),
        (["--rate", "-1"], "error: option: simulate.rate must be a number >= 0"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["simulate", "--port", "0", "--duration", "0", *args], catch_exceptions=False)
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert "Traceback" not in result.output
