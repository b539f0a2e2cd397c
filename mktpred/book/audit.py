"""The audit: the rebuilt top of book against Coinbase's own ticker.

For every ticker row of a product, its ``best_bid``/``best_ask`` are compared with the book
rebuilt from level2:

* **at the same moment** — the state after every level2 frame of the product with a lower ``seq``
  on the same connection;
* **within ±W ms** — that state, or any state (after a level2 frame of the same connection) whose
  frame ``time`` lies within W ms of the ticker frame's ``time``.

The two channels come from different pipelines at the exchange, so a small window is the fair
comparison.  Tickers before their connection's first level2 snapshot are not counted
(``no_book``); a state marked invalid (after a gap) never matches, nor does a ticker that follows a
lost frame on its connection before the product's next level2 frame (``invalid`` too).  The audit replays level2
itself (every frame, depth 1), so it does not need the ``book`` table; :func:`audit_book` is
what ``validate`` calls too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mktpred.book.gaps import GapIndex, load_conn_spans, load_gaps
from mktpred.book.replay import Replayer
from mktpred.book.table import BookChunk
from mktpred.coinbase.timestamps import format_iso_ns, utc_date
from mktpred.errors import UsageError
from mktpred.progress import Progress, ProgressCallback, no_progress
from mktpred.store.reader import Store, TimeLike, open_store, to_ns

REPORTED_WINDOWS_MS = (0, 50, 250, 500)
_MS = 1_000_000


@dataclass
class AuditGroup:
    """Match counts for one product and UTC day."""

    product: str
    date: str
    tickers: int = 0  #: tickers counted (a book existed on their connection)
    exact: int = 0  #: matched at the same moment
    within: dict[int, int] = field(default_factory=dict)  #: window (ms) -> matched within it
    no_book: int = 0  #: tickers before their connection's first snapshot (not counted)
    invalid: int = 0  #: counted tickers whose same-moment book was invalid (after a gap)

    def add(self, other: AuditGroup) -> None:
        self.tickers += other.tickers
        self.exact += other.exact
        self.no_book += other.no_book
        self.invalid += other.invalid
        for w, n in other.within.items():
            self.within[w] = self.within.get(w, 0) + n

    def rate(self, window_ms: int | None = None) -> float | None:
        """Share matched within ``window_ms`` (``None``: at the same moment); ``None`` if nothing counted."""
        if not self.tickers:
            return None
        n = self.exact if window_ms is None else self.within.get(window_ms, 0)
        return n / self.tickers

    def to_json(self) -> dict[str, Any]:
        return {"tickers": self.tickers, "exact": self.exact, "exact_rate": _r(self.rate()),
                "within": {str(w): n for w, n in sorted(self.within.items())},
                "rates": {str(w): _r(self.rate(w)) for w in sorted(self.within)},
                "no_book": self.no_book, "invalid": self.invalid}


@dataclass
class Mismatch:
    """A ticker whose best bid/ask the rebuilt book did not show at the same moment."""

    product: str
    time: int  #: the ticker frame's time, ns
    conn: str
    seq: int
    ticker_bid: float
    ticker_ask: float
    book_bid: float | None  #: the rebuilt book at the same moment
    book_ask: float | None
    valid: bool
    nearest_ms: float | None  #: distance to the closest matching state, if any within the largest window

    @property
    def deviation(self) -> float:
        """Largest price difference at the same moment (``inf`` when a side is missing)."""
        if self.book_bid is None or self.book_ask is None:
            return float("inf")
        return max(abs(self.ticker_bid - self.book_bid), abs(self.ticker_ask - self.book_ask))

    def to_json(self) -> dict[str, Any]:
        return {"product": self.product, "time": format_iso_ns(self.time), "conn": self.conn, "seq": self.seq,
                "ticker_bid": self.ticker_bid, "ticker_ask": self.ticker_ask, "book_bid": self.book_bid,
                "book_ask": self.book_ask, "valid": self.valid, "nearest_ms": self.nearest_ms}


@dataclass
class AuditResult:
    """Match rates per product and day, the worst mismatches, and the verdict."""

    window_ms: int
    threshold: float
    windows: list[int]
    groups: list[AuditGroup]
    worst: list[Mismatch]

    def product_totals(self) -> dict[str, AuditGroup]:
        out: dict[str, AuditGroup] = {}
        for g in self.groups:
            out.setdefault(g.product, AuditGroup(g.product, "all")).add(g)
        return out

    def total(self) -> AuditGroup:
        t = AuditGroup("all", "all")
        for g in self.groups:
            t.add(g)
        return t

    @property
    def failing(self) -> list[str]:
        """Products whose ±W match rate is below the threshold."""
        return [p for p, g in self.product_totals().items()
                if g.tickers and (g.rate(self.window_ms) or 0.0) < self.threshold]

    @property
    def passed(self) -> bool:
        return not self.failing

    def to_json(self) -> dict[str, Any]:
        by_product: dict[str, Any] = {}
        for p, tot in self.product_totals().items():
            doc = tot.to_json()
            doc["days"] = {g.date: g.to_json() for g in self.groups if g.product == p}
            by_product[p] = doc
        return {"window_ms": self.window_ms, "threshold": self.threshold, "passed": self.passed,
                "failing": self.failing, **self.total().to_json(), "products": by_product,
                "worst": [m.to_json() for m in self.worst]}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def top_of_book_states(store: Store, product: str, start: int | None, end: int | None,
                       gaps: GapIndex | None = None) -> BookChunk:
    """The rebuilt best bid/ask after every level2 frame of ``product`` in ``[start, end)``
    (replayed from the start of the connections open at ``start``)."""
    spans = load_conn_spans(store, product, None, end)
    replay_lo = start
    if start is not None:
        replay_lo = min([s.first for s in spans.values() if s.first < start <= s.last], default=start)
    chunks: list[BookChunk] = []
    rep = Replayer(product, 1, interval_ns=None, sink=chunks.append, gaps=gaps,
                   conn_ends={c: s.last for c, s in spans.items()}, emit_start=start, emit_end=end)
    for batch in store.l2_batches(product, replay_lo, end):
        rep.feed(batch)
    rep.finish()
    if not chunks:
        e = np.empty(0)
        return BookChunk(product, 1, e.astype(np.int64), [], e.astype(np.int64), e.astype(bool),
                         e.astype(bool), np.empty((0, 4)))
    return BookChunk(product, 1, np.concatenate([c.time for c in chunks]), [x for c in chunks for x in c.conn],
                     np.concatenate([c.seq for c in chunks]), np.concatenate([c.valid for c in chunks]),
                     np.concatenate([c.crossed for c in chunks]), np.concatenate([c.levels for c in chunks]))


def audit_book(store: Store | str | Path, *, products: list[str] | None = None, start: TimeLike = None,
               end: TimeLike = None, window_ms: int = 500, threshold: float = 0.99, worst: int = 10,
               progress: ProgressCallback = no_progress) -> AuditResult:
    """Compare every ticker's best bid/ask with the book rebuilt from level2 (module docstring)."""
    st = store if isinstance(store, Store) else open_store(store)
    if window_ms < 0:
        raise UsageError(f"--audit-window-ms must be >= 0, got {window_ms}", where="--audit-window-ms")
    if not 0 <= threshold <= 1:
        raise UsageError(f"--audit-threshold must be between 0 and 1, got {threshold}", where="--audit-threshold")
    tables = st.tables()
    if "l2" not in tables or "ticker" not in tables:
        raise UsageError("the audit needs the l2 and ticker tables", where=str(st.root))
    lo, hi = to_ns(start), to_ns(end)
    windows = sorted({*REPORTED_WINDOWS_MS, window_ms})
    wmax = windows[-1] * _MS
    chosen = products or sorted(set(st.products("l2", lo, hi)) & set(st.products("ticker", lo, hi)))
    gaps = load_gaps(st, None, hi)
    groups: dict[tuple[str, str], AuditGroup] = {}
    misses: list[Mismatch] = []
    for i, product in enumerate(chosen):
        progress(Progress("audit", i, len(chosen), current=product))
        states = top_of_book_states(st, product, None if lo is None else lo - wmax,
                                    None if hi is None else hi + wmax, gaps)
        ticks = st.read("ticker", products=[product], start=lo, end=hi,
                        columns=["conn", "seq", "time", "best_bid", "best_ask"])
        cols = ticks.to_pydict()
        cols["time"] = ticks.column("time").cast(pa.int64()).to_pylist()
        _match(product, states, cols, windows, wmax, groups, misses, gaps)
    progress(Progress("audit", len(chosen), len(chosen)))
    misses.sort(key=lambda m: (m.nearest_ms is None, m.nearest_ms or 0.0, m.deviation), reverse=True)
    return AuditResult(window_ms, threshold, windows, [groups[k] for k in sorted(groups)], misses[:worst])


