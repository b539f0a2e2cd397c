"""Protocol conformance of `mktpred simulate`, checked by a real websocket-client client."""

from __future__ import annotations

import itertools
import json
import re
import struct
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import websocket

from mktpred.coinbase import parse_rfc3339_ns, subscribe_message
from mktpred.simulate import SimulatedExchange
from tests.integration.simclient import close_clients, open_client

TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,8}[1-9])?Z$")
DECIMAL = re.compile(r"^-?(0|[1-9]\d*)(\.\d*[1-9])?$")
GO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{0,8}[1-9])? \+0000 UTC m=\+\d+\.\d{9}$")
PRODUCTS = ["BTC-USD", "ETH-USD"]


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Close every client a test opened, whatever happened."""
    yield
    close_clients()


def connect(sim: SimulatedExchange, channels: list[str], products: list[str] = PRODUCTS) -> websocket.WebSocket:
    return open_client(sim, channels, products)


def frames(ws: websocket.WebSocket, n: int) -> list[str]:
    out = []
    for _ in range(n):
        opcode, data = ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_TEXT
        out.append(data.decode())
    return out


def read_until(ws: websocket.WebSocket, pred: Any, limit: int = 100_000) -> list[str]:
    out: list[str] = []
    while len(out) < limit:
        out.extend(frames(ws, 1))
        if pred(out):
            return out
    raise AssertionError("condition not reached")


def test_idle_client_is_closed_after_the_subscribe_deadline() -> None:
    """A client that never subscribes gets a close frame (1008) once the deadline passes."""
    with SimulatedExchange(subscribe_timeout_s=0.3) as sim:
        ws = open_client(sim)
        start = time.monotonic()
        opcode, data = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert struct.unpack("!H", data[:2])[0] == 1008
        assert time.monotonic() - start >= 0.2
        assert sim.wait_for(lambda s: s.connections()[0].closed)
        log = sim.connections()[0]
        assert log.frames_sent == 0 and "deadline" in log.close_reason


def test_acks_follow_snapshots_and_list_every_subscription() -> None:
    """Each subscribe gets its snapshots, then an ack listing all current subscriptions (sorted)."""
    with SimulatedExchange(rate=50, depth=50) as sim:
        ws = connect(sim, ["level2", "heartbeats", "ticker"])
        got = [json.loads(f) for f in
               read_until(ws, lambda fs: sum('"channel":"subscriptions"' in f for f in fs) == 3)]
        acks = [i for i, m in enumerate(got) if m["channel"] == "subscriptions"]
        subs = [got[i]["events"][0]["subscriptions"] for i in acks]
        assert subs == [
            {"level2": PRODUCTS},
            {"heartbeats": ["heartbeats"], "level2": PRODUCTS},
            {"heartbeats": ["heartbeats"], "level2": PRODUCTS, "ticker": PRODUCTS},
        ]
        assert [list(s) for s in subs] == [sorted(s) for s in subs]
        before_first = [(m["channel"], m["events"][0]["type"], m["events"][0]["product_id"]) for m in got[:acks[0]]]
        assert before_first[:2] == [("l2_data", "snapshot", "BTC-USD"), ("l2_data", "snapshot", "ETH-USD")]
        tickers = [m for m in got[acks[1] + 1:acks[2]] if m["channel"] == "ticker"]
        assert [t["events"][0]["type"] for t in tickers[:2]] == ["snapshot", "snapshot"]
        ws.send(subscribe_message("ticker", ["ETH-USD"], unsubscribe=True))
        after = read_until(ws, lambda fs: '"channel":"subscriptions"' in fs[-1])
        assert json.loads(after[-1])["events"][0]["subscriptions"]["ticker"] == ["BTC-USD"]
        assert sim.connections()[0].subscriptions["ticker"] == ["BTC-USD"]
        ws.close()


def test_unknown_channel_and_bad_messages_get_error_frames() -> None:
    """An unknown channel gets `authentication failure`; garbage gets an error; neither is numbered."""
    with SimulatedExchange(rate=10, depth=20) as sim:
        ws = open_client(sim)
        ws.send(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level3"}))
        assert frames(ws, 1) == ['{"type":"error","message":"authentication failure"}']
        ws.send("not json")
        assert json.loads(frames(ws, 1)[0])["type"] == "error"
        ws.send(subscribe_message("heartbeats", ["BTC-USD"]))
        ack = json.loads(frames(ws, 1)[0])
        assert ack["channel"] == "subscriptions" and ack["sequence_num"] == 0
        ws.close()


def test_one_sequence_counter_per_connection_and_sent_log_is_exact() -> None:
    """Each connection numbers all its frames 0,1,2,... and `sent` holds exactly what arrived."""
    with SimulatedExchange(rate=400, depth=100, record_sent=True) as sim:
        a = connect(sim, ["level2", "ticker", "market_trades", "heartbeats"])
        b = connect(sim, ["ticker", "heartbeats"], ["ETH-USD"])
        got_a, got_b = frames(a, 300), frames(b, 40)
        for got in (got_a, got_b):
            assert [json.loads(f)["sequence_num"] for f in got] == list(range(len(got)))
        a.close()
        b.close()
        assert sim.wait_for(lambda s: all(c.closed for c in s.connections()))
        logs = sim.connections()
        assert [c.index for c in logs] == [0, 1]
        assert logs[0].sent[:300] == got_a and logs[1].sent[:40] == got_b
        for log in logs:
            assert log.frames_sent == len(log.sent) and log.last_seq == log.frames_sent - 1


def _key_paths(obj: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield f"{prefix}.{k}"
            yield from _key_paths(v, f"{prefix}.{k}")
    elif isinstance(obj, list):
        for v in obj:
            yield from _key_paths(v, prefix + "[]")


def _check_values(msg: dict[str, Any]) -> None:
    assert TS.match(msg["timestamp"]), msg["timestamp"]
    for ev in msg["events"]:
        for row in ev.get("updates", []):
            assert TS.match(row["event_time"]) and len(row["event_time"]) <= 27
            assert DECIMAL.match(row["price_level"]) and DECIMAL.match(row["new_quantity"])
            assert row["side"] in ("bid", "offer")
        for t in ev.get("tickers", []):
            for k, v in t.items():
                if k not in ("type", "product_id"):
                    assert DECIMAL.match(v), (k, v)
        for t in ev.get("trades", []):
            assert DECIMAL.match(t["price"]) and DECIMAL.match(t["size"]) and t["side"] in ("BUY", "SELL")
            assert TS.match(t["time"]) and t["trade_id"].isdigit()
        for c in ev.get("candles", []):
            assert all(DECIMAL.match(c[k]) for k in ("high", "low", "open", "close", "volume", "start"))
        if "current_time" in ev:
            assert GO_TIME.match(ev["current_time"]) and isinstance(ev["heartbeat_counter"], int)


def test_frames_are_compact_json_with_coinbase_formats() -> None:
    """Every frame is compact JSON in Coinbase's key order, with its timestamp and decimal formats."""
    with SimulatedExchange(rate=300, depth=200) as sim:
        ws = connect(sim, ["level2", "ticker", "market_trades", "candles", "heartbeats", "status", "ticker_batch"])
        got = read_until(ws, lambda fs: any('"channel":"heartbeats"' in f for f in fs) and len(fs) > 200)
        channels = set()
        for text in got:
            msg = json.loads(text)
            assert json.dumps(msg, separators=(",", ":")) == text
            assert list(msg) == ["channel", "timestamp", "sequence_num", "events"]
            channels.add(msg["channel"])
            _check_values(msg)
        assert {"l2_data", "ticker", "market_trades", "candles", "heartbeats", "status", "ticker_batch",
                "subscriptions"} <= channels
        ws.close()


