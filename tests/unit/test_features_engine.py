"""The feature engine on hand-built books: every column family against hand-written numbers."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mktpred.features import FeatureEngine, FeatureSpec, add_labels, aggressor_of
from mktpred.features.batch import rows_to_table

S = 1_000_000_000
MS = 1_000_000
T0 = 1_786_000_000 * S  # a whole second
SPEC = FeatureSpec(S, (S,))


def l2(eng: FeatureEngine, seq: int, t: int, levels: list[tuple[str, float, float]], snap: bool = False,
       conn: str = "c") -> list[dict[str, Any]]:
    return eng.on_l2(conn, seq, t, snap, np.array([s == "ask" for s, _, _ in levels]),
                     np.array([p for _, p, _ in levels]), np.array([q for _, _, q in levels]))


def trades(eng: FeatureEngine, seq: int, t: int, rows: list[tuple[float, float, int]], snap: bool = False,
           conn: str = "c") -> list[dict[str, Any]]:
    return eng.on_trades(conn, seq, t, snap, np.array([p for p, _, _ in rows]), np.array([q for _, q, _ in rows]),
                         np.array([a for _, _, a in rows], np.int8))


BOOK = [("bid", 100.0, 1.0), ("bid", 99.0, 2.0), ("ask", 101.0, 1.0), ("ask", 102.0, 2.0)]


def scenario() -> list[dict[str, Any]]:
    eng = FeatureEngine("BTC-USD", SPEC)
    rows = l2(eng, 2, T0 + 100 * MS, BOOK, snap=True)
    rows += trades(eng, 3, T0 + 150 * MS, [(100.0, 9.0, 1)], snap=True)  # history: not flow
    rows += l2(eng, 4, T0 + 200 * MS, [("bid", 100.5, 3.0)])  # bid price rise
    rows += trades(eng, 5, T0 + 1200 * MS, [(101.0, 0.3, 1), (100.0, 0.1, -1)])
    rows += l2(eng, 6, T0 + 1500 * MS, [("bid", 100.5, 0.0)])  # bid price fall (level removed)
    rows += l2(eng, 7, T0 + 2500 * MS, [("bid", 100.0, 4.0)])  # same bid price, size up
    rows += l2(eng, 8, T0 + 2600 * MS, [("ask", 101.0, 0.5)])  # same ask price, size down
    # (T0+3s, T0+4s]: no frames at all
    rows += l2(eng, 9, T0 + 4500 * MS, [("ask", 100.8, 2.0)])  # ask price fall
    rows += l2(eng, 10, T0 + 6 * S, [("ask", 100.8, 0.0)])  # ask price rise, exactly at a grid point
    rows += eng.advance(T0 + 6 * S)
    return rows


def test_grid_rows_and_top_of_book() -> None:
    """One row per grid point from the first snapshot on; top of book, seq and validity by hand."""
    rows = scenario()
    assert [r["time"] for r in rows] == [T0 + k * S for k in range(1, 7)]
    assert [r["seq"] for r in rows] == [4, 6, 8, 8, 9, 10]
    assert [r["valid"] for r in rows] == [False, True, True, True, True, True]  # the first interval began before the snapshot
    assert [(r["best_bid"], r["bid_size_1"], r["best_ask"], r["ask_size_1"]) for r in rows] == [
        (100.5, 3.0, 101.0, 1.0), (100.0, 1.0, 101.0, 1.0), (100.0, 4.0, 101.0, 0.5), (100.0, 4.0, 101.0, 0.5),
        (100.0, 4.0, 100.8, 2.0), (100.0, 4.0, 101.0, 0.5)]
    r = rows[0]
    assert r["mid"] == 100.75 and r["spread"] == 0.5
    assert r["spread_bps"] == pytest.approx(1e4 * 0.5 / 100.75)
    assert r["wmid"] == pytest.approx((100.5 * 1.0 + 101.0 * 3.0) / 4.0)
    assert r["imb_1"] == pytest.approx(0.5)
    assert r["imb_5"] == pytest.approx((3 + 1 + 2 - 1 - 2) / 9)
    assert r["imb_10"] == pytest.approx(1 / 3)
    assert (r["depth_bid_10bps"], r["depth_ask_10bps"]) == (0.0, 0.0)


def test_ofi_every_branch() -> None:
    """OFI per level: bid rise, bid fall with a removed level, same-price size changes, ask fall, ask rise."""
    rows = scenario()
    ofi = [[r[f"ofi_{k}"] for k in range(1, 6)] for r in rows]
    assert ofi[0] == [3.0, 1.0, 2.0, 0.0, 0.0]  # bid 100.5@3 in front: every bid level's price rose
    assert ofi[1] == [-3.0, -1.0, -2.0, 0.0, 0.0]  # removed again: level 3 is gone (size 0 at 99)
    assert ofi[2] == [3.0 + 0.5, 0.0, 0.0, 0.0, 0.0]  # bid 1 -> 4 at 100 (+3), ask 1 -> 0.5 at 101 (+0.5)
    assert ofi[3] == [0.0] * 5  # an interval with no frames
    assert ofi[4] == [-2.0, -0.5, -2.0, 0.0, 0.0]  # ask 100.8@2 in front
    assert ofi[5] == [2.0, 0.5, 2.0, 0.0, 0.0]  # and removed (the frame at exactly g belongs to g)


def test_trade_flow() -> None:
    """Trades by aggressor in their interval; the subscribe snapshot is not flow; no trades -> null tfi/vwap."""
    rows = scenario()
    assert [r["n_trades"] for r in rows] == [0, 2, 0, 0, 0, 0]
    r = rows[1]
    assert r["buy_volume"] == pytest.approx(0.3) and r["sell_volume"] == pytest.approx(0.1)
    assert r["tfi"] == pytest.approx(0.5)
    assert r["vwap"] == pytest.approx((101.0 * 0.3 + 100.0 * 0.1) / 0.4)
    for r in (rows[0], rows[2]):
        assert (r["buy_volume"], r["sell_volume"], r["tfi"], r["vwap"]) == (0.0, 0.0, None, None)


def test_returns_volatility_and_labels() -> None:
    """ret_1, rv over the window, fwd_ret_1s (null past the data)."""
    rows = scenario()
    mids = [100.75, 100.5, 100.5, 100.5, 100.4, 100.5]
    assert [r["mid"] for r in rows] == pytest.approx(mids)
    rets = [None] + [math.log(b / a) for a, b in itertools.pairwise(mids)]
    assert rows[0]["ret_1"] is None
    assert [r["ret_1"] for r in rows[1:]] == pytest.approx(rets[1:])
    rv = math.sqrt(sum(x * x for x in rets[1:] if x is not None))
    assert rows[5]["rv_10s"] == pytest.approx(rv) and rows[5]["rv_300s"] == pytest.approx(rv)
    assert rows[0]["rv_10s"] is None
    tbl = add_labels(rows_to_table(rows, SPEC), S, (S, 2 * S))
    assert tbl.column("fwd_ret_1s").to_pylist()[:5] == pytest.approx(rets[1:])
    assert tbl.column("fwd_ret_1s").to_pylist()[5] is None
    assert tbl.column("fwd_ret_2s").to_pylist()[0] == pytest.approx(math.log(100.5 / 100.75))
    assert tbl.column("fwd_ret_2s").to_pylist()[4:] == [None, None]


def test_depth_within_10bps() -> None:
    """Levels within 10 bps of mid are summed per side."""
    eng = FeatureEngine("X", SPEC)
    l2(eng, 1, T0 + 1, [("bid", 1000.0, 1.0), ("bid", 999.5, 2.0), ("bid", 998.0, 3.0),
                        ("ask", 1000.5, 1.0), ("ask", 1001.0, 1.0), ("ask", 1002.0, 5.0)], snap=True)
    (r,) = eng.advance(T0 + S)
    assert (r["depth_bid_10bps"], r["depth_ask_10bps"]) == (3.0, 2.0)  # mid 1000.25, +-1.00025


def test_gap_invalidates_until_snapshot_and_labels() -> None:
    """A gap makes rows invalid until the interval after the next snapshot; labels across it are null."""
    eng = FeatureEngine("X", SPEC)
    rows = l2(eng, 1, T0 + 1, BOOK, snap=True)
    rows += l2(eng, 2, T0 + 1100 * MS, [("bid", 100.0, 2.0)])
    rows += eng.on_gap("c", T0 + 2500 * MS)
    rows += l2(eng, 5, T0 + 2500 * MS, [("bid", 100.0, 3.0)])
    rows += l2(eng, 6, T0 + 3500 * MS, BOOK, snap=True)
    rows += eng.advance(T0 + 5 * S)
    assert [r["valid"] for r in rows] == [False, True, False, False, True]
    tbl = add_labels(rows_to_table(rows, SPEC), S, (S,))
    lab = tbl.column("fwd_ret_1s").to_pylist()
    assert lab[0] is not None and lab[1] is None and lab[2] is None and lab[3] == 0.0 and lab[4] is None


def test_new_connection_new_book_and_reset_flow() -> None:
    """A new connection starts a new book (no rows before its snapshot) and resets flow; labels don't cross."""
    eng = FeatureEngine("X", SPEC)
    rows = l2(eng, 1, T0 + 1, BOOK, snap=True, conn="a")
    rows += trades(eng, 2, T0 + 1500 * MS, [(101.0, 1.0, 1)], conn="a")
    rows += trades(eng, 1, T0 + 1600 * MS, [(101.0, 2.0, 1)], conn="b")  # new connection before its snapshot
    rows += l2(eng, 2, T0 + 2200 * MS, [("bid", 100.0, 1.0), ("ask", 100.5, 1.0)], snap=True, conn="b")
    rows += l2(eng, 9, T0 + 2300 * MS, [("bid", 100.25, 7.0)], conn="a")  # a late frame of the old connection
    rows += trades(eng, 10, T0 + 3300 * MS, [(101.0, 1.0, 1)], conn="a")
    rows += eng.advance(T0 + 4 * S)
    assert [(r["time"], r["conn"]) for r in rows] == [(T0 + S, "a"), (T0 + 3 * S, "b"), (T0 + 4 * S, "b")]
    assert rows[1]["valid"] is False and rows[2]["valid"] is True
    assert rows[1]["n_trades"] == 0 and rows[1]["ret_1"] is None
    assert rows[2]["n_trades"] == 0 and rows[2]["best_bid"] == 100.0  # the late frames were ignored
    tbl = add_labels(rows_to_table(rows, SPEC), S, (S,))
    assert tbl.column("fwd_ret_1s").to_pylist() == [None, 0.0, None]


