"""Hypothesis round trip: random valid frames -> raw records -> convert -> rows equal to the frames."""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mktpred.coinbase.protocol import format_decimal
from mktpred.coinbase.timestamps import format_rfc3339_ns, utc_date
from mktpred.convert.cpu_engine import CpuEngine
from mktpred.convert.segment import convert_one, segment_of

NS_2020 = 1_577_836_800 * 10**9
NS_2030 = 1_893_456_000 * 10**9

decimals = st.decimals(min_value=0, max_value=10**7, places=8, allow_nan=False, allow_infinity=False)
times = st.integers(min_value=NS_2020, max_value=NS_2030)
products = st.sampled_from(["BTC-USD", "ETH-USD", "SOL-USD"])


def num(d: Decimal) -> str:
    return format_decimal(d)


@st.composite
def frames(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["l2_data", "ticker", "market_trades"]))
    ev_type = draw(st.sampled_from(["snapshot", "update"]))
    if kind == "l2_data":
        events = [{"type": ev_type, "product_id": draw(products), "updates": [
            {"side": draw(st.sampled_from(["bid", "offer"])),
             "event_time": format_rfc3339_ns(draw(times) // 1000 * 1000),
             "price_level": num(draw(decimals)), "new_quantity": num(draw(decimals))}
            for _ in range(draw(st.integers(0, 4)))]} for _ in range(draw(st.integers(1, 2)))]
    elif kind == "ticker":
        events = [{"type": ev_type, "tickers": [
            {"type": "ticker", "product_id": draw(products), "price": num(draw(decimals)),
             "volume_24_h": num(draw(decimals)), "low_24_h": num(draw(decimals)), "high_24_h": num(draw(decimals)),
             "low_52_w": num(draw(decimals)), "high_52_w": num(draw(decimals)),
             "price_percent_chg_24_h": num(draw(decimals)), "best_bid": num(draw(decimals)),
             "best_ask": num(draw(decimals)), "best_bid_quantity": num(draw(decimals)),
             "best_ask_quantity": num(draw(decimals))} for _ in range(draw(st.integers(1, 2)))]}]
    else:
        events = [{"type": ev_type, "trades": [
            {"product_id": draw(products), "trade_id": str(draw(st.integers(1, 10**10))),
             "price": num(draw(decimals)), "size": num(draw(decimals)),
             "time": format_rfc3339_ns(draw(times) // 1000 * 1000), "side": draw(st.sampled_from(["BUY", "SELL"]))}
            for _ in range(draw(st.integers(1, 3)))]}]
    return {"channel": kind, "timestamp": format_rfc3339_ns(draw(times)), "events": events}


records = st.lists(st.tuples(frames(), st.booleans(), times, st.sampled_from(["a-1", "b-2"])), min_size=1,
                   max_size=12)


def ns(text: str) -> int:
    """Independent parse of the formatter's output (trimmed fraction, Z)."""
    import calendar

    date, clock = text[:-1].split("T")
    hms, _, frac = clock.partition(".")
    secs = calendar.timegm((*map(int, date.split("-")), *map(int, hms.split(":"))))
    return secs * 10**9 + int((frac or "0").ljust(9, "0"))


def expected(recs: list[tuple[dict[str, Any], bool, int, str]]) -> dict[tuple[str, str], list[tuple[Any, ...]]]:
    out: dict[tuple[str, str], list[tuple[Any, ...]]] = defaultdict(list)
    for seq, (frame, wrapped, recv, conn) in enumerate(recs):
        r, c = (recv, conn) if wrapped else (None, None)
        t = ns(frame["timestamp"])
        date = utc_date(t)
        n_rows = 0
        for ev in frame["events"]:
            snap = ev["type"] == "snapshot"
            if frame["channel"] == "l2_data":
                for u in ev["updates"]:
                    out[("l2", date)].append((r, t, ns(u["event_time"]) // 1000, c, seq, ev["product_id"], snap,
                                              "ask" if u["side"] == "offer" else "bid", float(u["price_level"]),
                                              float(u["new_quantity"])))
                    n_rows += 1
            elif frame["channel"] == "ticker":
                for k in ev["tickers"]:
                    out[("ticker", date)].append((r, t, c, seq, k["product_id"], snap, *(float(k[f]) for f in (
                        "price", "volume_24_h", "low_24_h", "high_24_h", "low_52_w", "high_52_w",
                        "price_percent_chg_24_h", "best_bid", "best_bid_quantity", "best_ask", "best_ask_quantity"))))
                    n_rows += 1
            else:
                for x in ev["trades"]:
                    out[("trades", date)].append((r, t, c, seq, x["product_id"], snap, x["trade_id"], x["side"],
                                                  float(x["price"]), float(x["size"]), ns(x["time"]) // 1000,
                                                  # the maker's side: a SELL trade was a taker buy
                                                  {"SELL": "buy", "BUY": "sell"}[x["side"]]))
                    n_rows += 1
        out[("messages", date)].append((r, t, c, seq, frame["channel"], len(frame["events"]), n_rows))
    return out


def read_rows(path: Path) -> list[tuple[Any, ...]]:
    t = pq.read_table(path)
    cols = [pc.cast(col, pa.int64()) if pa.types.is_timestamp(col.type) else col for col in t.columns]
    return [tuple(r.values()) for r in pa.table(cols, names=t.column_names).to_pylist()]


@pytest.fixture(scope="module")
def engine() -> Iterator[CpuEngine]:
    eng = CpuEngine()
    yield eng
    eng.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recs=records)
def test_random_frames_round_trip(engine: CpuEngine, recs: list[tuple[dict[str, Any], bool, int, str]]) -> None:
    """Whatever valid frames go in, exactly their content comes out, in order, in the right partition."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = root / "raw" / "seg.jsonl"
        src.parent.mkdir()
        with open(src, "w") as fh:
            for seq, (frame, wrapped, recv, conn) in enumerate(recs):
                f = {**frame, "sequence_num": seq}
                fh.write(json.dumps({"recv_ns": recv, "conn": conn, "msg": f} if wrapped else f) + "\n")
        res = convert_one(segment_of(src), engine, root / "store", chunk_bytes=1 << 20, compression="zstd",
                          compression_level=1, row_group_rows=1000, staging_root=root / "staging")
        want = expected(recs)
        got = {(p.parts[-3], p.parts[-2][5:]): read_rows(p) for p in (root / "store").glob("*/date=*/*.parquet")}
        assert res.invalid == 0
        assert got == dict(want)