def test_frame_shapes_match_the_real_capture(samples_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """For each channel and event type, our frames have exactly the key paths of the real capture."""
    import zstandard

    monkeypatch.setattr("mktpred.simulate.sources.PERIODIC_S", 0.3)  # candle updates sooner

    path = samples_dir / "coinbase-advanced-trade-2026-08-09.frames.jsonl.zst"
    with path.open("rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as raw:
        data = raw.read()
    real: dict[tuple[str, str], set[str]] = {}
    for line in data.splitlines():
        msg = json.loads(line)
        real.setdefault((msg["channel"], msg["events"][0].get("type", "")), set()).update(_key_paths(msg))
    ours: dict[tuple[str, str], set[str]] = {}
    with SimulatedExchange(rate=300, depth=200) as sim:
        ws = connect(sim, ["market_trades", "candles", "ticker", "level2", "heartbeats"])
        deadline = time.monotonic() + 30
        while set(real) - set(ours) and time.monotonic() < deadline:
            msg = json.loads(frames(ws, 1)[0])
            ours.setdefault((msg["channel"], msg["events"][0].get("type", "")), set()).update(_key_paths(msg))
        ws.close()
    assert set(ours) == set(real)
    for key, paths in real.items():
        assert ours[key] == paths, key


def _apply(book: dict[str, dict[str, Decimal]], update: dict[str, Any]) -> None:
    side = book[update["side"]]
    qty = Decimal(update["new_quantity"])
    if qty == 0:
        side.pop(update["price_level"], None)
    else:
        side[update["price_level"]] = qty


@pytest.mark.parametrize("rate", [1000.0, 0.0], ids=["model", "rate0-cycle"])
def test_rebuilt_book_matches_every_ticker(rate: float) -> None:
    """Applying the sent level2 frames to an empty book reproduces each ticker's best bid/ask."""
    n = 1500 if rate else 20_000  # rate 0: more than one pre-serialised cycle
    with SimulatedExchange(rate=rate, depth=300, seed=5) as sim:
        ws = connect(sim, ["level2", "ticker"])
        books: dict[str, dict[str, dict[str, Decimal]]] = {}
        checked = 0
        for text in frames(ws, n):
            msg = json.loads(text)
            for ev in msg["events"]:
                if msg["channel"] == "l2_data":
                    if ev["type"] == "snapshot":
                        books[ev["product_id"]] = {"bid": {}, "offer": {}}
                    for u in ev["updates"]:
                        _apply(books[ev["product_id"]], u)
                elif msg["channel"] == "ticker" and ev["tickers"][0]["product_id"] in books:
                    t = ev["tickers"][0]
                    book = books[t["product_id"]]
                    best_bid = max(book["bid"], key=Decimal)
                    best_ask = min(book["offer"], key=Decimal)
                    assert Decimal(best_bid) < Decimal(best_ask)
                    assert (t["best_bid"], t["best_ask"]) == (best_bid, best_ask)
                    assert Decimal(t["best_bid_quantity"]) == book["bid"][best_bid]
                    assert Decimal(t["best_ask_quantity"]) == book["offer"][best_ask]
                    checked += 1
        ws.close()
        assert checked > 50


def test_same_seed_gives_the_same_stream_on_every_connection() -> None:
    """Two connections of one seeded server see the same snapshot and the same updates."""
    with SimulatedExchange(rate=500, depth=100, seed=9) as sim:
        def levels(ws: websocket.WebSocket) -> list[Any]:
            out = []
            for text in frames(ws, 60):
                msg = json.loads(text)
                if msg["channel"] == "l2_data":
                    out.append([(u["side"], u["price_level"], u["new_quantity"]) for u in msg["events"][0]["updates"]])
            return out

        a = connect(sim, ["level2"], ["BTC-USD"])
        first = levels(a)
        b = connect(sim, ["level2"], ["BTC-USD"])
        second = levels(b)
        a.close()
        b.close()
    assert first == second and len(first) > 20


def test_heartbeats_once_a_second_with_uptime_counter() -> None:
    """Heartbeats arrive about once a second and heartbeat_counter counts server uptime seconds."""
    with SimulatedExchange(rate=5, depth=10) as sim:
        ws = connect(sim, ["heartbeats"])
        got = [json.loads(f) for f in read_until(ws, lambda fs: len(fs) >= 3)]
        ws.close()
    beats = [m for m in got if m["channel"] == "heartbeats"]
    counters = [m["events"][0]["heartbeat_counter"] for m in beats]
    assert counters == list(range(counters[0], counters[0] + len(counters)))
    gaps = [parse_rfc3339_ns(b["timestamp"]) - parse_rfc3339_ns(a["timestamp"]) for a, b in itertools.pairwise(beats)]
    assert all(0.5e9 < g < 2.5e9 for g in gaps)


def test_stop_is_prompt_even_when_a_client_stopped_reading() -> None:
    """Leaving the block closes a connection whose client reads nothing (server blocked on back-pressure)."""
    sim = SimulatedExchange(products=["BTC-USD"], rate=0, depth=100).start()
    try:
        ws = connect(sim, ["level2"], ["BTC-USD"])
        assert sim.wait_for(lambda s: bool(s.connections()) and s.connections()[0].frames_sent > 1000)
    finally:
        start = time.monotonic()
        sim.stop()
    assert time.monotonic() - start < 10
    log = sim.connections()[0]
    assert log.closed and log.close_reason == "server stopped"
    with pytest.raises((websocket.WebSocketException, ConnectionError, TimeoutError)):
        while True:  # drain what was buffered; the stream then ends
            ws.recv_data()
