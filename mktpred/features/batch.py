"""The batch driver: a product's ``l2`` and ``trades`` from the store through :class:`FeatureEngine`.

Frames of both channels are merged by ``(conn, seq)`` (one sequence counter per connection across
channels; connections in the order they first appear in time).  A sequence gap on a connection
(``messages``/``events``, :func:`mktpred.book.gaps.load_gaps`) invalidates its book until the next
snapshot, exactly as ``mktpred book`` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mktpred.book.gaps import GapIndex, load_gaps
from mktpred.coinbase.timestamps import utc_date
from mktpred.features.engine import FEATURE_COLUMNS, FeatureEngine, FeatureSpec, aggressor_of
from mktpred.features.labels import add_labels, label_name
from mktpred.store.reader import Store, TimeLike, to_ns
from mktpred.store.schemas import TS_NS


def features_schema(spec: FeatureSpec) -> pa.Schema:
    """The ``features`` table's schema for a spec (the label columns depend on the horizons)."""
    fields = [pa.field("time", TS_NS), pa.field("product_id", pa.string()), pa.field("conn", pa.string()),
              pa.field("seq", pa.int64()), pa.field("valid", pa.bool_())]
    for name in FEATURE_COLUMNS[5:]:
        fields.append(pa.field(name, pa.int64() if name == "n_trades" else pa.float64()))
    if spec.cross:
        fields += [pa.field("cross_ret_1", pa.float64()), pa.field("cross_ofi_1", pa.float64())]
    fields += [pa.field(label_name(h), pa.float64()) for h in spec.horizons_ns]
    return pa.schema(fields)


def add_cross(table: pa.Table, cross: pa.Table | None, interval_ns: int) -> pa.Table:
    """``cross_ret_1``/``cross_ofi_1``: the cross product's ``ret_1``/``ofi_1`` at ``g - interval``
    (lagged one interval, so no lookahead across products; null where it has no such row, and on
    the cross product's own rows)."""
    n = table.num_rows
    if cross is None:
        nulls = pa.nulls(n, pa.float64())
        return table.append_column("cross_ret_1", nulls).append_column("cross_ofi_1", nulls)
    ct = cross.column("time").cast(pa.int64()).to_numpy()
    t = table.column("time").cast(pa.int64()).to_numpy() - interval_ns
    i = np.searchsorted(ct, t)
    hit = (i < len(ct)) & (ct[np.minimum(i, max(len(ct) - 1, 0))] == t) if len(ct) else np.zeros(n, bool)
    idx = pa.array(np.where(hit, i, 0).astype(np.int64), mask=~hit)
    out = table
    for src, name in (("ret_1", "cross_ret_1"), ("ofi_1", "cross_ofi_1")):
        col = cross.column(src).combine_chunks() if len(ct) else pa.array([], pa.float64())
        out = out.append_column(name, col.take(idx) if len(ct) else pa.nulls(n, pa.float64()))
    return out


def rows_to_table(rows: list[dict[str, Any]], spec: FeatureSpec) -> pa.Table:
    """Engine rows (dicts) as an Arrow table of the non-label columns."""
    schema = features_schema(FeatureSpec(spec.interval_ns))
    cols = {}
    for f in schema:
        vals = [r[f.name] for r in rows]
        if pa.types.is_floating(f.type):
            vals = [None if v is None or v != v else v for v in vals]
        cols[f.name] = pa.array(vals, pa.int64() if f.name == "time" else f.type)
    tbl = pa.table(cols)
    return tbl.set_column(0, "time", tbl.column("time").cast(TS_NS))


@dataclass(frozen=True)
class _Frame:
    conn: str
    seq: int
    time: int
    kind: int  #: 0 level2, 1 trades
    snapshot: bool
    a: np.ndarray  #: is_ask (level2) or aggressor (trades)
    price: np.ndarray
    size: np.ndarray


