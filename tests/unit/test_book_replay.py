"""The replay engine on hand-built books with known answers."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mktpred.book import BookChunk, GapIndex, Replayer, ReplayStats, load_gaps
from mktpred.book.gaps import load_conn_spans
from mktpred.coinbase.timestamps import parse_rfc3339_ns, utc_date
from mktpred.store import open_store
from mktpred.store.schemas import TABLE_SCHEMAS

T0 = parse_rfc3339_ns("2026-08-09T12:00:01Z")
MS = 1_000_000

Frame = tuple[str, int, int, bool, str, list[tuple[str, float, float]]]


def write_table(root: Path, table: str, rows: list[dict[str, Any]], stem: str = "seg") -> None:
    by_day: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_day.setdefault(utc_date(r["time"]), []).append(r)
    for day, rs in by_day.items():
        d = root / table / f"date={day}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rs, schema=TABLE_SCHEMAS[table]), d / f"{stem}.parquet")


def write_l2(root: Path, frames: list[Frame], stem: str = "seg") -> None:
    rows = [dict(recv_time=t, time=t, event_time=t // 1000, conn=c, seq=s, product_id=p, is_snapshot=snap,
                 side=side, price=price, size=size)
            for c, s, t, snap, p, levels in frames for side, price, size in levels]
    write_table(root, "l2", rows, stem)


def write_messages(root: Path, msgs: list[tuple[str, int, int]], stem: str = "seg") -> None:
    """``(conn, seq, time)`` per frame."""
    write_table(root, "messages", [dict(recv_time=t, time=t, conn=c, seq=s, channel="l2_data", n_events=1, n_rows=1)
                                   for c, s, t in msgs], stem)


def replay(root: Path, depth: int, interval_ns: int | None, product: str = "BTC-USD",
           **kw: Any) -> tuple[BookChunk, ReplayStats]:
    store = open_store(root)
    batch_rows = kw.pop("batch_rows", 5)
    chunks: list[BookChunk] = []
    spans = load_conn_spans(store, product)
    rep = Replayer(product, depth, interval_ns=interval_ns, sink=chunks.append, gaps=load_gaps(store),
                   conn_ends={c: s.last for c, s in spans.items()}, chunk_rows=kw.pop("chunk_rows", 7), **kw)
    for b in store.l2_batches(product, batch_rows=batch_rows):
        rep.feed(b)
    stats = rep.finish()
    lv = np.concatenate([c.levels for c in chunks]) if chunks else np.empty((0, 4 * depth))
    cat = BookChunk(product, depth, np.concatenate([c.time for c in chunks]) if chunks else np.empty(0, np.int64),
                    [x for c in chunks for x in c.conn],
                    np.concatenate([c.seq for c in chunks]) if chunks else np.empty(0, np.int64),
                    np.concatenate([c.valid for c in chunks]) if chunks else np.empty(0, bool),
                    np.concatenate([c.crossed for c in chunks]) if chunks else np.empty(0, bool), lv)
    return cat, stats


def side(chunk: BookChunk, row: int, name: str) -> list[float]:
    """One side of one snapshot row without the padding (``name``: bid_price, ask_size, ...)."""
    vals = [chunk.column(f"{name}_{i}")[row] for i in range(chunk.depth)]
    return [v for v in vals if not math.isnan(v)]


def test_snapshot_updates_removal_readd_both_sides_short_depth(tmp_path: Path) -> None:
    """Every-update snapshots follow a known sequence of updates; a short side is padded with nulls."""
    write_l2(tmp_path, [
        ("c", 0, T0, True, "BTC-USD", [("bid", 100.0, 1.0), ("bid", 99.0, 2.0), ("ask", 101.0, 3.0)]),
        ("c", 1, T0 + 1, False, "BTC-USD", [("bid", 99.5, 4.0), ("ask", 102.0, 5.0)]),
        ("c", 2, T0 + 2, False, "BTC-USD", [("bid", 100.0, 0.0)]),
        ("c", 3, T0 + 3, False, "BTC-USD", [("bid", 100.0, 6.0), ("ask", 101.0, 3.5)]),
        ("c", 4, T0 + 4, False, "ETH-USD", [("bid", 1.0, 1.0)]),
    ])
    out, stats = replay(tmp_path, 3, None)
    assert out.time.tolist() == [T0, T0 + 1, T0 + 2, T0 + 3]
    assert out.seq.tolist() == [0, 1, 2, 3]
    assert side(out, 0, "bid_price") == [100.0, 99.0] and side(out, 0, "ask_price") == [101.0]
    assert side(out, 1, "bid_price") == [100.0, 99.5, 99.0] and side(out, 1, "bid_size") == [1.0, 4.0, 2.0]
    assert side(out, 1, "ask_price") == [101.0, 102.0]
    assert side(out, 2, "bid_price") == [99.5, 99.0]
    assert side(out, 3, "bid_price") == [100.0, 99.5, 99.0] and side(out, 3, "bid_size") == [6.0, 4.0, 2.0]
    assert side(out, 3, "ask_size") == [3.5, 5.0]
    assert math.isnan(out.column("ask_price_2")[3])
    assert out.valid.all() and not out.crossed.any()
    assert (stats.frames, stats.updates, stats.snapshot_levels, stats.snapshots) == (4, 5, 3, 1)
    table = out.to_arrow()
    assert table.column("ask_price_2").null_count == 4
    assert table.column("product_id").to_pylist() == ["BTC-USD"] * 4


def test_gap_makes_book_invalid_until_next_snapshot(tmp_path: Path) -> None:
    """A seq jump in messages marks snapshots invalid from the next frame until a snapshot."""
    write_l2(tmp_path, [
        ("c", 0, T0, True, "BTC-USD", [("bid", 100.0, 1.0), ("ask", 101.0, 1.0)]),
        ("c", 2, T0 + 2, False, "BTC-USD", [("bid", 100.0, 2.0)]),
        ("c", 6, T0 + 6, False, "BTC-USD", [("bid", 100.0, 3.0)]),
        ("c", 7, T0 + 7, False, "BTC-USD", [("bid", 100.0, 4.0)]),
        ("c", 9, T0 + 9, True, "BTC-USD", [("bid", 90.0, 1.0), ("ask", 91.0, 1.0)]),
        ("c", 10, T0 + 10, False, "BTC-USD", [("bid", 90.0, 5.0)]),
    ])
    write_messages(tmp_path, [("c", s, T0 + s) for s in range(12) if s != 5])
    out, stats = replay(tmp_path, 2, None)
    assert out.seq.tolist() == [0, 2, 6, 7, 9, 10]
    assert out.valid.tolist() == [True, True, False, False, True, True]
    assert side(out, 4, "bid_price") == [90.0]  # the snapshot replaced the whole book
    assert stats.invalid_rows == 2
    (span,) = stats.invalid_spans
    assert (span.conn, span.start, span.end, span.expected_after_seq) == ("c", T0 + 6, T0 + 9, 2)


def test_collector_gap_event_also_invalidates(tmp_path: Path) -> None:
    """A `gap` row in the events table (expected/got) is a gap even when messages shows none."""
    write_l2(tmp_path, [
        ("c", 0, T0, True, "BTC-USD", [("bid", 100.0, 1.0), ("ask", 101.0, 1.0)]),
        ("c", 1, T0 + 1, False, "BTC-USD", [("bid", 100.0, 2.0)]),
        ("c", 3, T0 + 3, False, "BTC-USD", [("bid", 100.0, 3.0)]),
    ])
    write_table(tmp_path, "events", [dict(recv_time=T0 + 3, time=T0 + 3, conn="c", event="gap", expected=2, got=3,
                                          detail="{}")])
    assert load_gaps(open_store(tmp_path)).count() == 1
    out, _ = replay(tmp_path, 1, None)
    assert out.valid.tolist() == [True, True, False]


def test_new_conn_starts_a_new_book(tmp_path: Path) -> None:
    """Frames of a new connection before its snapshot are skipped; its snapshot starts from empty."""
    write_l2(tmp_path, [
        ("a", 0, T0, True, "BTC-USD", [("bid", 100.0, 1.0), ("bid", 98.0, 1.0), ("ask", 101.0, 1.0)]),
        ("a", 1, T0 + 1, False, "BTC-USD", [("bid", 99.0, 1.0)]),
        ("b", 5, T0 + 5, False, "BTC-USD", [("bid", 97.0, 1.0)]),
        ("b", 6, T0 + 6, True, "BTC-USD", [("bid", 96.0, 2.0), ("ask", 102.0, 2.0)]),
        ("b", 7, T0 + 7, False, "BTC-USD", [("ask", 101.5, 1.0)]),
    ])
    out, stats = replay(tmp_path, 5, None)
    assert out.conn == ["a", "a", "b", "b"]
    assert out.seq.tolist() == [0, 1, 6, 7]
    assert side(out, 2, "bid_price") == [96.0] and side(out, 3, "ask_price") == [101.5, 102.0]
    assert stats.before_snapshot == 1 and stats.conns == 2 and out.valid.all()


def test_crossed_book_is_flagged_and_counted(tmp_path: Path) -> None:
    """A bid at the best ask makes a crossed snapshot; the levels are kept as they are."""
    write_l2(tmp_path, [
        ("c", 0, T0, True, "BTC-USD", [("bid", 100.0, 1.0), ("ask", 101.0, 1.0)]),
        ("c", 1, T0 + 1, False, "BTC-USD", [("bid", 101.0, 2.0)]),
        ("c", 2, T0 + 2, False, "BTC-USD", [("bid", 101.0, 0.0)]),
    ])
    out, stats = replay(tmp_path, 2, None)
    assert out.crossed.tolist() == [False, True, False]
    assert side(out, 1, "bid_price") == [101.0, 100.0] and side(out, 1, "ask_price") == [101.0]
    assert stats.crossed_rows == 1 and stats.first_crossed == T0 + 1


def test_grid_at_exact_boundaries(tmp_path: Path) -> None:
    """The state at grid point g includes frames with time <= g; the grid runs to the conn's last frame."""
    base = T0 - T0 % (100 * MS)  # a multiple of 100 ms
    write_l2(tmp_path, [
        ("c", 0, base, True, "BTC-USD", [("bid", 100.0, 1.0), ("ask", 101.0, 1.0)]),
        ("c", 1, base + 100 * MS, False, "BTC-USD", [("bid", 100.0, 2.0)]),
        ("c", 2, base + 100 * MS + 1, False, "BTC-USD", [("bid", 100.0, 3.0)]),
        ("c", 3, base + 250 * MS, False, "BTC-USD", [("bid", 100.0, 4.0)]),
    ])
    # the connection lives on (a heartbeat) until base + 420 ms
    write_messages(tmp_path, [("c", 0, base), ("c", 1, base + 100 * MS), ("c", 2, base + 100 * MS + 1),
                              ("c", 3, base + 250 * MS), ("c", 4, base + 420 * MS)])
    out, _ = replay(tmp_path, 1, 100 * MS)
    assert (out.time - base).tolist() == [0, 100 * MS, 200 * MS, 300 * MS, 400 * MS]
    assert out.column("bid_size_0").tolist() == [1.0, 2.0, 3.0, 4.0, 4.0]
    assert out.seq.tolist() == [0, 1, 2, 3, 3]
    out, _ = replay(tmp_path, 1, 100 * MS, emit_start=base + 150 * MS, emit_end=base + 400 * MS)
    assert (out.time - base).tolist() == [200 * MS, 300 * MS]


