"""`mktpred collect` through the CLI: options, config, the JSON summary and its error exits."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mktpred.cli.app import app
from mktpred.collect.segments import DirectoryLock
from mktpred.simulate import SimulatedExchange

runner = CliRunner()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}"


def test_json_summary_and_config_file_with_option_override(tmp_path: Path) -> None:
    """Config file keys apply, options override them, and --json prints the run summary on stdout."""
    cfg = tmp_path / "m.toml"
    cfg.write_text('[collect]\nproducts = ["ETH-USD"]\nchannels = ["ticker"]\nstatus_interval_s = 0.2\n'
                   f'[paths]\nraw_dir = "{tmp_path / "from-file"}"\n')
    raw = tmp_path / "raw"
    with SimulatedExchange(products=["BTC-USD", "ETH-USD"], rate=200.0, seed=21, depth=100) as sim:
        result = runner.invoke(app, ["collect", "--config", str(cfg), "--url", sim.url, "--raw-dir", str(raw),
                                     "--channels", "level2,ticker", "--duration", "1", "--json"],
                               catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["products"] == ["ETH-USD"]
    assert doc["channels"] == ["level2", "ticker", "heartbeats"]
    assert doc["raw_dir"] == str(raw) and not (tmp_path / "from-file").exists()
    assert doc["stopped_by"] == "duration" and doc["frames"] > 0
    assert doc["lines_written"] == doc["frames"] + doc["events"]
    seg = Path(doc["segments"][0])
    assert seg.parent == raw and len(seg.read_bytes().splitlines()) == doc["lines_written"]
    assert "collect: " in result.stderr  # a plain status line (not a terminal)


def test_unwritable_raw_dir_exits_3_with_one_line(tmp_path: Path) -> None:
    """A raw dir that cannot be created (a file in its path) is exit 3 with one clear line, no traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    raw = blocker / "raw"
    result = runner.invoke(app, ["collect", "--url", _closed_port_url(), "--raw-dir", str(raw), "--duration", "5"],
                           catch_exceptions=False)
    assert result.exit_code == 3
    assert result.stderr == f"error: cannot create the raw directory: Not a directory ({raw})\n"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_raw_dir_exits_3(tmp_path: Path) -> None:
    """A raw dir without write permission is exit 3 ("Permission denied")."""
    raw = tmp_path / "ro"
    raw.mkdir()
    raw.chmod(0o500)
    try:
        result = runner.invoke(app, ["collect", "--url", _closed_port_url(), "--raw-dir", str(raw)],
                               catch_exceptions=False)
    finally:
        raw.chmod(0o700)
    assert result.exit_code == 3
    assert result.stderr.startswith("error: cannot write in the raw directory: Permission denied")


def test_second_recorder_on_the_same_dir_exits_3(tmp_path: Path) -> None:
    """A raw dir locked by a running recorder is refused (its .part must not be "repaired")."""
    raw = tmp_path / "raw"
    raw.mkdir()
    lock = DirectoryLock(raw)
    lock.acquire()
    try:
        result = runner.invoke(app, ["collect", "--url", _closed_port_url(), "--raw-dir", str(raw)],
                               catch_exceptions=False)
    finally:
        lock.release()
    assert result.exit_code == 3
    assert "another mktpred collect" in result.stderr and str(raw) in result.stderr


def test_max_reconnects_gives_up_with_exit_3(tmp_path: Path) -> None:
    """With --max-reconnects 2 and nothing listening, collect gives up: exit 3, nothing left as .part,
    and the --json summary still printed with the reason in `error`."""
    cfg = tmp_path / "m.toml"
    cfg.write_text("[collect.backoff]\ninitial_s = 0.05\nmax_s = 0.1\n")
    raw = tmp_path / "raw"
    result = runner.invoke(app, ["collect", "--config", str(cfg), "--url", _closed_port_url(), "--raw-dir",
                                 str(raw), "--max-reconnects", "2", "--json"], catch_exceptions=False)
    assert result.exit_code == 3
    assert "error: gave up after 2 reconnects (last: connect failed: ConnectionRefusedError" in result.stderr
    assert not list(raw.glob("*.part")) and not list(raw.glob("*.jsonl"))
    doc = json.loads(result.stdout)  # --json is printed on exit 3 too, with the reason
    assert doc["reconnects"] == 2 and doc["frames"] == 0 and doc["segments"] == []
    assert doc["error"] == result.stderr.splitlines()[-1].removeprefix("error: ")


