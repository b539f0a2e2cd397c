"""The incremental feature engine of one product: level2 frames and trades in, grid rows out.

Grid point ``g`` (an epoch-aligned multiple of the interval) holds the state after every level2
frame with ``time <= g``; flow columns sum over the frames with ``time`` in ``(g - interval, g]``.
On every frame with time ``t`` the engine first emits every grid point ``g < t`` not yet emitted,
then applies the frame, so a row never sees data with time ``> g`` (no lookahead by construction).

OFI per level (Cont, Kukanov & Stoikov 2014; per level as Xu, Gould & Howison 2019), between
consecutive book states ``n-1, n`` with level-``k`` prices ``Pb, Pa`` and sizes ``qb, qa``::

    e = qb(n)[Pb(n) >= Pb(n-1)] - qb(n-1)[Pb(n) <= Pb(n-1)] - qa(n)[Pa(n) <= Pa(n-1)] + qa(n-1)[Pa(n) >= Pa(n-1)]

An absent level counts as size 0 at the price it last had; the first state of a book is its
snapshot (the snapshot frame itself adds no flow).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from mktpred.book.levels import TopBook

OFI_LEVELS = 5
_BOOK_DEPTH = 10
#: sorted band per side: wide enough that "within 10 bps of mid" usually falls inside it (a BTC-USD
#: book has a few thousand levels there), so depth is a bisect of the band, not a scan of the side
_BAND = 8192
RV_WINDOWS_S = (10, 60, 300)
_NS_PER_S = 1_000_000_000

#: the non-label columns, in table order
FEATURE_COLUMNS: tuple[str, ...] = (
    "time", "product_id", "conn", "seq", "valid",
    "best_bid", "best_ask", "bid_size_1", "ask_size_1",
    "mid", "spread", "spread_bps", "wmid", "imb_1", "imb_5", "imb_10",
    "depth_bid_10bps", "depth_ask_10bps",
    *(f"ofi_{k}" for k in range(1, OFI_LEVELS + 1)),
    "n_trades", "buy_volume", "sell_volume", "tfi", "vwap",
    "ret_1", *(f"rv_{w}s" for w in RV_WINDOWS_S),
)


def aggressor_of(side: np.ndarray, source: str = "coinbase") -> np.ndarray:
    """Taker direction (+1 buy, -1 sell, 0 unknown) from the ``trades.side`` column.

    Only for stores converted before the ``aggressor`` column existed (DESIGN.md, "Trade
    direction"; ``convert --force`` adds it): the only place that reads ``side``.  Coinbase's ``side`` is the maker's (``SELL`` = a taker buy);
    Tardis' is the taker's."""
    s = np.char.lower(np.asarray(side, dtype=str))
    if source == "coinbase":
        buy, sell = s == "sell", s == "buy"
    else:
        buy, sell = s == "buy", s == "sell"
    return np.where(buy, 1, np.where(sell, -1, 0)).astype(np.int8)


@dataclass(frozen=True)
class FeatureSpec:
    """The grid interval and label horizons (ns); ``cross`` is a product whose lagged ``ret_1`` and
    ``ofi_1`` the batch driver adds to the other products' rows (``cross_ret_1``, ``cross_ofi_1``)."""

    interval_ns: int
    horizons_ns: tuple[int, ...] = ()
    cross: str | None = None

    def __post_init__(self) -> None:
        if self.interval_ns <= 0:
            raise ValueError("interval_ns must be > 0")
        for h in self.horizons_ns:
            if h <= 0 or h % self.interval_ns:
                raise ValueError("every horizon must be a positive multiple of the interval")


_Levels = tuple[list[float], list[float], list[float], list[float]]
_NAN_LEVELS: _Levels = ([math.nan] * OFI_LEVELS, [0.0] * OFI_LEVELS, [math.nan] * OFI_LEVELS, [0.0] * OFI_LEVELS)


def _padded(cur: _Levels, prev: _Levels) -> _Levels:
    """Top ``OFI_LEVELS`` levels, an absent level as size 0 at the price it had in ``prev`` (NaN if
    it never existed)."""
    bp, bs, ap, asz = cur
    n = OFI_LEVELS
    if len(bp) < n:
        bp = bp + prev[0][len(bp):]
        bs = bs + [0.0] * (n - len(bs))
    if len(ap) < n:
        ap = ap + prev[2][len(ap):]
        asz = asz + [0.0] * (n - len(asz))
    return bp, bs, ap, asz


#: once a newer connection's first frame arrives, the replaced connection's book still answers grid
#: points up to this long after its own last frame, and no longer: a recorder that was down for a day
#: must not fill the outage with a day of rows from a book nobody updated (nor loop over them)
HANDOVER_NS = 60 * 1_000_000_000


class FeatureEngine:
    """Features of one product; see the module docstring."""

    def __init__(self, product_id: str, spec: FeatureSpec) -> None:
        self.product_id = product_id
        self.spec = spec
        self.step = spec.interval_ns
        self.book: TopBook | None = None
        self.conn: str | None = None
        self.seq: int | None = None
        self._retired: set[str] = set()  #: connections a newer one replaced (their late frames are ignored)
        self.book_valid = False
        self.interval_ok = False  #: the book was valid for the whole current interval so far
        self.next_grid: int | None = None  #: the next grid point to emit
        self._prev: _Levels | None = None  #: the last state's top levels, padded
        self._raw: _Levels | None = None  #: the same, as the book returned them
        self._ofi = [0.0] * OFI_LEVELS
        self._flow_grid: int | None = None  #: the grid point whose interval the flow sums belong to
        self._n_trades = 0
        self._buy = self._sell = self._pv = self._vol = 0.0
        self._last_mid: float | None = None
        self._last_mid_time: int | None = None
        self._rv: list[deque[tuple[int, float]]] = [deque() for _ in RV_WINDOWS_S]
        self._last_frame_ns: int | None = None  #: exchange time of the current connection's last frame

    # -- input ------------------------------------------------------------------------------------
    def advance(self, time_ns: int) -> list[dict[str, Any]]:
        """Close every grid point ``g <= time_ns``."""
        return self._emit_before(time_ns + 1)

    def on_gap(self, conn: str, time_ns: int) -> list[dict[str, Any]]:
        """Frames were lost on ``conn``: its book is invalid until the next snapshot."""
        out = self._emit_before(time_ns)
        if conn == self.conn:
            self.book_valid = False
            self.interval_ok = False
        return out

    def on_l2(self, conn: str, seq: int, time_ns: int, is_snapshot: bool, is_ask: np.ndarray,
              price: np.ndarray, size: np.ndarray) -> list[dict[str, Any]]:
        """Apply one level2 frame (``is_ask`` per row; size 0 removes a level)."""
        if conn != self.conn and conn in self._retired:
            return self._emit_before(time_ns)  # a late frame of a connection a newer one replaced
        out = self._handover(conn, time_ns)
        self._last_frame_ns = time_ns
        if is_snapshot:
            if self.book is None:
                self.book = TopBook(_BOOK_DEPTH, _BAND)
            self.book.load_snapshot(~np.asarray(is_ask, bool), np.asarray(price, np.float64),
                                    np.asarray(size, np.float64))
            self.book_valid = True
            self._raw = self.book.top(OFI_LEVELS)
            self._prev = _padded(self._raw, _NAN_LEVELS)
            if self.next_grid is None:
                self.next_grid = -(-time_ns // self.step) * self.step
        elif self.book is not None:
            self.book.apply((~np.asarray(is_ask, bool)).tolist(), np.asarray(price, np.float64).tolist(),
                            np.asarray(size, np.float64).tolist())
            self._add_ofi(self.book.top(OFI_LEVELS))
        self.seq = seq
        return out

    def on_l2_batch(self, conn: str, seq: np.ndarray, time_ns: np.ndarray, is_snapshot: np.ndarray,
                    starts: np.ndarray, is_ask: np.ndarray, price: np.ndarray,
                    size: np.ndarray) -> list[dict[str, Any]]:
        """Level2 frames of one connection in order, columnar (frame ``i`` is rows
        ``starts[i]:starts[i+1]``): the same as :meth:`on_l2` per frame, with the per-frame
        conversions done once per batch."""
        out: list[dict[str, Any]] = []
        st = np.asarray(starts).tolist()
        sq = np.asarray(seq).tolist()
        tl = np.asarray(time_ns).tolist()
        snl = np.asarray(is_snapshot, bool).tolist()
        isb = (~np.asarray(is_ask, bool)).tolist()
        pr = np.asarray(price, np.float64).tolist()
        sz = np.asarray(size, np.float64).tolist()
        n = OFI_LEVELS
        for i in range(len(sq)):
            a, b, t = st[i], st[i + 1], tl[i]
            book = self.book
            if snl[i] or conn != self.conn or book is None:  # the general path
                out += self.on_l2(conn, sq[i], t, snl[i], np.asarray(is_ask[a:b], bool), price[a:b], size[a:b])
                continue
            ng = self.next_grid
            if ng is not None and ng < t:
                out += self._emit_before(t)
            book.apply(isb[a:b], pr[a:b], sz[a:b])
            cur = book.top(n)
            if cur != self._raw:
                self._add_ofi(cur)
            self.seq = sq[i]
        if sq and conn == self.conn:
            self._last_frame_ns = tl[-1]  # once per batch: the hot loop stays as it was
        return out

    def on_trades(self, conn: str, seq: int, time_ns: int, is_snapshot: bool, price: np.ndarray,
                  size: np.ndarray, aggressor: np.ndarray) -> list[dict[str, Any]]:
        """Add one ``market_trades`` frame to the interval's flow (a snapshot frame is history, not
        flow)."""
        if conn != self.conn and conn in self._retired:
            return self._emit_before(time_ns)
        out = self._handover(conn, time_ns)
        self._last_frame_ns = time_ns
        if is_snapshot or len(price) == 0:
            return out
        g = -(-time_ns // self.step) * self.step  # the grid point whose interval holds the frame
        if g != self._flow_grid:  # flow from before the book's first grid interval is dropped
            self._reset_trades()
            self._flow_grid = g
        p = np.asarray(price, np.float64)
        s = np.asarray(size, np.float64)
        a = np.asarray(aggressor, np.int8)
        self._n_trades += len(p)
        self._buy += float(s[a > 0].sum())
        self._sell += float(s[a < 0].sum())
        self._pv += float((p * s).sum())
        self._vol += float(s.sum())
        return out

    # -- internals --------------------------------------------------------------------------------
    def _handover(self, conn: str, time_ns: int) -> list[dict[str, Any]]:
        """Close the grid points before a frame at ``time_ns``; a frame of a new connection first
        closes the old book's points up to :data:`HANDOVER_NS` past its last frame, skips the rest of
        the silence, and starts a new book."""
        if conn == self.conn:
            return self._emit_before(time_ns)
        out: list[dict[str, Any]] = []
        if self.conn is not None and self._last_frame_ns is not None and self.next_grid is not None:
            out = self._emit_before(min(time_ns, self._last_frame_ns + HANDOVER_NS))
            self.next_grid = max(self.next_grid, -(-time_ns // self.step) * self.step)
        else:
            out = self._emit_before(time_ns)
        self._new_conn(conn)
        return out

    def _new_conn(self, conn: str) -> None:
        """A new connection starts a new book and resets the flow accumulators."""
        if self.conn is not None:
            self._retired.add(self.conn)
        self.conn = conn
        self.book = None
        self.book_valid = False
        self.interval_ok = False
        self._prev = None
        self._ofi = [0.0] * OFI_LEVELS
        self._reset_trades()
        self._last_mid = None
        for dq in self._rv:
            dq.clear()

    def _reset_trades(self) -> None:
        self._flow_grid = None
        self._n_trades = 0
        self._buy = self._sell = self._pv = self._vol = 0.0

    def _add_ofi(self, cur: _Levels) -> None:
        if cur == self._raw:  # top levels unchanged (most updates are deeper): every e is 0
            return
        self._raw = cur
        prev = self._prev
        assert prev is not None
        pbp, pbs, pap, pas = prev
        bp, bs, ap, asz = _padded(cur, prev)
        ofi = self._ofi
        for k in range(OFI_LEVELS):
            p0, q0, p1, q1 = pbp[k], pbs[k], bp[k], bs[k]
            e = q1 if p0 != p0 else (q1 if p1 >= p0 else 0.0) - (q0 if p1 <= p0 else 0.0)
            p0, q0, p1, q1 = pap[k], pas[k], ap[k], asz[k]
            e -= q1 if p0 != p0 else (q1 if p1 <= p0 else 0.0) - (q0 if p1 >= p0 else 0.0)
            ofi[k] += e
        self._prev = (bp, bs, ap, asz)

    def _emit_before(self, t: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        g = self.next_grid
        if g is None:
            return out
        while g < t:
            if self._flow_grid is not None and self._flow_grid != g:
                self._reset_trades()  # flow of an interval before the book's first grid point
            if self.book is not None:
                out.append(self._row(g))
            self._close_interval()
            g += self.step
        self.next_grid = g
        return out

    def _close_interval(self) -> None:
        self._ofi = [0.0] * OFI_LEVELS
        self._reset_trades()
        self.interval_ok = self.book_valid

    def _row(self, g: int) -> dict[str, Any]:
        book = self.book
        assert book is not None
        bp, bs, ap, asz = book.top(_BOOK_DEPTH)
        bb = bp[0] if bp else None
        ba = ap[0] if ap else None
        qb = bs[0] if bs else None
        qa = asz[0] if asz else None
        mid = spread = spread_bps = wmid = None
        if bb is not None and ba is not None and qb is not None and qa is not None:
            mid = (bb + ba) / 2
            spread = ba - bb
            spread_bps = 1e4 * spread / mid
            wmid = (bb * qa + ba * qb) / (qb + qa)
        imb: list[float | None] = []
        for k in (1, 5, 10):
            sb, sa = sum(bs[:k]), sum(asz[:k])
            imb.append((sb - sa) / (sb + sa) if sb + sa > 0 else None)
        dbid = dask = None
        if mid is not None:
            dbid, dask = self._depth_10bps(book, mid)
        valid = self.book_valid and self.interval_ok
        ret = None
        if (mid is not None and self._last_mid is not None and self._last_mid_time == g - self.step):
            ret = math.log(mid / self._last_mid)
        self._last_mid = mid
        self._last_mid_time = g
        rv = self._rv_update(g, ret)
        n = self._n_trades
        tot = self._buy + self._sell
        row: dict[str, Any] = {
            "time": g, "product_id": self.product_id, "conn": self.conn, "seq": self.seq, "valid": valid,
            "best_bid": bb, "best_ask": ba, "bid_size_1": qb, "ask_size_1": qa,
            "mid": mid, "spread": spread, "spread_bps": spread_bps, "wmid": wmid,
            "imb_1": imb[0], "imb_5": imb[1], "imb_10": imb[2],
            "depth_bid_10bps": dbid, "depth_ask_10bps": dask,
        }
        for k in range(OFI_LEVELS):
            row[f"ofi_{k + 1}"] = self._ofi[k]
        row.update({
            "n_trades": n, "buy_volume": self._buy, "sell_volume": self._sell,
            "tfi": (self._buy - self._sell) / tot if tot > 0 else None,
            "vwap": self._pv / self._vol if n and self._vol > 0 else None,
            "ret_1": ret,
        })
        for w, v in zip(RV_WINDOWS_S, rv, strict=True):
            row[f"rv_{w}s"] = v
        return row

    def _rv_update(self, g: int, ret: float | None) -> list[float | None]:
        out: list[float | None] = []
        for i, w in enumerate(RV_WINDOWS_S):
            dq = self._rv[i]
            if ret is not None:
                dq.append((g, ret * ret))
            lo = g - w * _NS_PER_S  # window (g - w, g]
            while dq and dq[0][0] <= lo:
                dq.popleft()
            if not dq:
                out.append(None)
            else:
                # re-sum (exact, no drift): the window holds at most w / interval values
                s = math.fsum(x for _, x in dq)
                out.append(math.sqrt(s))
        return out

    @staticmethod
    def _depth_10bps(book: TopBook, mid: float) -> tuple[float, float]:
        """Summed sizes within 10 bps of ``mid``: from the sorted band when the bound falls inside
        it, else a scan of the whole side."""
        lo, hi = mid * (1 - 1e-3), mid * (1 + 1e-3)
        bb, ab = book._bb, book._ab
        if book._bfull or (bb and bb[0] < lo):
            db = float(sum(map(book.bids.__getitem__, bb[bisect_left(bb, lo):])))
        else:
            a = np.fromiter(book.bids.keys(), np.float64, len(book.bids))
            v = np.fromiter(book.bids.values(), np.float64, len(book.bids))
            db = float(v[a >= lo].sum())
        if book._afull or (ab and ab[-1] > hi):
            da = float(sum(map(book.asks.__getitem__, ab[:bisect_right(ab, hi)])))
        else:
            a = np.fromiter(book.asks.keys(), np.float64, len(book.asks))
            v = np.fromiter(book.asks.values(), np.float64, len(book.asks))
            da = float(v[a <= hi].sum())
        return db, da
