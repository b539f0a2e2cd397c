"""The recorder against hostile servers on 127.0.0.1:0: slow handshakes, pings only, trickled and
oversized frames, lone surrogates.  Each test reproduces an issue-19 item against a raw socket."""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from mktpred.collect import Collector, CollectSettings
from mktpred.collect.records import LEAN_PARSE_BYTES
from mktpred.errors import NoDataReceived, SubscriptionRefused
from tests.integration.hostile import OP_PING, OP_TEXT, HostileServer, Peer
from tests.integration.procs import wait_until

WAIT = 30.0
CONT = 0x0  # the continuation opcode


def heartbeat(seq: int) -> str:
    """A heartbeats frame as Coinbase sends it (shape from the real capture)."""
    return json.dumps({"channel": "heartbeats", "client_id": "", "timestamp": "2026-08-09T21:05:48.854840045Z",
                       "sequence_num": seq, "events": [{"current_time": "2026-08-09 21:05:48.854840045 +0000 UTC "
                                                        "m=+41691.260485341", "heartbeat_counter": seq}]},
                      separators=(",", ":"))


def snapshot(seq: int, levels: int) -> bytes:
    """A level2 snapshot frame with ``levels`` price levels."""
    updates = [{"side": "bid" if i % 2 else "offer", "event_time": "2026-08-09T21:05:48.228568Z",
                "price_level": f"{60000 + i * 0.01:.2f}", "new_quantity": "0.12345678"} for i in range(levels)]
    return json.dumps({"channel": "l2_data", "client_id": "", "timestamp": "2026-08-09T21:05:48.228568804Z",
                       "sequence_num": seq, "events": [{"type": "snapshot", "product_id": "BTC-USD",
                                                        "updates": updates}]}, separators=(",", ":")).encode()


def settings(url: str, raw_dir: Path, **kw: Any) -> CollectSettings:
    base: dict[str, Any] = dict(url=url, products=("BTC-USD",), channels=("level2",), raw_dir=raw_dir,
                                flush_interval_s=0.2, stall_timeout_s=1.0, backoff_initial_s=0.05,
                                backoff_max_s=0.2)
    base.update(kw)
    return CollectSettings(**base)


class Run:
    """A recorder running in a thread until :meth:`finish` (or its own end)."""

    def __init__(self, s: CollectSettings) -> None:
        self.stop = threading.Event()
        self.collector = Collector(s, stop=self.stop)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._target, daemon=True)
        self.started = time.monotonic()
        self.thread.start()

    def _target(self) -> None:
        try:
            self.collector.run()
        except BaseException as exc:
            self.error = exc

    def finish(self) -> float:
        """Stop, wait for the end; returns how long the run took in all."""
        self.stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        return time.monotonic() - self.started


def records(raw_dir: Path) -> list[dict[str, Any]]:
    """Every record of every sealed segment, in order (no .part may be left)."""
    assert not list(raw_dir.glob("*.part"))
    out: list[dict[str, Any]] = []
    for seg in sorted(raw_dir.glob("coinbase_*.jsonl")):
        out.extend(json.loads(line) for line in seg.read_bytes().splitlines())
    return out


def events(recs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in recs if r.get("event") == kind]


def test_handshake_trickling_header_lines_is_cut_at_the_deadline(tmp_path: Path) -> None:
    """A server that sends `101` and then a header line every 0.2 s forever: each attempt ends at the
    1 s handshake deadline, and a 2.5 s run ends on time with NoDataReceived naming the cause."""
    def slow_headers(peer: Peer) -> None:
        peer.read_request()
        peer.send_raw(b"HTTP/1.1 101 Switching Protocols\r\n")
        for i in range(10_000):
            peer.send_raw(f"X-Slow-{i}: x\r\n".encode())
            peer.pause(0.2)

    with HostileServer(slow_headers) as srv:
        run = Run(settings(srv.url, tmp_path, duration_s=2.5))
        run.thread.join(WAIT)
        took = time.monotonic() - run.started
        attempts = srv.connections
    assert 2.5 <= took < 4.5
    assert isinstance(run.error, NoDataReceived)
    assert str(run.error) == "no frame received in 2.5 s (conn 1: last: connect failed: no WebSocket handshake within 1 s)"
    assert attempts >= 2  # the deadline ended the first attempt and a second one started
    assert run.collector.result is not None and run.collector.result.error == str(run.error)


def test_pings_alone_are_a_stall(tmp_path: Path) -> None:
    """A server that answers with one heartbeat and then only pings (every 0.1 s) is declared stalled
    about stall_timeout_s after that heartbeat, and replaced by a new connection."""
    def pings_only(peer: Peer) -> None:
        peer.handshake()
        peer.send_text(heartbeat(0))
        while True:
            peer.send_frame(OP_PING, b"hi")
            peer.pause(0.1)

    with HostileServer(pings_only) as srv:
        run = Run(settings(srv.url, tmp_path))
        assert wait_until(lambda: run.collector.stats[0].stalls >= 1 and srv.connections >= 2, WAIT)
        run.finish()
    assert run.error is None
    recs = records(tmp_path)
    first_conn = recs[0]["conn"]
    mine = [r for r in recs if r["conn"] == first_conn]
    (hb,) = [r for r in mine if "msg" in r]
    (stall,) = events(mine, "stall")
    waited_s = (stall["recv_ns"] - hb["recv_ns"]) / 1e9
    assert 1.0 <= waited_s < 2.0 and stall["silent_s"] >= 1.0
    assert events(mine, "close")[0]["reason"] == "stall"