def test_outage_between_connections_is_not_filled_with_stale_rows() -> None:
    """A recorder down for a day: the old book answers only HANDOVER_NS past its last frame, then the
    new connection's rows start at its snapshot (no day of stale rows, no loop over them)."""
    from mktpred.features.engine import HANDOVER_NS

    assert HANDOVER_NS == 60 * S
    eng = FeatureEngine("X", SPEC)
    rows = l2(eng, 1, T0 + 1, BOOK, snap=True, conn="a")
    rows += l2(eng, 2, T0 + 2 * S + 1, [("bid", 100.0, 3.0)], conn="a")  # the old connection's last frame
    day = 86_400 * S
    rows += l2(eng, 1, T0 + day + 500 * MS, BOOK, snap=True, conn="b")
    rows += eng.advance(T0 + day + 2 * S)
    old = [r["time"] for r in rows if r["conn"] == "a"]
    new = [r["time"] for r in rows if r["conn"] == "b"]
    # the old book's grid points: T0+1s (after its snapshot) .. T0+62s (< last frame + 60 s)
    assert old == [T0 + k * S for k in range(1, 63)]
    assert new == [T0 + day + S, T0 + day + 2 * S]
    # the snapshot came mid-interval, so the first new row is invalid and the next one valid
    assert [r["valid"] for r in rows[len(old):]] == [False, True]
    assert rows[-1]["bid_size_1"] == 1.0


