"""The real `python -m mktpred collect` process against hostile servers: SIGTERM and Ctrl-C stop it
within a couple of seconds in every state, and server text is never Rich markup on a terminal."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.hostile import OP_PING, OP_TEXT, HostileServer, Peer
from tests.integration.procs import reaped, wait_until

WAIT = 30.0
#: how long a signalled recorder may take to seal and exit
STOP_WITHIN_S = 3.0


def _heartbeat(seq: int) -> str:
    return json.dumps({"channel": "heartbeats", "client_id": "", "timestamp": "2026-08-09T21:05:48.854840045Z",
                       "sequence_num": seq, "events": [{"current_time": "2026-08-09 21:05:48.854840045 +0000 UTC",
                                                        "heartbeat_counter": seq}]}, separators=(",", ":"))


def slow_headers(peer: Peer) -> None:
    """`101`, then one header line per 0.2 s, for ever (the handshake never ends)."""
    peer.read_request()
    peer.send_raw(b"HTTP/1.1 101 Switching Protocols\r\n")
    peer.reached.set()
    for i in range(100_000):
        peer.send_raw(f"X-Slow-{i}: x\r\n".encode())
        peer.pause(0.2)


def no_answer(peer: Peer) -> None:
    """Reads the upgrade request and never answers."""
    peer.read_request()
    peer.reached.set()


def pings_only(peer: Peer) -> None:
    """A proper handshake, then pings every 0.05 s and nothing else."""
    peer.handshake()
    peer.reached.set()
    while True:
        peer.send_frame(OP_PING, b"hi")
        peer.pause(0.05)


def trickled_frame(peer: Peer) -> None:
    """A frame header announcing 10 MB, then a byte every 0.05 s."""
    peer.handshake()
    peer.send_raw(Peer.frame_header(OP_TEXT, 10_000_000))
    peer.reached.set()
    while True:
        peer.send_raw(b" ")
        peer.pause(0.05)


def test_signal_stops_collect_stuck_in_a_tcp_connect(tmp_path: Path) -> None:
    """A listener whose backlog is full never completes the TCP connect (the SYN is dropped): SIGTERM
    still ends the process within 3 s (the reader is left behind, the segment sealed), exit 0."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=5)  # takes the only backlog slot
    raw = tmp_path / "raw"
    try:
        proc = _start(f"ws://127.0.0.1:{listener.getsockname()[1]}", raw, "--stall-timeout", "60")
        with reaped(proc, WAIT):
            time.sleep(1.5)  # started, and now blocked in connect()
            assert proc.poll() is None
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=WAIT)
            took = time.monotonic() - sent
    finally:
        filler.close()
        listener.close()
    assert proc.returncode == 0, err
    assert took < STOP_WITHIN_S, took
    assert "Traceback" not in err and not list(raw.glob("*.part"))


def _start(url: str, raw_dir: Path, *extra: str, **popen: object) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "mktpred", "collect", "--url", url, "--products", "BTC-USD",
           "--channels", "level2", "--raw-dir", str(raw_dir), "--flush-interval", "0.2", *extra]
    kw: dict[str, object] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    kw.update(popen)
    return subprocess.Popen(cmd, **kw)  # type: ignore[call-overload]


@pytest.mark.parametrize(("script", "signum", "code"), [
    (slow_headers, signal.SIGTERM, 0),
    (no_answer, signal.SIGTERM, 0),
    (pings_only, signal.SIGTERM, 0),
    (trickled_frame, signal.SIGTERM, 0),
    (slow_headers, signal.SIGINT, 130),
    (pings_only, signal.SIGINT, 130),
], ids=["handshake-trickle-term", "no-answer-term", "pings-term", "trickled-frame-term", "handshake-trickle-int",
        "pings-int"])
def test_signal_stops_collect_within_seconds_in_every_state(tmp_path: Path, script: Callable[[Peer], None],
                                                             signum: int, code: int) -> None:
    """With a 60 s stall timeout (no watchdog to the rescue), SIGTERM or the first Ctrl-C ends the
    process within 3 s whatever the server is doing, with its documented exit code and nothing left as .part."""
    raw = tmp_path / "raw"
    with HostileServer(script) as srv:
        proc = _start(srv.url, raw, "--stall-timeout", "60")
        with reaped(proc, WAIT):
            assert wait_until(lambda: bool(srv.peers) and srv.peers[0].reached.is_set(), WAIT)
            time.sleep(0.3)  # let the recorder sit in that state
            sent = time.monotonic()
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=WAIT)
            took = time.monotonic() - sent
    assert proc.returncode == code, err
    assert took < STOP_WITHIN_S, took
    assert "Traceback" not in err
    assert not list(raw.glob("*.part"))  # sealed (or, when nothing was recorded, no segment at all)


def test_server_text_with_markup_prints_verbatim_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal (a pty), an error message containing `[/]`, `[bold]`, an escape sequence and a
    newline is printed as one literal line: no MarkupError, no cursor movement, exit 0."""
    message = "rate limit [/] exceeded [bold]now\x1b[2J\nfake line"
    shown = "rate limit [/] exceeded [bold]now\\x1b[2J\\nfake line"

    def rude(peer: Peer) -> None:
        peer.handshake()
        peer.send_text(json.dumps({"type": "error", "message": message}))
        for seq in range(100_000):
            peer.send_text(_heartbeat(seq))
            peer.pause(0.1)

    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    env = {**os.environ, "TERM": "xterm-256color"}
    try:
        with HostileServer(rude) as srv:
            proc = _start(srv.url, tmp_path / "raw", "--duration", "1.5", stderr=slave, env=env)
            with reaped(proc, WAIT):
                proc.communicate(timeout=WAIT)
    finally:
        os.close(slave)
        reader.join(WAIT)
        os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert "MarkupError" not in text and "Traceback" not in text
    assert f"warning: conn 1: the server says: {shown}\r\n" in text
    assert "\x1b[2J" not in text
    assert f"server errors 1 (last: {shown})" in text.replace("\r\n", "")