def _trade_frames(store: Store, product: str, start: TimeLike, end: TimeLike) -> list[_Frame]:
    if "trades" not in store.tables():
        return []
    names = set(store.schema("trades").names) if store.schema("trades") is not None else set()  # type: ignore[union-attr]
    cols = ["time", "conn", "seq", "is_snapshot", "price", "size", "side", *(["aggressor"] if "aggressor" in names else [])]
    tbl = store.read("trades", products=product, start=start, end=end, columns=cols)
    if tbl.num_rows == 0:
        return []
    # Files converted before the aggressor column existed (null there) fall back to Coinbase's side.
    agg = aggressor_of(np.array(tbl.column("side").fill_null("").to_pylist(), dtype=str))
    if "aggressor" in names:
        ag = tbl.column("aggressor").to_pylist()
        known = np.array([x is not None for x in ag], bool)
        agg = np.where(known, np.array([1 if x == "buy" else -1 if x == "sell" else 0 for x in ag], np.int8), agg)
    conn = np.array(tbl.column("conn").fill_null("").to_pylist(), dtype=object)
    seq = tbl.column("seq").fill_null(-1).to_numpy()
    time = tbl.column("time").cast(pa.int64()).to_numpy()
    snap = tbl.column("is_snapshot").fill_null(False).to_numpy(zero_copy_only=False)
    price = tbl.column("price").to_numpy(zero_copy_only=False)
    size = tbl.column("size").to_numpy(zero_copy_only=False)
    order = np.lexsort((seq, conn.astype(str)))
    out: list[_Frame] = []
    i = 0
    n = len(order)
    while i < n:
        j = i
        while j + 1 < n and conn[order[j + 1]] == conn[order[i]] and seq[order[j + 1]] == seq[order[i]]:
            j += 1
        idx = order[i:j + 1]
        k = idx[0]
        out.append(_Frame(str(conn[k]), int(seq[k]), int(time[k]), 1, bool(snap[k]), agg[idx], price[idx], size[idx]))
        i = j + 1
    return out


def _l2_frames(store: Store, product: str, start: TimeLike, end: TimeLike) -> Iterator[_Frame]:
    if "l2" not in store.tables():
        return
    for b in store.l2_batches(product, start, end):
        st = b.starts.tolist()
        isa = ~b.is_bid
        for i in range(b.n_frames):
            lo, hi = st[i], st[i + 1]
            yield _Frame(b.conn, int(b.frame_seq[i]), int(b.frame_time[i]), 0, bool(b.frame_snapshot[i]),
                         isa[lo:hi], b.price[lo:hi], b.size[lo:hi])


def compute_product(store: Store, product: str, spec: FeatureSpec, start: TimeLike = None,
                    end: TimeLike = None, gaps: GapIndex | None = None) -> pa.Table:
    """Every grid row of ``product`` in ``[start, end)`` with labels, in time order (with the
    ``cross_*`` columns when the spec names a cross product)."""
    if gaps is None:
        gaps = load_gaps(store, start, end)
    tbl = _compute(store, product, spec, start, end, gaps)
    if spec.cross:
        other = None if product == spec.cross else _compute(store, spec.cross, spec, start, end, gaps)
        tbl = add_cross(tbl, other, spec.interval_ns)
    return add_labels(tbl, spec.interval_ns, spec.horizons_ns)


def _compute(store: Store, product: str, spec: FeatureSpec, start: TimeLike, end: TimeLike,
             gaps: GapIndex) -> pa.Table:
    frames = list(_l2_frames(store, product, start, end)) + _trade_frames(store, product, start, end)
    first: dict[str, int] = {}
    for f in frames:
        first[f.conn] = min(first.get(f.conn, f.time), f.time)
    frames.sort(key=lambda f: (first[f.conn], f.conn, f.seq, f.kind))
    eng = FeatureEngine(product, spec)
    rows: list[dict[str, Any]] = []
    last_l2: dict[str, int] = {}
    for f in frames:
        if f.kind == 0:
            prev = last_l2.get(f.conn)
            if prev is not None and not f.snapshot and bool(gaps.gap_before(f.conn, prev, np.array([f.seq]))[0]):
                rows += eng.on_gap(f.conn, f.time)
            last_l2[f.conn] = f.seq
            rows += eng.on_l2(f.conn, f.seq, f.time, f.snapshot, f.a, f.price, f.size)
        else:
            rows += eng.on_trades(f.conn, f.seq, f.time, f.snapshot, f.price, f.size, f.a)
    if frames:
        hi = to_ns(end)
        last = max(f.time for f in frames)
        rows += eng.advance(last if hi is None else min(last, hi - 1))
    return rows_to_table(rows, spec)


def split_by_date(table: pa.Table) -> dict[str, pa.Table]:
    """Rows per UTC date of ``time``."""
    t = table.column("time").cast(pa.int64()).to_numpy()
    dates = np.array([utc_date(int(x)) for x in t], dtype=object) if len(t) else np.array([], object)
    return {d: table.filter(pa.array(dates == d)) for d in sorted(set(dates.tolist()))}