def test_aggressor_of_coinbase_and_tardis() -> None:
    """Coinbase's side is the maker's (SELL = taker buy); Tardis' is the taker's; anything else unknown."""
    assert aggressor_of(np.array(["SELL", "BUY", "UNKNOWN", ""])).tolist() == [1, -1, 0, 0]
    assert aggressor_of(np.array(["buy", "sell", "unknown"]), "tardis").tolist() == [1, -1, 0]


def test_spec_rejects_bad_horizons() -> None:
    """A horizon must be a positive multiple of the interval."""
    with pytest.raises(ValueError):
        FeatureSpec(S, (1500 * MS,))
    with pytest.raises(ValueError):
        FeatureSpec(0)
    assert isinstance(rows_to_table(scenario(), SPEC), pa.Table)


def test_batch_input_equals_frame_by_frame() -> None:
    """on_l2_batch gives the same rows, bit for bit, as on_l2 called once per frame."""
    rng = np.random.default_rng(7)
    n = 400
    lens = rng.integers(1, 5, n)
    starts = np.concatenate([[0], np.cumsum(lens)])
    rows = int(starts[-1])
    is_ask = rng.random(rows) < 0.5
    price = np.where(is_ask, 101.0 + rng.integers(0, 12, rows) * 0.5, 100.0 - rng.integers(0, 12, rows) * 0.5)
    size = np.where(rng.random(rows) < 0.4, 0.0, rng.random(rows) * 3)
    times = T0 + 1 + np.cumsum(rng.integers(1, 100, n)) * MS
    seqs = np.arange(2, n + 2)
    snap = np.zeros(n, bool)
    snap[200] = True  # a re-snapshot in the middle
    a, b = FeatureEngine("X", SPEC), FeatureEngine("X", SPEC)
    ra = l2(a, 1, T0 + 1, BOOK, snap=True)
    rb = l2(b, 1, T0 + 1, BOOK, snap=True)
    for i in range(n):
        lo, hi = starts[i], starts[i + 1]
        ra += a.on_l2("c", int(seqs[i]), int(times[i]), bool(snap[i]), is_ask[lo:hi], price[lo:hi], size[lo:hi])
    rb += b.on_l2_batch("c", seqs, times, snap, starts, is_ask, price, size)
    ra += a.advance(int(times[-1]))
    rb += b.advance(int(times[-1]))
    assert len(ra) > 10 and ra == rb
    assert any(r["ofi_1"] != 0.0 for r in ra)