def _match(product: str, states: BookChunk, ticks: dict[str, list[Any]], windows: list[int], wmax: int,
           groups: dict[tuple[str, str], AuditGroup], misses: list[Mismatch], gaps: GapIndex) -> None:
    conn_arr = np.array(states.conn, dtype=object)
    by_conn: dict[str, tuple[np.ndarray, ...]] = {}
    for c in dict.fromkeys(states.conn):
        idx = np.flatnonzero(conn_arr == c)
        seq, tm = states.seq[idx], states.time[idx]
        bid, ask, valid = states.levels[idx, 0], states.levels[idx, 2], states.valid[idx]
        order = np.argsort(tm, kind="stable")
        by_conn[c] = (seq, bid, ask, valid, tm[order], bid[order], ask[order], valid[order])
    for conn, seq, t, tb, ta in zip(ticks["conn"], ticks["seq"], ticks["time"], ticks["best_bid"],
                                     ticks["best_ask"], strict=True):
        key = "" if conn is None else str(conn)
        g = groups.get((product, utc_date(t)))
        if g is None:
            g = groups[(product, utc_date(t))] = AuditGroup(product, utc_date(t), within=dict.fromkeys(windows, 0))
        arrays = by_conn.get(key)
        i = -1 if arrays is None or seq is None else int(np.searchsorted(arrays[0], seq, side="left")) - 1
        if arrays is None or i < 0:
            g.no_book += 1
            continue
        state_seq, bid, ask, valid, ts, tbid, task, tvalid = arrays
        g.tickers += 1
        book_bid = None if np.isnan(bid[i]) else float(bid[i])
        book_ask = None if np.isnan(ask[i]) else float(ask[i])
        # Frames lost between the book's last frame and the ticker (any of them may have been this
        # product's level2 update) leave the book unknown at the ticker, though its own last state
        # was valid: that ticker counts as invalid, not as a mismatch.
        state_valid = bool(valid[i]) and not bool(gaps.gap_before(key, int(state_seq[i]), np.array([int(seq)]))[0])
        exact = state_valid and book_bid == tb and book_ask == ta
        if not state_valid:
            g.invalid += 1
        nearest: float | None = 0.0 if exact else None
        if not exact:
            a = int(np.searchsorted(ts, t - wmax, side="left"))
            b = int(np.searchsorted(ts, t + wmax, side="right"))
            m = tvalid[a:b] & (tbid[a:b] == tb) & (task[a:b] == ta)
            if m.any():
                nearest = float(np.abs(ts[a:b][m] - t).min()) / _MS
        if exact:
            g.exact += 1
        for w in windows:
            if nearest is not None and nearest <= w:
                g.within[w] += 1
        if not exact:
            misses.append(Mismatch(product, t, key, int(seq), float(tb), float(ta), book_bid, book_ask,
                                   state_valid, nearest))
