"""Golden conversion: a small hand-checked input gives exactly the expected rows in every table.

The same test body runs over every available engine (``tests.unit.gpu_standins.ENGINES``: the CPU
engine, the GPU engine's host side over a stand-in reader, and cuDF on a real GPU where one is usable).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mktpred.config import Config
from mktpred.convert.runner import run_convert
from mktpred.convert.segment import convert_one, segment_of
from mktpred.store.schemas import TABLE_SCHEMAS
from tests.unit.gpu_standins import ENGINES, make_engine

R = 1_786_309_548_300_000_000  # 2026-08-09T21:05:48.3Z
MIDNIGHT = 1_786_320_000_000_000_000  # 2026-08-10T00:00:00Z
T48 = 1_786_309_548_000_000_000  # 2026-08-09T21:05:48Z

LINES = [
    # 1 collector event
    {"recv_ns": R + 1, "conn": "c1", "event": "open", "url": "wss://example"},
    # 2 subscription ack
    {"recv_ns": R + 2, "conn": "c1", "msg": {"channel": "subscriptions", "timestamp": "2026-08-09T21:05:48.2Z",
                                             "sequence_num": 0, "events": [{"subscriptions": {"level2": ["BTC-USD"]}}]}},
    # 3 level2 snapshot, 9-digit timestamp, offer side
    {"recv_ns": R + 3, "conn": "c1", "msg": {
        "channel": "l2_data", "timestamp": "2026-08-09T21:05:48.228568804Z", "sequence_num": 1,
        "events": [{"type": "snapshot", "product_id": "BTC-USD", "updates": [
            {"side": "bid", "event_time": "2026-08-09T21:05:48.170326Z", "price_level": "65083.66",
             "new_quantity": "0.20371215"},
            {"side": "bid", "event_time": "2026-08-09T21:05:48.170326Z", "price_level": "65083.27",
             "new_quantity": "0.02244516"},
            {"side": "offer", "event_time": "2026-08-09T21:05:48.170326Z", "price_level": "65083.67",
             "new_quantity": "0.24290402"},
            {"side": "offer", "event_time": "2026-08-09T21:05:48.170326Z", "price_level": "65084",
             "new_quantity": "1"}]}]}},
    # 4 level2 update: two events in one frame, whole-second timestamp
    {"recv_ns": R + 4, "conn": "c1", "msg": {
        "channel": "l2_data", "timestamp": "2026-08-09T21:05:49Z", "sequence_num": 2, "events": [
            {"type": "update", "product_id": "BTC-USD", "updates": [
                {"side": "bid", "event_time": "2026-08-09T21:05:48.9Z", "price_level": "65083.66",
                 "new_quantity": "0"}]},
            {"type": "update", "product_id": "ETH-USD", "updates": [
                {"side": "offer", "event_time": "2026-08-09T21:05:48.95Z", "price_level": "1919.49",
                 "new_quantity": "0.5"},
                {"side": "bid", "event_time": "2026-08-09T21:05:48.95Z", "price_level": "1919.44",
                 "new_quantity": "0.02858092"}]}]}},
    # 5 a bare ticker snapshot (no wrapper: recv_time and conn are null)
    {"channel": "ticker", "timestamp": "2026-08-09T21:05:48.229198328Z", "sequence_num": 3, "events": [
        {"type": "snapshot", "tickers": [
            {"type": "ticker", "product_id": "BTC-USD", "price": "65086.18", "volume_24_h": "2867.54532609",
             "low_24_h": "64675.22", "high_24_h": "65252.99", "low_52_w": "57717.55", "high_52_w": "126296",
             "price_percent_chg_24_h": "0.09601107287722", "best_bid": "65083.66", "best_ask": "65083.67",
             "best_bid_quantity": "0.20371215", "best_ask_quantity": "0.24290402"}]}]},
    # 6 ticker_batch with two tickers, one without the 52-week fields
    {"recv_ns": R + 6, "conn": "c1", "msg": {
        "channel": "ticker_batch", "timestamp": "2026-08-09T21:05:50.5Z", "sequence_num": 4, "events": [
            {"type": "update", "tickers": [
                {"type": "ticker", "product_id": "BTC-USD", "price": "65090", "volume_24_h": "2868",
                 "low_24_h": "64675.22", "high_24_h": "65252.99", "price_percent_chg_24_h": "0.1",
                 "best_bid": "65089.99", "best_ask": "65090.01", "best_bid_quantity": "0.1",
                 "best_ask_quantity": "0.2"},
                {"type": "ticker", "product_id": "ETH-USD", "price": "1919.41", "volume_24_h": "19975.95927439",
                 "low_24_h": "1911.04", "high_24_h": "1925", "low_52_w": "1505", "high_52_w": "4955.9",
                 "price_percent_chg_24_h": "0.02501394006035", "best_bid": "1919.44", "best_ask": "1919.49",
                 "best_bid_quantity": "0.02858092", "best_ask_quantity": "0.07814824"}]}]}},
    # 7 trades
    {"recv_ns": R + 7, "conn": "c1", "msg": {
        "channel": "market_trades", "timestamp": "2026-08-09T21:05:51.000000009Z", "sequence_num": 5, "events": [
            {"type": "update", "trades": [
                {"product_id": "BTC-USD", "trade_id": "1068572091", "price": "65083.67", "size": "0.01034361",
                 "time": "2026-08-09T21:05:48.167634Z", "side": "SELL"},
                {"product_id": "ETH-USD", "trade_id": "55", "price": "1919.4", "size": "2",
                 "time": "2026-08-09T21:05:50Z", "side": "BUY"}]}]}},
    # 8 candles: a messages row only
    {"recv_ns": R + 8, "conn": "c1", "msg": {
        "channel": "candles", "timestamp": "2026-08-09T21:05:51.491081826Z", "sequence_num": 6, "events": [
            {"type": "update", "candles": [{"start": "1786309500", "high": "1919.6", "low": "1919.27",
                                            "open": "1919.58", "close": "1919.41", "volume": "36.36630914",
                                            "product_id": "ETH-USD"}]}]}},
    # 9 bare heartbeat
    {"channel": "heartbeats", "timestamp": "2026-08-09T21:05:52.856364007Z", "sequence_num": 7, "events": [
        {"current_time": "2026-08-09 21:05:52.854840045 +0000 UTC m=+41691.260485341", "heartbeat_counter": 41691}]},
    # 10 a gap event
    {"recv_ns": R + 10, "conn": "c1", "event": "gap", "expected": 8, "got": 10},
    # 11 a frame the collector could not parse: quarantined
    {"recv_ns": R + 11, "conn": "c1", "raw": '{"channel": tru'},
    # 12 after UTC midnight: another partition
    {"recv_ns": MIDNIGHT + 123, "conn": "c1", "msg": {
        "channel": "l2_data", "timestamp": "2026-08-10T00:00:00.000000001Z", "sequence_num": 10, "events": [
            {"type": "update", "product_id": "BTC-USD", "updates": [
                {"side": "offer", "event_time": "2026-08-09T23:59:59.999999Z", "price_level": "65100.5",
                 "new_quantity": "0.3"}]}]}},
    # 13 an error frame (no timestamp): partitioned by its receive time
    {"recv_ns": MIDNIGHT + 200, "conn": "c1", "msg": {"type": "error", "message": "rate limit exceeded"}},
]
TORN_TAIL = '{"recv_ns": 1786320000000000300, "conn": "c1", "msg": {"chan'

ET = 1_786_309_548_170_326  # event_time of the snapshot, microseconds
L2_0809 = [
    # recv_time, time, event_time, conn, seq, product_id, is_snapshot, side, price, size
    (R + 3, T48 + 228_568_804, ET, "c1", 1, "BTC-USD", True, "bid", 65083.66, 0.20371215),
    (R + 3, T48 + 228_568_804, ET, "c1", 1, "BTC-USD", True, "bid", 65083.27, 0.02244516),
    (R + 3, T48 + 228_568_804, ET, "c1", 1, "BTC-USD", True, "ask", 65083.67, 0.24290402),
    (R + 3, T48 + 228_568_804, ET, "c1", 1, "BTC-USD", True, "ask", 65084.0, 1.0),
    (R + 4, T48 + 1_000_000_000, 1_786_309_548_900_000, "c1", 2, "BTC-USD", False, "bid", 65083.66, 0.0),
    (R + 4, T48 + 1_000_000_000, 1_786_309_548_950_000, "c1", 2, "ETH-USD", False, "ask", 1919.49, 0.5),
    (R + 4, T48 + 1_000_000_000, 1_786_309_548_950_000, "c1", 2, "ETH-USD", False, "bid", 1919.44, 0.02858092),
]
L2_0810 = [(MIDNIGHT + 123, MIDNIGHT + 1, MIDNIGHT // 1000 - 1, "c1", 10, "BTC-USD", False, "ask", 65100.5, 0.3)]
TICKER = [
    (None, T48 + 229_198_328, None, 3, "BTC-USD", True, 65086.18, 2867.54532609, 64675.22, 65252.99, 57717.55,
     126296.0, 0.09601107287722, 65083.66, 0.20371215, 65083.67, 0.24290402),
    (R + 6, T48 + 2_500_000_000, "c1", 4, "BTC-USD", False, 65090.0, 2868.0, 64675.22, 65252.99, None, None, 0.1,
     65089.99, 0.1, 65090.01, 0.2),
    (R + 6, T48 + 2_500_000_000, "c1", 4, "ETH-USD", False, 1919.41, 19975.95927439, 1911.04, 1925.0, 1505.0,
     4955.9, 0.02501394006035, 1919.44, 0.02858092, 1919.49, 0.07814824),
]
TRADES = [
    (R + 7, T48 + 3_000_000_009, "c1", 5, "BTC-USD", False, "1068572091", "SELL", 65083.67, 0.01034361,
     1_786_309_548_167_634, "buy"),
    (R + 7, T48 + 3_000_000_009, "c1", 5, "ETH-USD", False, "55", "BUY", 1919.4, 2.0, 1_786_309_550_000_000, "sell"),
]
MESSAGES_0809 = [
    # recv_time, time, conn, seq, channel, n_events, n_rows
    (R + 2, T48 + 200_000_000, "c1", 0, "subscriptions", 1, 0),
    (R + 3, T48 + 228_568_804, "c1", 1, "l2_data", 1, 4),
    (R + 4, T48 + 1_000_000_000, "c1", 2, "l2_data", 2, 3),
    (None, T48 + 229_198_328, None, 3, "ticker", 1, 1),
    (R + 6, T48 + 2_500_000_000, "c1", 4, "ticker_batch", 1, 2),
    (R + 7, T48 + 3_000_000_009, "c1", 5, "market_trades", 1, 2),
    (R + 8, T48 + 3_491_081_826, "c1", 6, "candles", 1, 0),
    (None, T48 + 4_856_364_007, None, 7, "heartbeats", 1, 0),
]
MESSAGES_0810 = [
    (MIDNIGHT + 123, MIDNIGHT + 1, "c1", 10, "l2_data", 1, 1),
    (MIDNIGHT + 200, None, "c1", None, "error", 0, 0),
]
EVENTS = [
    (R + 1, R + 1, "c1", "open", None, None, '{"url":"wss://example"}'),
    (R + 10, R + 10, "c1", "gap", 8, 10, None),
]
STEM = "coinbase_20260809T210548Z"


def write_input(path: Path, torn: bool = False) -> None:
    text = "".join(json.dumps(rec) + "\n" for rec in LINES)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + (TORN_TAIL if torn else ""))


def rows(path: Path) -> list[tuple[Any, ...]]:
    """A Parquet file's rows, timestamps as integers (no precision lost on the way)."""
    table = pq.read_table(path)
    cols = [pa.compute.cast(c, pa.int64()) if pa.types.is_timestamp(c.type) else c for c in table.columns]
    return [tuple(r.values()) for r in pa.table(cols, names=table.column_names).to_pylist()]


