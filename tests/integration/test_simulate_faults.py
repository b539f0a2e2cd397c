"""Every fault kind of `mktpred simulate`, observed by a real websocket-client client."""

from __future__ import annotations

import itertools
import json
import logging
import struct
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
import websocket

from mktpred.simulate import SimulatedExchange, parse_fault
from tests.integration.simclient import close_clients, open_client

CHANNELS = ["level2", "ticker", "market_trades", "heartbeats"]


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Close every client a test opened, whatever happened."""
    yield
    close_clients()


def sim_with(*specs: str, rate: float = 300.0, **kw: object) -> SimulatedExchange:
    return SimulatedExchange(products=["BTC-USD"], rate=rate, depth=50, seed=2,
                             faults=[parse_fault(s) for s in specs], **kw)  # type: ignore[arg-type]


def connect(sim: SimulatedExchange, channels: list[str] = CHANNELS) -> websocket.WebSocket:
    return open_client(sim, channels)


def recv(ws: websocket.WebSocket) -> tuple[int, bytes]:
    """(opcode, payload) of the next data or close frame."""
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_CLOSE):
            return opcode, data


def read_to_end(ws: websocket.WebSocket, limit: int = 100_000) -> tuple[list[str], int | None]:
    """Frames until the connection ends; the close code, or None when it ended without a close frame."""
    got: list[str] = []
    while len(got) < limit:
        try:
            opcode, data = recv(ws)
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return got, None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return got, struct.unpack("!H", data[:2])[0]
        got.append(data.decode("utf-8", "replace"))
    raise AssertionError("the connection did not end")


def read_n(ws: websocket.WebSocket, n: int) -> list[str]:
    got = []
    while len(got) < n:
        opcode, data = recv(ws)
        assert opcode == websocket.ABNF.OPCODE_TEXT, "connection closed early"
        got.append(data.decode("utf-8", "replace"))
    return got


def seqs(frames: list[str]) -> list[int]:
    return [json.loads(f)["sequence_num"] for f in frames]


def test_drop_after_n_frames_once(caplog: pytest.LogCaptureFixture) -> None:
    """drop:after=N: exactly N frames, then the TCP connection ends with no close frame; once only."""
    caplog.set_level(logging.WARNING, logger="mktpred.simulate")
    with sim_with("drop:after=30") as sim:
        got, code = read_to_end(connect(sim))
        assert code is None and len(got) == 30
        assert seqs(got) == list(range(30))
        assert len(read_n(connect(sim), 60)) == 60  # the second connection is not dropped
        assert [(e.conn_index, e.kind, e.at_frame) for e in sim.fault_log] == [(0, "drop", 30)]
        assert sim.connections()[0].faults == sim.fault_log
    assert any("fault drop on connection 0 at frame 30" in r.getMessage() for r in caplog.records)


def test_drop_after_with_times_fires_on_that_many_connections() -> None:
    """drop:after=N,times=2 drops the first two connections and spares the third."""
    with sim_with("drop:after=5,times=2") as sim:
        for _ in range(2):
            got, code = read_to_end(connect(sim))
            assert (len(got), code) == (5, None)
        assert len(read_n(connect(sim), 20)) == 20
        assert [e.conn_index for e in sim.fault_log] == [0, 1]


def test_drop_every_t_seconds_repeats() -> None:
    """drop:every=T ends each connection about T seconds after it opened, without a close frame."""
    with sim_with("drop:every=0.4", rate=50) as sim:
        for _ in range(2):
            start = time.monotonic()
            got, code = read_to_end(connect(sim))
            assert code is None and got and time.monotonic() - start >= 0.3
        assert [e.kind for e in sim.fault_log] == ["drop", "drop"]
        assert [e.conn_index for e in sim.fault_log] == [0, 1]


def test_close_with_code() -> None:
    """close:code=C,after=N sends N frames, then a close frame carrying code C."""
    with sim_with("close:code=4001,after=10") as sim:
        got, code = read_to_end(connect(sim))
        assert (len(got), code) == (10, 4001)
        assert sim.fault_log[0].kind == "close" and "4001" in sim.fault_log[0].detail


def test_stall_keeps_the_socket_open_and_sends_nothing() -> None:
    """stall:seconds=T,after=N: a silence of about T seconds after frame N, then the stream goes on."""
    with sim_with("stall:seconds=1.2,after=10") as sim:
        ws = connect(sim)
        got = read_n(ws, 10)
        start = time.monotonic()
        after = read_n(ws, 5)
        assert time.monotonic() - start >= 0.8
        assert seqs(got + after) == list(range(15))  # a stall is not a gap
        assert [e.kind for e in sim.fault_log] == ["stall"]


def test_gap_skips_sequence_numbers() -> None:
    """gap:every=N,size=K: after every N numbered frames the sequence jumps by K."""
    with sim_with("gap:every=20,size=3") as sim:
        got = seqs(read_n(connect(sim), 70))
        assert got[:20] == list(range(20))
        jumps = [(i, b - a) for i, (a, b) in enumerate(itertools.pairwise(got), start=1) if b - a != 1]
        assert jumps[:3] == [(20, 4), (40, 4), (60, 4)]
        assert sim.wait_for(lambda s: len(s.fault_log) >= 3)
        assert all(e.kind == "gap" for e in sim.fault_log)


def test_malformed_frame_is_not_json_and_takes_no_number() -> None:
    """malformed:after=N: frame N cannot be parsed; the numbered frames around it are consecutive."""
    with sim_with("malformed:after=8") as sim:
        got = read_n(connect(sim), 12)
        with pytest.raises(ValueError):
            json.loads(got[8])
        assert seqs(got[:8] + got[9:]) == list(range(11))
        assert [e.kind for e in sim.fault_log] == ["malformed"]


def test_duplicate_frame_repeats_its_sequence_number() -> None:
    """duplicate:after=N: frame N arrives twice, identical, with the same sequence_num."""
    with sim_with("duplicate:after=8") as sim:
        got = read_n(connect(sim), 12)
        assert got[8] == got[9]
        assert seqs(got) == [*range(9), 8, *range(9, 11)]
        assert [(e.kind, e.at_frame) for e in sim.fault_log] == [("duplicate", 8)]


def test_oversized_snapshot_is_one_big_consistent_frame() -> None:
    """oversized:mb=M pads the level2 snapshot with deep levels to at least M MiB, still best-first."""
    with sim_with("oversized:mb=3") as sim:
        ws = connect(sim, ["level2", "ticker"])
        snap = json.loads(read_n(ws, 1)[0])
        assert snap["events"][0]["type"] == "snapshot"
        assert len(json.dumps(snap, separators=(",", ":"))) >= 3 * 2**20
        rows = snap["events"][0]["updates"]
        bids = [Decimal(r["price_level"]) for r in rows if r["side"] == "bid"]
        offers = [Decimal(r["price_level"]) for r in rows if r["side"] == "offer"]
        assert bids == sorted(bids, reverse=True) and offers == sorted(offers) and bids[0] < offers[0]
        # The acks and the ticker snapshot follow; the market may already move in between, so the
        # bids are kept up to date until the first ticker, which must match that book's best bid.
        book = {Decimal(r["price_level"]): Decimal(r["new_quantity"]) for r in rows if r["side"] == "bid"}
        for _ in range(200):
            m = json.loads(read_n(ws, 1)[0])
            if m["channel"] == "ticker":
                break
            if m["channel"] == "l2_data":
                for r in (u for e in m["events"] for u in e["updates"] if u["side"] == "bid"):
                    price, qty = Decimal(r["price_level"]), Decimal(r["new_quantity"])
                    if qty == 0:
                        book.pop(price, None)
                    else:
                        book[price] = qty
        else:
            pytest.fail("no ticker frame within 200 frames of the snapshot")
        assert Decimal(m["events"][0]["tickers"][0]["best_bid"]) == max(book)
        assert [e.kind for e in sim.fault_log] == ["oversized"]


def test_slow_sleeps_between_frames() -> None:
    """slow:delay_ms=X spaces the frames by at least X ms."""
    with sim_with("slow:delay_ms=100") as sim:
        ws = connect(sim, ["ticker"])
        read_n(ws, 1)
        start = time.monotonic()
        read_n(ws, 5)
        assert time.monotonic() - start >= 0.45
        assert [e.kind for e in sim.fault_log] == ["slow"]