def test_grid_snapshot_off_the_grid(tmp_path: Path) -> None:
    """A book whose snapshot falls between grid points first appears at the next grid point."""
    base = T0 - T0 % (100 * MS)
    write_l2(tmp_path, [
        ("c", 0, base + 30 * MS, True, "BTC-USD", [("bid", 100.0, 1.0), ("ask", 101.0, 1.0)]),
        ("c", 1, base + 130 * MS, False, "BTC-USD", [("ask", 100.5, 2.0)]),
    ])
    out, _ = replay(tmp_path, 1, 100 * MS)
    assert (out.time - base).tolist() == [100 * MS]
    assert out.column("ask_price_0").tolist() == [101.0]


def _naive(frames: list[Frame], depth: int) -> list[tuple[int, int, list[float], list[float]]]:
    """(time, seq, bids best-first, asks best-first) after every frame of one conn, by brute force."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    out = []
    for _, seq, t, snap, _, levels in frames:
        if snap:
            bids, asks = {}, {}
        for s, p, q in levels:
            book = bids if s == "bid" else asks
            if q == 0:
                book.pop(p, None)
            else:
                book[p] = q
        out.append((t, seq, sorted(bids, reverse=True)[:depth], sorted(asks)[:depth]))
    return out


def test_random_stream_matches_brute_force(tmp_path: Path) -> None:
    """Grid and every-update output of a random stream equal a brute-force replay."""
    rng = random.Random(7)
    frames: list[Frame] = [("c", 0, T0, True, "BTC-USD",
                            [("bid", float(p), 1.0) for p in range(900, 1000)]
                            + [("ask", float(p), 1.0) for p in range(1000, 1100)])]
    t = T0
    for seq in range(1, 600):
        t += rng.choice([0, 1, 7 * MS, 33 * MS, 100 * MS, 250 * MS])
        levels = []
        for _ in range(rng.randint(1, 6)):
            is_bid = rng.random() < 0.5
            p = float(rng.randint(960, 1000) if is_bid else rng.randint(1000, 1040))
            levels.append(("bid" if is_bid else "ask", p, rng.choice([0.0, 0.0, 1.5, 2.0])))
        frames.append(("c", seq, t, False, "BTC-USD", levels))
    write_l2(tmp_path, frames)
    ref = _naive(frames, 4)
    out, _ = replay(tmp_path, 4, None, batch_rows=37)
    assert out.seq.tolist() == [r[1] for r in ref]
    for i, (_, _, b, a) in enumerate(ref):
        assert side(out, i, "bid_price") == b and side(out, i, "ask_price") == a
    step = 100 * MS
    out, _ = replay(tmp_path, 4, step, batch_rows=37)
    times = [r[0] for r in ref]
    expected_grid = list(range(-(-T0 // step) * step, times[-1] + 1, step))
    assert out.time.tolist() == expected_grid
    for i, g in enumerate(expected_grid):
        j = max(k for k, tt in enumerate(times) if tt <= g)
        assert out.seq[i] == ref[j][1]
        assert side(out, i, "bid_price") == ref[j][2] and side(out, i, "ask_price") == ref[j][3]


def test_stale_frames_are_skipped_and_counted(tmp_path: Path) -> None:
    """A frame whose seq is not after the last one applied (a duplicate file) is skipped."""
    frames: list[Frame] = [("c", 0, T0, True, "BTC-USD", [("bid", 1.0, 1.0), ("ask", 2.0, 1.0)]),
                           ("c", 1, T0 + 1, False, "BTC-USD", [("bid", 1.0, 5.0)])]
    write_l2(tmp_path, frames, stem="a")
    write_l2(tmp_path, frames[1:], stem="b")
    out, stats = replay(tmp_path, 1, None)
    assert out.seq.tolist() == [0, 1] and stats.stale == 1


def test_gap_index_counts() -> None:
    """Missing-seq ranges merge and answer 'is there a gap between these frames' correctly."""
    g = GapIndex.from_pairs([("c", 5, 5), ("c", 6, 8), ("c", 20, 21), ("d", 1, 1)])
    assert g.count() == 3
    assert g.missing_upto("c", np.array([4, 5, 7, 9, 20, 30])).tolist() == [0, 1, 3, 4, 5, 6]
    assert g.gap_before("c", 3, np.array([4, 9, 10, 22])).tolist() == [False, True, False, True]
    assert g.gap_before("x", 0, np.array([5])).tolist() == [False]