def check_store(root: Path) -> None:
    expected = {
        ("l2", "2026-08-09"): L2_0809, ("l2", "2026-08-10"): L2_0810, ("ticker", "2026-08-09"): TICKER,
        ("trades", "2026-08-09"): TRADES, ("messages", "2026-08-09"): MESSAGES_0809,
        ("messages", "2026-08-10"): MESSAGES_0810, ("events", "2026-08-09"): EVENTS,
    }
    written = {(p.parts[-3], p.parts[-2][5:]) for p in root.glob("*/date=*/*.parquet")}
    assert written == set(expected)
    for (table, date), want in expected.items():
        path = root / table / f"date={date}" / f"{STEM}.parquet"
        assert pq.read_schema(path).equals(TABLE_SCHEMAS[table]), table
        assert rows(path) == want, (table, date)
    quarantine = [json.loads(x) for x in (root / "_quarantine" / f"{STEM}.jsonl").read_text().splitlines()]
    assert [(q["line"], q["reason"]) for q in quarantine] == [(11, "the collector kept a frame that is not valid JSON")]
    assert json.loads(quarantine[0]["text"]) == LINES[10]


@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("allow_direct", [True, False], ids=["direct", "chunked"])
def test_golden_rows_in_every_table(tmp_path: Path, allow_direct: bool, engine_name: str) -> None:
    """Every engine: every channel, bare and wrapped, snapshots, offer->ask, 9-digit times, midnight: exact rows."""
    src = tmp_path / "raw" / f"{STEM}.jsonl"
    write_input(src)
    engine = make_engine(engine_name)
    try:
        res = convert_one(segment_of(src), engine, tmp_path / "store", chunk_bytes=1000, compression="zstd",
                          compression_level=3, row_group_rows=1000, staging_root=tmp_path / "staging",
                          allow_direct=allow_direct)
    finally:
        engine.close()
    assert res.rows == {"l2": 8, "ticker": 3, "trades": 2, "messages": 10, "events": 2}
    assert (res.lines, res.invalid, res.truncated) == (13, 1, 0)
    assert res.mode == ("direct" if allow_direct else "chunked")
    check_store(tmp_path / "store")


def test_golden_part_segment_with_torn_tail(tmp_path: Path) -> None:
    """A .part segment is read up to its last complete line with --include-latest; the tail counts."""
    write_input(tmp_path / "raw" / f"{STEM}.jsonl.part", torn=True)
    cfg = Config()
    cfg = replace(cfg, paths=replace(cfg.paths, raw_dir=tmp_path / "raw", parquet_dir=tmp_path / "store"))
    summary = run_convert(cfg, include_latest=True, max_invalid=5)
    assert (summary.converted, summary.lines, summary.invalid, summary.truncated) == (1, 13, 1, 1)
    check_store(tmp_path / "store")
    entry = json.loads((tmp_path / "store" / "_manifest.json").read_text())["sources"]
    (only,) = entry.values()
    assert only["partial"] is True and only["truncated"] == 1
