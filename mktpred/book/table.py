"""The ``book`` table: its schema (Tardis ``book_snapshot_N`` style), row chunks and durations."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mktpred.errors import UsageError
from mktpred.store.schemas import TS_NS

BOOK_TABLE = "book"
MAX_DEPTH = 50
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|min|h)\s*\Z")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "min": 60_000_000_000, "h": 3_600_000_000_000}


def parse_duration(text: str, where: str = "--interval") -> int:
    """``"100ms"`` -> 100_000_000 ns.  Units: ns, us, ms, s, m (or min), h.  Must be > 0.  Errors
    name ``where`` (the option or key the text came from)."""
    m = _DURATION.match(text)
    if m is None:
        raise UsageError(f"not a duration: {text!r} (expected e.g. 100ms, 1s, 5m)", where=where)
    ns = round(float(m.group(1)) * _UNIT_NS[m.group(2)])
    if ns <= 0:
        raise UsageError(f"duration must be > 0: {text!r}", where=where)
    return ns


def format_duration(ns: int) -> str:
    """The inverse of :func:`parse_duration` for whole units (``100ms``, ``1s``)."""
    for unit in ("h", "m", "s", "ms", "us"):
        if ns % _UNIT_NS[unit] == 0:
            return f"{ns // _UNIT_NS[unit]}{unit}"
    return f"{ns}ns"


def level_columns(depth: int) -> list[str]:
    """``bid_price_0..N-1, bid_size_0..N-1, ask_price_0..N-1, ask_size_0..N-1``."""
    return [f"{kind}_{i}" for kind in ("bid_price", "bid_size", "ask_price", "ask_size") for i in range(depth)]


def book_schema(depth: int) -> pa.Schema:
    """The ``book`` table's schema for snapshots ``depth`` levels deep."""
    return pa.schema([
        pa.field("time", TS_NS),
        pa.field("product_id", pa.string()),
        pa.field("conn", pa.string()),
        pa.field("seq", pa.int64()),
        pa.field("valid", pa.bool_()),
        pa.field("crossed", pa.bool_()),
        *(pa.field(c, pa.float64()) for c in level_columns(depth)),
    ])


def depth_of(schema: pa.Schema) -> int:
    """How many levels per side a ``book`` file holds."""
    return sum(1 for n in schema.names if n.startswith("bid_price_"))


@dataclass
class BookChunk:
    """Book snapshots of one product, columnar; ``levels`` is ``(rows, 4 * depth)`` in the column
    order of :func:`level_columns`, NaN where the book has fewer levels."""

    product: str
    depth: int
    time: np.ndarray  #: int64 ns
    conn: list[str]
    seq: np.ndarray  #: int64
    valid: np.ndarray  #: bool
    crossed: np.ndarray  #: bool
    levels: np.ndarray  #: float64 (rows, 4 * depth)

    def __len__(self) -> int:
        return len(self.time)

    def slice(self, lo: int, hi: int) -> BookChunk:
        return BookChunk(self.product, self.depth, self.time[lo:hi], self.conn[lo:hi], self.seq[lo:hi],
                         self.valid[lo:hi], self.crossed[lo:hi], self.levels[lo:hi])

    def column(self, name: str) -> np.ndarray:
        """One level column (``"bid_price_0"``...) as float64 with NaN for missing levels."""
        return self.levels[:, level_columns(self.depth).index(name)]

    def to_arrow(self) -> pa.Table:
        n = len(self)
        cols: list[pa.Array] = [
            pa.array(self.time, pa.int64()).cast(TS_NS),
            pa.array([self.product] * n, pa.string()),
            pa.array(self.conn, pa.string()),
            pa.array(self.seq, pa.int64()),
            pa.array(self.valid, pa.bool_()),
            pa.array(self.crossed, pa.bool_()),
        ]
        for j in range(4 * self.depth):
            col = np.ascontiguousarray(self.levels[:, j])
            cols.append(pa.array(col, pa.float64(), mask=np.isnan(col)))
        return pa.Table.from_arrays(cols, schema=book_schema(self.depth))
