"""Sequence gaps and connection lifetimes, read from the ``messages`` and ``events`` tables.

``sequence_num`` is one counter per connection over every channel, so a jump in ``messages.seq``
within one ``conn`` means frames were lost — any of them may have been a level2 update, so a book
on that connection is invalid from the first frame after the jump until the next snapshot.  The
collector's own ``gap`` events (``expected``/``got``) are merged in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from mktpred.store.reader import Store, TimeLike, to_ns


@dataclass
class _Ranges:
    starts: np.ndarray  #: first missing seq of each range, sorted
    ends: np.ndarray  #: last missing seq (inclusive)
    cum: np.ndarray  #: missing seqs in ranges before i (len + 1)


@dataclass
class GapIndex:
    """Missing sequence numbers per connection, as merged inclusive ranges."""

    ranges: dict[str, _Ranges] = field(default_factory=dict)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, int, int]]) -> GapIndex:
        """From ``(conn, first_missing, last_missing)`` triples (any order, may overlap)."""
        by_conn: dict[str, list[tuple[int, int]]] = {}
        for conn, a, b in pairs:
            if b >= a:
                by_conn.setdefault(conn, []).append((a, b))
        out: dict[str, _Ranges] = {}
        for conn, rs in by_conn.items():
            rs.sort()
            merged: list[list[int]] = []
            for a, b in rs:
                if merged and a <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], b)
                else:
                    merged.append([a, b])
            starts = np.array([m[0] for m in merged], np.int64)
            ends = np.array([m[1] for m in merged], np.int64)
            cum = np.concatenate([[0], np.cumsum(ends - starts + 1)]).astype(np.int64)
            out[conn] = _Ranges(starts, ends, cum)
        return cls(out)

    def missing_upto(self, conn: str, x: np.ndarray) -> np.ndarray:
        """How many missing seqs are ``<= x`` on ``conn`` (vectorised)."""
        r = self.ranges.get(conn)
        if r is None:
            return np.zeros(len(x), np.int64)
        i = np.searchsorted(r.starts, x, side="right")  # ranges starting at or before x
        over = np.where(i > 0, r.ends[np.maximum(i - 1, 0)] - x, 0)
        return r.cum[i] - np.maximum(over, 0)

    def gap_before(self, conn: str, prev_seq: int, seqs: np.ndarray) -> np.ndarray:
        """For consecutive frames ``seqs`` following ``prev_seq``: is a missing seq between each
        frame and the one before it?"""
        if conn not in self.ranges or len(seqs) == 0:
            return np.zeros(len(seqs), bool)
        prev = np.concatenate([[prev_seq], seqs[:-1]]).astype(np.int64)
        return self.missing_upto(conn, seqs - 1) > self.missing_upto(conn, prev)

    def count(self) -> int:
        """Number of gap ranges over all connections."""
        return sum(len(r.starts) for r in self.ranges.values())


@dataclass(frozen=True)
class ConnSpan:
    """When a connection was seen: first and last frame ``time`` (ns)."""

    first: int
    last: int


def load_gaps(store: Store, start: TimeLike = None, end: TimeLike = None) -> GapIndex:
    """Gaps from ``messages`` seq jumps and ``events`` gap rows in the range."""
    import duckdb

    con = duckdb.connect()
    pairs: list[tuple[str, int, int]] = []
    files = [str(f) for f in store.files("messages", start, end)]
    if files:
        rows = con.execute(
            "SELECT conn, seq + 1, next_seq - 1 FROM ("
            "  SELECT conn, seq, lead(seq) OVER (PARTITION BY conn ORDER BY seq) AS next_seq"
            "  FROM read_parquet($files) WHERE conn IS NOT NULL AND seq IS NOT NULL"
            ") WHERE next_seq > seq + 1", {"files": files}).fetchall()
        pairs.extend((str(c), int(a), int(b)) for c, a, b in rows)
    files = [str(f) for f in store.files("events", start, end)]
    if files:
        rows = con.execute(
            "SELECT conn, expected, got - 1 FROM read_parquet($files) "
            "WHERE event = 'gap' AND conn IS NOT NULL AND expected IS NOT NULL AND got > expected",
            {"files": files}).fetchall()
        pairs.extend((str(c), int(a), int(b)) for c, a, b in rows)
    return GapIndex.from_pairs(pairs)


def load_conn_spans(store: Store, product: str, start: TimeLike = None,
                    end: TimeLike = None) -> dict[str, ConnSpan]:
    """First/last frame time per connection: the product's level2 rows, widened by ``messages``
    (a quiet product's book still holds until its connection's last frame)."""
    import duckdb

    con = duckdb.connect()
    lo, hi = to_ns(start), to_ns(end)
    spans: dict[str, ConnSpan] = {}

    def merge(rows: list[tuple[str | None, int, int]], only_known: bool) -> None:
        for c, a, b in rows:
            key = "" if c is None else str(c)
            if only_known and key not in spans:
                continue
            old = spans.get(key)
            spans[key] = ConnSpan(int(a), int(b)) if old is None else ConnSpan(min(old.first, a), max(old.last, b))

    files = [str(f) for f in store.files("l2", lo, hi)]
    if files:
        merge(con.execute(
            "SELECT conn, min(epoch_ns(time)), max(epoch_ns(time)) FROM read_parquet($files) "
            "WHERE product_id = $p GROUP BY conn", {"files": files, "p": product}).fetchall(), False)
    files = [str(f) for f in store.files("messages", lo, hi)]
    if files and spans:
        merge(con.execute(
            "SELECT conn, min(epoch_ns(time)), max(epoch_ns(time)) FROM read_parquet($files) "
            "WHERE time IS NOT NULL GROUP BY conn", {"files": files}).fetchall(), True)
    return spans
