"""The replay engine: level2 frames of one product in, top-N book snapshots out.

Each connection has its own book (``sequence_num`` restarts per connection); a book starts at a
snapshot frame.  After a sequence gap on its connection a book keeps being updated but its
snapshots carry ``valid = false`` until the next snapshot frame.  A crossed book (best bid >= best
ask) is flagged and counted, never "fixed".

Two ways to emit:

* a time grid (``interval_ns``): at every multiple ``g`` of the interval (epoch aligned) the state
  after every frame with ``time <= g``; ``time`` is ``g``, ``seq`` the last frame applied.  Grid
  points run from the book's first snapshot to the connection's last frame (from ``messages``,
  so a quiet product's book still holds).  Frames between two grid points are applied in one go.
* every update (``interval_ns=None``): one snapshot after every frame, ``time`` the frame's time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mktpred.book.gaps import GapIndex
from mktpred.book.levels import TopBook
from mktpred.book.table import BookChunk
from mktpred.store.reader import L2Batch

_NO_SEQ = -(2**62)
_FAR = 2**62


@dataclass
class InvalidSpan:
    """A stretch where a connection's book was invalid: from the frame after a gap to the next
    snapshot (``end`` is ``None`` when none came)."""

    conn: str
    start: int
    end: int | None
    expected_after_seq: int  #: the last frame applied before the gap


@dataclass
class ReplayStats:
    """What replaying one product did."""

    product: str
    frames: int = 0  #: level2 frames applied (snapshots included)
    updates: int = 0  #: level updates applied (rows of update frames)
    snapshot_levels: int = 0  #: levels loaded from snapshot frames
    snapshots: int = 0  #: snapshot frames (a book (re)starts at each)
    before_snapshot: int = 0  #: frames skipped because their connection had no snapshot yet
    stale: int = 0  #: frames skipped because their seq was not after the last one applied
    rows: int = 0  #: book snapshots emitted
    invalid_rows: int = 0
    crossed_rows: int = 0
    first_crossed: int | None = None
    conns: int = 0
    invalid_spans: list[InvalidSpan] = field(default_factory=list)


@dataclass
class _Conn:
    name: str
    book: TopBook | None = None
    valid: bool = False
    last_seq: int = _NO_SEQ
    last_time: int = 0
    next_grid: int = _FAR
    end_time: int = 0
    span: InvalidSpan | None = None


class Replayer:
    """Feed :class:`~mktpred.store.reader.L2Batch` objects of one product in order; snapshots go
    to ``sink`` in chunks of up to ``chunk_rows``; :meth:`finish` returns the stats."""

    def __init__(self, product: str, depth: int, *, interval_ns: int | None,
                 sink: Callable[[BookChunk], None], gaps: GapIndex | None = None,
                 conn_ends: dict[str, int] | None = None, emit_start: int | None = None,
                 emit_end: int | None = None, chunk_rows: int = 8_192) -> None:
        if interval_ns is not None and interval_ns <= 0:
            raise ValueError("interval_ns must be > 0")
        self.product = product
        self.depth = depth
        self.interval = interval_ns
        self.sink = sink
        self.gaps = gaps or GapIndex()
        self.conn_ends = conn_ends or {}
        self.lo = -_FAR if emit_start is None else emit_start
        self.hi = _FAR if emit_end is None else emit_end
        self.chunk_rows = chunk_rows
        self.stats = ReplayStats(product)
        self._conns: dict[str, _Conn] = {}
        self._active: _Conn | None = None
        self._pad = [math.nan] * depth
        #: emitted states: (first time, repeats, conn, seq, valid, crossed, levels row)
        self._em: list[tuple[int, int, str, int, bool, bool, list[float]]] = []

    # -- input ------------------------------------------------------------------------------------
    def feed(self, batch: L2Batch) -> None:
        """Apply a batch of whole frames (one connection, seq order)."""
        if batch.n_frames == 0:
            return
        cs = self._conn(batch.conn, int(batch.frame_time[0]))
        fseq = batch.frame_seq
        if fseq[0] <= cs.last_seq or (len(fseq) > 1 and bool(np.any(np.diff(fseq) <= 0))):
            batch = self._drop_stale(batch, cs.last_seq)
            if batch.n_frames == 0:
                return
            fseq = batch.frame_seq
        prev = cs.last_seq if cs.last_seq != _NO_SEQ else int(fseq[0])
        gap = self.gaps.gap_before(cs.name, prev, fseq)
        if self.interval is None:
            self._feed_every(cs, batch, gap)
        else:
            self._feed_grid(cs, batch, gap)
        cs.end_time = max(cs.end_time, cs.last_time)

    def finish(self) -> ReplayStats:
        """Emit the grid up to each connection's end and flush; returns the stats."""
        for cs in self._conns.values():
            self._close_conn(cs)
        self._flush()
        return self.stats

    # -- internals --------------------------------------------------------------------------------
    def _conn(self, name: str, first_time: int) -> _Conn:
        cs = self._conns.get(name)
        if cs is None:
            # A new connection: the books of connections that ended before it end there too (their
            # grid is emitted up to their last frame now, so the output stays in time order).
            for other in self._conns.values():
                if max(other.end_time, other.last_time) <= first_time:
                    self._close_conn(other)
            cs = _Conn(name, end_time=self.conn_ends.get(name, 0))
            self._conns[name] = cs
            self.stats.conns += 1
        return cs

    def _close_conn(self, cs: _Conn) -> None:
        if self.interval is not None and cs.book is not None:
            end = max(cs.end_time, cs.last_time)
            if cs.next_grid <= end:
                self._emit_grid(cs, cs.next_grid, end + 1)

    def _drop_stale(self, batch: L2Batch, last_seq: int) -> L2Batch:
        keep = np.zeros(batch.n_frames, bool)
        top = last_seq
        for i, s in enumerate(batch.frame_seq.tolist()):
            if s > top:
                keep[i] = True
                top = s
        self.stats.stale += int((~keep).sum())
        idx = np.flatnonzero(keep)
        st = batch.starts
        rows = np.concatenate([np.arange(st[i], st[i + 1]) for i in idx]) if len(idx) else np.empty(0, np.int64)
        lens = (st[idx + 1] - st[idx]) if len(idx) else np.empty(0, np.int64)
        return L2Batch(batch.conn, batch.is_bid[rows], batch.price[rows], batch.size[rows],
                       np.concatenate([[0], np.cumsum(lens)]).astype(np.int64), batch.frame_seq[idx],
                       batch.frame_time[idx], batch.frame_snapshot[idx])

    def _snapshot(self, cs: _Conn, batch: L2Batch, lo: int, hi: int, t: int) -> None:
        if cs.book is None:
            cs.book = TopBook(self.depth)
        cs.book.load_snapshot(batch.is_bid[lo:hi], batch.price[lo:hi], batch.size[lo:hi])
        cs.valid = True
        if cs.span is not None:
            cs.span.end = t
            cs.span = None
        self.stats.snapshots += 1
        self.stats.snapshot_levels += hi - lo

    def _invalidate(self, cs: _Conn, t: int) -> None:
        if cs.valid:
            cs.valid = False
            cs.span = InvalidSpan(cs.name, t, None, cs.last_seq)
            self.stats.invalid_spans.append(cs.span)

    def _feed_every(self, cs: _Conn, batch: L2Batch, gap: np.ndarray) -> None:
        st = batch.starts.tolist()
        fseq = batch.frame_seq.tolist()
        ftime = batch.frame_time.tolist()
        snap = batch.frame_snapshot.tolist()
        gaps = gap.tolist()
        isb, pr, sz = batch.is_bid.tolist(), batch.price.tolist(), batch.size.tolist()
        stats = self.stats
        lo_t, hi_t = self.lo, self.hi
        for j in range(len(fseq)):
            lo, hi, t = st[j], st[j + 1], ftime[j]
            if snap[j]:
                self._snapshot(cs, batch, lo, hi, t)
            elif cs.book is None:
                stats.before_snapshot += 1
                cs.last_seq, cs.last_time = fseq[j], t
                continue
            else:
                if gaps[j]:
                    self._invalidate(cs, t)
                cs.book.apply(isb[lo:hi], pr[lo:hi], sz[lo:hi])
                stats.updates += hi - lo
            stats.frames += 1
            cs.last_seq, cs.last_time = fseq[j], t
            if lo_t <= t < hi_t:
                self._emit(cs, t, 1, fseq[j])

    def _feed_grid(self, cs: _Conn, batch: L2Batch, gap: np.ndarray) -> None:
        step = self.interval
        assert step is not None
        ftime = batch.frame_time
        grid = -((-ftime) // step) * step  # the first grid point whose state includes the frame
        snap = batch.frame_snapshot
        brk = snap | gap
        brk[1:] |= grid[1:] != grid[:-1]
        brk[0] = True
        heads = np.flatnonzero(brk).tolist()
        heads.append(batch.n_frames)
        st = batch.starts.tolist()
        fseq = batch.frame_seq.tolist()
        ftl = ftime.tolist()
        gl = grid.tolist()
        snl = snap.tolist()
        gpl = gap.tolist()
        isb, pr, sz = batch.is_bid.tolist(), batch.price.tolist(), batch.size.tolist()
        stats = self.stats
        lo_t, hi_t = self.lo, self.hi
        emit_limit = self.chunk_rows
        em = self._em
        updates = frames = 0
        for k in range(len(heads) - 1):
            a, b = heads[k], heads[k + 1]
            g = gl[a]
            book = cs.book
            if book is not None:
                ng = cs.next_grid
                if ng < g:
                    if g - ng == step and lo_t <= ng < hi_t:  # the common case: one grid point
                        em.append((ng, 1, cs.name, cs.last_seq, cs.valid, *self._row(book)))
                        if len(em) >= emit_limit:
                            self._flush()
                    else:
                        self._emit_grid(cs, ng, g)
                    cs.next_grid = g
            first = st[a]
            if snl[a]:
                self._snapshot(cs, batch, st[a], st[a + 1], ftl[a])
                book = cs.book
                first = st[a + 1]
                frames += 1
                if cs.next_grid == _FAR:
                    cs.next_grid = g
                a += 1
            elif book is None:
                stats.before_snapshot += b - a
                cs.last_seq, cs.last_time = fseq[b - 1], ftl[b - 1]
                continue
            elif gpl[a]:
                self._invalidate(cs, ftl[a])
            if b > a:
                assert book is not None
                last = st[b]
                book.apply(isb[first:last], pr[first:last], sz[first:last])
                updates += last - first
                frames += b - a
            if g > cs.next_grid:
                cs.next_grid = g
            cs.last_seq = fseq[b - 1]
        cs.last_time = ftl[-1]
        stats.updates += updates
        stats.frames += frames

    def _emit_grid(self, cs: _Conn, g0: int, g1: int) -> None:
        """Emit the current state at grid points ``g0, g0 + step, ... < g1`` inside the range."""
        step = self.interval
        assert step is not None
        lo = max(g0, self.lo)
        if lo > g0:
            lo = g0 + -((g0 - lo) // step) * step
        hi = min(g1, self.hi)
        if lo < hi:
            self._emit(cs, lo, (hi - lo + step - 1) // step, cs.last_seq)
        cs.next_grid = g0 + -((g0 - g1) // step) * step if g1 > g0 else g0

    def _row(self, book: TopBook) -> tuple[bool, list[float]]:
        """``(crossed, levels row)`` of the book's current top ``depth``, padded with NaN."""
        n = self.depth
        bp, bs, ap, asz = book.top(n)
        crossed = bool(bp) and bool(ap) and bp[0] >= ap[0]
        if len(bp) < n or len(ap) < n:
            pad = self._pad
            return crossed, bp + pad[len(bp):] + bs + pad[len(bs):] + ap + pad[len(ap):] + asz + pad[len(asz):]
        return crossed, bp + bs + ap + asz

    def _emit(self, cs: _Conn, t: int, repeats: int, seq: int) -> None:
        """The current state at ``t`` (and ``repeats - 1`` further grid points)."""
        assert cs.book is not None
        self._em.append((t, repeats, cs.name, seq, cs.valid, *self._row(cs.book)))
        if len(self._em) >= self.chunk_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._em:
            return
        em = self._em.copy()
        self._em.clear()  # in place: the replay loop holds a reference to the list
        reps = np.fromiter((e[1] for e in em), np.int64, len(em))
        n = int(reps.sum())
        first = np.fromiter((e[0] for e in em), np.int64, len(em))
        if n == len(em):
            times = first
        else:
            step = self.interval or 0
            start = np.repeat(np.cumsum(reps) - reps, reps)
            times = np.repeat(first, reps) + (np.arange(n) - start) * step
        valid = np.repeat(np.fromiter((e[4] for e in em), bool, len(em)), reps)
        crossed = np.repeat(np.fromiter((e[5] for e in em), bool, len(em)), reps)
        levels = np.array([e[6] for e in em], np.float64).reshape(len(em), 4 * self.depth)
        chunk = BookChunk(
            self.product, self.depth, times,
            [e[2] for e in em for _ in range(e[1])] if n != len(em) else [e[2] for e in em],
            np.repeat(np.fromiter((e[3] for e in em), np.int64, len(em)), reps), valid, crossed,
            np.repeat(levels, reps, axis=0) if n != len(em) else levels)
        st = self.stats
        st.rows += n
        st.invalid_rows += int((~valid).sum())
        nx = int(crossed.sum())
        if nx:
            st.crossed_rows += nx
            if st.first_crossed is None:
                st.first_crossed = int(times[np.argmax(crossed)])
        self.sink(chunk)