@pytest.mark.parametrize(("args", "message"), [
    (["--channels", "level2,orderbook"], 'collect.channels must be a list of channels among level2, ticker, '
                                         'ticker_batch, market_trades, heartbeats, candles, status, got '
                                         "['level2', 'orderbook']"),
    (["--url", "http://example.com"], "collect.url must be a ws:// or wss:// URL"),
    (["--duration", "0"], "--duration must be > 0"),
    (["--flush-interval", "-1"], "collect.flush_interval_s must be a number > 0"),
])
def test_bad_options_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    """Invalid channels, URL, duration or intervals are usage errors: exit 2 and a line naming them."""
    result = runner.invoke(app, ["collect", "--raw-dir", str(tmp_path / "raw"), *args], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert not (tmp_path / "raw").exists()


def test_refused_product_is_exit_2_with_the_servers_words(tmp_path: Path) -> None:
    """The simulator refuses an unknown product: exit 2 naming the server's words, the error frame kept on disk."""
    raw = tmp_path / "raw"
    with SimulatedExchange(products=["BTC-USD"], rate=50.0, seed=22, depth=50) as sim:
        result = runner.invoke(app, ["collect", "--url", sim.url, "--raw-dir", str(raw), "--products", "btcusd",
                                     "--channels", "ticker", "--duration", "20", "--json"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert result.stderr == ("error: the server refused the subscription: failure to subscribe: unknown "
                             "product_ids ['btcusd'] (conn 1)\n")
    doc = json.loads(result.stdout)
    assert doc["server_errors"] == 1 and doc["stopped_by"] == "stop" and doc["duration_s"] < 10
    assert doc["error"] == result.stderr.removeprefix("error: ").rstrip("\n")
    assert doc["last_server_error"] == "failure to subscribe: unknown product_ids ['btcusd']"
    lines = [json.loads(x) for x in Path(doc["segments"][0]).read_bytes().splitlines()]
    errors = [rec["msg"] for rec in lines if rec.get("msg", {}).get("type") == "error"]
    assert errors == [{"type": "error", "message": "failure to subscribe: unknown product_ids ['btcusd']"}]
    assert lines[-1]["event"] == "close" and lines[-1]["reason"] == "subscription refused"


def test_disk_full_exits_3_and_keeps_whole_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while recording: exit 3 with one line, and the sealed segment holds only whole records."""
    raw = tmp_path / "raw"
    real_write = os.write
    room = [200_000]

    def small_disk(fd: int, data: bytes | memoryview) -> int:
        if not os.readlink(f"/proc/self/fd/{fd}").endswith(".jsonl.part"):
            return real_write(fd, data)
        if room[0] <= 0:
            raise OSError(28, "No space left on device")
        n = real_write(fd, bytes(data[: room[0]]))
        room[0] -= n
        return n

    monkeypatch.setattr(os, "write", small_disk)
    with SimulatedExchange(products=["BTC-USD", "ETH-USD"], rate=300.0, seed=23, depth=100) as sim:
        result = runner.invoke(app, ["collect", "--url", sim.url, "--raw-dir", str(raw), "--duration", "20"],
                               catch_exceptions=False)
    monkeypatch.undo()
    assert result.exit_code == 3
    assert result.stderr.startswith("error: cannot write: disk full (") and result.stderr.count("\n") == 1
    (seg,) = raw.glob("coinbase_*.jsonl")
    data = seg.read_bytes()
    assert 0 < len(data) <= 200_000 and data.endswith(b"\n")
    assert all(json.loads(x)["conn"] for x in data.splitlines())
    assert not list(raw.glob("*.part"))


def test_duration_run_without_a_frame_is_exit_3_with_the_reason_in_json(tmp_path: Path) -> None:
    """A server that completes the handshake and then sends nothing: `--duration 1` exits 3, the error
    line says why, and --json is still printed with the same reason in `error`."""
    from tests.integration.hostile import HostileServer, Peer

    with HostileServer(Peer.handshake) as srv:
        result = runner.invoke(app, ["collect", "--url", srv.url, "--raw-dir", str(tmp_path / "raw"), "--duration",
                                     "1", "--stall-timeout", "30", "--json"], catch_exceptions=False)
    assert result.exit_code == 3
    reason = "no frame received in 1 s (conn 1: connected, but the server sent nothing)"
    assert result.stderr == f"error: {reason}\n"
    doc = json.loads(result.stdout)
    assert doc["error"] == reason and doc["frames"] == 0 and doc["stopped_by"] == "duration"
    assert doc["events"] == 3  # open, subscribed, close: the attempt is on disk


def test_duration_run_refused_connection_is_exit_3(tmp_path: Path) -> None:
    """Nothing listening: a 1 s run is exit 3 naming the last connect failure (it was exit 0)."""
    cfg = tmp_path / "m.toml"
    cfg.write_text("[collect.backoff]\ninitial_s = 0.05\nmax_s = 0.1\n")
    result = runner.invoke(app, ["collect", "--config", str(cfg), "--url", _closed_port_url(), "--raw-dir",
                                 str(tmp_path / "raw"), "--duration", "1"], catch_exceptions=False)
    assert result.exit_code == 3
    *warnings, last = result.stderr.splitlines()
    assert last == ("error: no frame received in 1 s (conn 1: last: connect failed: ConnectionRefusedError: "
                    "[Errno 111] Connection refused)")
    assert warnings and all(w.startswith("warning: conn 1: connect failed: ") for w in warnings)


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_non_finite_duration_is_exit_2(tmp_path: Path, value: str) -> None:
    """`--duration nan` (which ran for ever) and `inf` are usage errors, like a negative one."""
    result = runner.invoke(app, ["collect", "--raw-dir", str(tmp_path / "raw"), "--duration", value],
                           catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr == (f"error: --duration must be > 0 (a finite number of seconds), "
                             f"got {float(value)}\n")
    assert not (tmp_path / "raw").exists()