def test_frame_trickled_a_byte_at_a_time_is_a_stall(tmp_path: Path) -> None:
    """A frame header announcing 1,000 bytes, then one byte every 0.2 s: bytes are not life, so the
    connection is stalled after stall_timeout_s and nothing partial is recorded."""
    def trickle(peer: Peer) -> None:
        peer.handshake()
        peer.send_raw(Peer.frame_header(OP_TEXT, 1000))
        for _ in range(1000):
            peer.send_raw(b" ")
            peer.pause(0.2)

    with HostileServer(trickle) as srv:
        run = Run(settings(srv.url, tmp_path))
        assert wait_until(lambda: run.collector.stats[0].stalls >= 1, WAIT)
        run.finish()
    recs = records(tmp_path)
    stall = events(recs, "stall")[0]
    opened = events(recs, "open")[0]
    assert 1.0 <= (stall["recv_ns"] - opened["recv_ns"]) / 1e9 < 2.0
    assert not [r for r in recs if "msg" in r or "raw" in r]


def test_frame_header_announcing_1_gib_is_refused_at_once(tmp_path: Path) -> None:
    """A header announcing 1 GiB is refused as soon as its length is read (frame_too_large event,
    reconnect), long before a stall, with nothing allocated for it."""
    def huge(peer: Peer) -> None:
        peer.handshake()
        peer.send_raw(Peer.frame_header(OP_TEXT, 2**30))
        while True:
            peer.send_raw(b"x")
            peer.pause(0.5)

    with HostileServer(huge) as srv:
        run = Run(settings(srv.url, tmp_path, stall_timeout_s=30.0))
        assert wait_until(lambda: srv.connections >= 2, WAIT)
        run.finish()
    recs = records(tmp_path)
    too_large = events(recs, "frame_too_large")[0]
    assert too_large["bytes"] == 2**30 and too_large["max_frame_bytes"] == 16 * 2**20
    opened = events(recs, "open")[0]
    assert (too_large["recv_ns"] - opened["recv_ns"]) / 1e9 < 1.0
    close = events(recs, "close")[0]
    assert close["reason"] == "frame too large (1,073,741,824 bytes > 16,777,216)"
    assert run.collector.stats[0].stalls == 0


