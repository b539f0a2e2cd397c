"""The market model and frame helpers: exact decimals, sound books, reproducible streams."""

from __future__ import annotations

import json
import re
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from mktpred.coinbase import format_decimal, parse_rfc3339_ns
from mktpred.simulate.frames import Frame, frame_from_text, go_time, scaled, ts_now, ts_us
from mktpred.simulate.model import ASK, BID, MarketModel, Renderer


@given(st.integers(min_value=-(10**18), max_value=10**18), st.integers(min_value=0, max_value=10))
def test_scaled_matches_format_decimal(units: int, decimals: int) -> None:
    """The integer formatter gives exactly what format_decimal gives for the same value."""
    assert scaled(units, decimals) == format_decimal(Decimal(units).scaleb(-decimals))


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**9))
def test_timestamps_round_trip(ns: int) -> None:
    """Frame timestamps keep every nanosecond; event times keep microseconds; zeros trimmed."""
    assert parse_rfc3339_ns(ts_now(ns)) == ns
    assert parse_rfc3339_ns(ts_us(ns)) == ns - ns % 1000
    assert not re.search(r"\.\d*0Z$", ts_now(ns))


def test_go_time_format() -> None:
    """Heartbeat current_time is Go's time.String(), trailing zeros trimmed, m=+ with 9 digits."""
    ns = 1786309548854840045
    assert go_time(ns, 41691.260485341) == "2026-08-09 21:05:48.854840045 +0000 UTC m=+41691.260485341"
    assert go_time(1786309548_100000000, 1.5) == "2026-08-09 21:05:48.1 +0000 UTC m=+1.500000000"


def test_frame_from_text_splits_at_the_top_level_sequence_number() -> None:
    """A recorded frame renumbers by replacing only the digits of its first sequence_num."""
    text = b'{"channel":"x","sequence_num": 1029,"events":[{"sequence_num":5}]}'
    fr = frame_from_text(text)
    assert fr.render(0) == b'{"channel":"x","sequence_num": 0,"events":[{"sequence_num":5}]}'
    assert fr.render(1029) == text
    bare = frame_from_text(b'{"type":"error","message":"authentication failure"}')
    assert not bare.numbered and bare.render(7) == bare.head
    assert Frame(b"a", b"b").render(12) == b"a12b"


def _check_book(model: MarketModel) -> None:
    for pm in model.products.values():
        book = pm.book
        assert book.bid_px == sorted(book.bids) and book.ask_px == sorted(book.asks)
        assert all(q > 0 for q in book.bids.values()) and all(q > 0 for q in book.asks.values())
        assert book.bids and book.asks
        assert book.bid_px[-1] < book.ask_px[0], "book crossed"


def test_books_stay_uncrossed_near_depth_and_trades_hit_the_touch() -> None:
    """After many steps each book is uncrossed, near its depth, and trades take the top level."""
    model = MarketModel(["BTC-USD", "ETH-USD"], seed=7, depth=300, now_ns=1_800_000_000 * 10**9)
    trades = 0
    for i in range(20_000):
        before = {p: pm.book.top() for p, pm in model.products.items()}
        events = model.step(1_800_000_000 * 10**9 + i * 1_000_000)
        for ev in events:
            if ev.kind == "trade":
                trades += 1
                assert ev.trade is not None
                bb, bq, ba, aq = before[ev.product]
                if ev.trade.maker_side == ASK:
                    assert ev.trade.price == ba and 0 < ev.trade.size <= aq
                else:
                    assert ev.trade.maker_side == BID and ev.trade.price == bb and 0 < ev.trade.size <= bq
    _check_book(model)
    assert trades > 100
    for pm in model.products.values():
        assert 200 <= len(pm.book.bids) <= 330 and 200 <= len(pm.book.asks) <= 330


def test_same_seed_same_market() -> None:
    """Two models with one seed produce identical events; another seed differs."""
    a, b, c = (MarketModel(["BTC-USD", "ETH-USD"], seed=s, depth=100, now_ns=10**18) for s in (3, 3, 4))
    seq_a = [(e.kind, e.product, e.changes) for i in range(500) for e in a.step(10**18 + i)]
    seq_b = [(e.kind, e.product, e.changes) for i in range(500) for e in b.step(10**18 + i)]
    seq_c = [(e.kind, e.product, e.changes) for i in range(500) for e in c.step(10**18 + i)]
    assert seq_a == seq_b
    assert seq_a != seq_c


def test_snapshot_holds_the_whole_book_best_first() -> None:
    """The level2 snapshot lists every bid best-first, then every offer best-first."""
    model = MarketModel(["BTC-USD"], seed=1, depth=50, now_ns=10**18)
    fr = Renderer(model).l2_snapshot("BTC-USD", 10**18)
    msg = json.loads(fr.render(0))
    rows = msg["events"][0]["updates"]
    book = model.products["BTC-USD"].book
    assert len(rows) == len(book.bids) + len(book.asks)
    sides = [r["side"] for r in rows]
    assert sides == ["bid"] * len(book.bids) + ["offer"] * len(book.asks)
    bids = [Decimal(r["price_level"]) for r in rows if r["side"] == "bid"]
    offers = [Decimal(r["price_level"]) for r in rows if r["side"] == "offer"]
    assert bids == sorted(bids, reverse=True) and offers == sorted(offers)
    assert bids[0] < offers[0]