def test_max_frame_size_allows_the_limit_and_refuses_more_even_fragmented(tmp_path: Path) -> None:
    """With a 1 MiB limit, a frame of exactly 1 MiB is recorded byte for byte; a message of 1.5 MiB in
    three fragments is refused when its third fragment is announced."""
    limit = 2**20
    head = b'{"channel":"l2_data","sequence_num":0,"pad":"'
    at_limit = head + b"a" * (limit - len(head) - 2) + b'"}'
    assert len(at_limit) == limit

    def frames(peer: Peer) -> None:
        peer.handshake()
        peer.send_text(at_limit)
        half = b"b" * (limit // 2)
        peer.send_frame(OP_TEXT, half, fin=False)
        peer.send_frame(CONT, half, fin=False)
        peer.send_frame(CONT, half, fin=True)

    with HostileServer(frames) as srv:
        run = Run(settings(srv.url, tmp_path, max_frame_bytes=limit, stall_timeout_s=30.0))
        assert wait_until(lambda: srv.connections >= 2, WAIT)
        run.finish()
    data = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("coinbase_*.jsonl")))
    first_msg = data.split(b"\n")[2]  # open, subscribed, then the frame
    assert first_msg.endswith(b',"msg":' + at_limit + b"}")
    too_large = events(records(tmp_path), "frame_too_large")[0]
    assert too_large["bytes"] == 3 * (limit // 2) and too_large["max_frame_bytes"] == limit


def test_big_frame_costs_about_twice_its_size_to_receive_and_record(tmp_path: Path) -> None:
    """A 5 MB level2 snapshot (the size of Coinbase's BTC-USD one): assembling, parsing and buffering
    it peaks at under 3x its size in Python allocations (it was 17x), and it is recorded byte for byte."""
    frame = snapshot(0, 46_000)
    assert len(frame) > 4 * LEAN_PARSE_BYTES

    def one_snapshot(peer: Peer) -> None:
        peer.handshake()
        peer.send_text(frame)

    with HostileServer(one_snapshot) as srv:
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            run = Run(settings(srv.url, tmp_path, stall_timeout_s=30.0))
            assert wait_until(lambda: run.collector.stats[0].frames >= 1, WAIT)
            run.finish()
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
    assert peak < 3 * len(frame), peak / len(frame)
    (rec,) = [line for p in tmp_path.glob("coinbase_*.jsonl") for line in p.read_bytes().splitlines()
              if b'"msg":' in line]
    assert rec.endswith(b',"msg":' + frame + b"}")
    assert run.collector.stats[0].rows == 46_000 and run.collector.stats[0].channels["l2_data"] == [1, 46_000]


@pytest.mark.parametrize("big", [False, True], ids=["small", "lean-parsed"])
def test_lone_surrogate_frame_is_raw_and_no_false_gap(tmp_path: Path, big: bool) -> None:
    """A frame carrying a lone surrogate escape is kept as `raw`, but its sequence number still
    counts: the next frame is no gap and level2 is not resubscribed."""
    pad = "x" * (LEAN_PARSE_BYTES if big else 10)
    odd = ('{"channel":"ticker","client_id":"","timestamp":"2026-08-09T21:05:48Z","sequence_num":2,'
           f'"events":[{{"type":"update","tickers":[{{"product_id":"BTC-USD\\ud800","pad":"{pad}"}}]}}]}}')

    def frames(peer: Peer) -> None:
        peer.handshake()
        for frame in (heartbeat(0), heartbeat(1), odd, heartbeat(3), heartbeat(4)):
            peer.send_text(frame)

    with HostileServer(frames) as srv:
        run = Run(settings(srv.url, tmp_path, stall_timeout_s=30.0))
        assert wait_until(lambda: run.collector.stats[0].frames >= 5, WAIT)
        run.finish()
    recs = records(tmp_path)
    assert [r["raw"] for r in recs if "raw" in r] == [odd]
    assert [r["msg"]["sequence_num"] for r in recs if "msg" in r] == [0, 1, 3, 4]
    assert not events(recs, "gap")
    st = run.collector.stats[0]
    assert (st.gaps, st.resubscribes, st.raw_frames) == (0, 0, 1)


def test_duration_run_without_a_frame_fails_with_the_reason(tmp_path: Path) -> None:
    """A server that completes the handshake and then says nothing: a 1.5 s run raises NoDataReceived,
    and the result kept on the collector carries the same reason."""
    with HostileServer(Peer.handshake) as srv:
        run = Run(settings(srv.url, tmp_path, stall_timeout_s=30.0, duration_s=1.5))
        run.thread.join(WAIT)
    assert isinstance(run.error, NoDataReceived)
    assert str(run.error) == "no frame received in 1.5 s (conn 1: connected, but the server sent nothing)"
    result = run.collector.result
    assert result is not None and result.frames == 0 and result.stopped_by == "duration"
    assert result.error == str(run.error) and len(result.segments) == 1


def test_coinbase_refusal_on_the_first_connection_is_fatal(tmp_path: Path) -> None:
    """Coinbase's own refusal frame (`{"type":"error","message":"failure to subscribe"}`) on the first
    connection stops the run with SubscriptionRefused quoting it, instead of recording heartbeats."""
    def refuse(peer: Peer) -> None:
        peer.handshake()
        peer.send_text('{"type":"error","message":"failure to subscribe"}')
        for seq in range(100_000):
            peer.send_text(heartbeat(seq))
            peer.pause(0.05)

    with HostileServer(refuse) as srv:
        run = Run(settings(srv.url, tmp_path, stall_timeout_s=30.0))
        run.thread.join(WAIT)
    assert isinstance(run.error, SubscriptionRefused) and run.error.exit_code == 2
    assert str(run.error) == "the server refused the subscription: failure to subscribe (conn 1)"
    recs = records(tmp_path)
    assert [r["msg"] for r in recs if "msg" in r] == [{"type": "error", "message": "failure to subscribe"}]
    assert events(recs, "close")[0]["reason"] == "subscription refused"


def test_refusal_on_a_later_connection_is_a_warning(tmp_path: Path) -> None:
    """A refusal after a reconnect (the subscription worked before: a product delisted mid-run) is
    counted and shown, and recording goes on."""
    def second_time_refuses(peer: Peer) -> None:
        peer.handshake()
        if peer is srv.peers[0]:
            peer.send_text(heartbeat(0))
            peer.sock.close()  # drop: the recorder reconnects
            return
        peer.send_text('{"type":"error","message":"failure to subscribe"}')
        for seq in range(100_000):
            peer.send_text(heartbeat(seq))
            peer.pause(0.05)

    with HostileServer(second_time_refuses) as srv:
        run = Run(settings(srv.url, tmp_path, stall_timeout_s=30.0))
        assert wait_until(lambda: run.collector.stats[0].frames >= 5, WAIT)
        notices = run.collector.notices.drain()
        run.finish()
    assert run.error is None
    st = run.collector.stats[0]
    assert st.server_errors == 1 and st.last_server_error == "failure to subscribe" and st.reconnects == 1
    assert ("warn", "conn 1: the server says: failure to subscribe") in notices
