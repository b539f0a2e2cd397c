"""The shared flatten step: parsed nested frames (an Arrow record batch) -> the store's tables.

Flattening with Arrow (``list_flatten``/``list_parent_indices`` are zero-copy on the level2
updates) parses each line once for all tables.  The CPU engine feeds it DuckDB's batches, the GPU
engine cuDF's (conformed to the same columns); both get identical tables.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mktpred.coinbase.protocol import (
    AGGRESSOR_OF_TRADE_SIDE,
    EVENT_TYPES,
    L2_SIDE_OF,
    L2_SIDES,
    SNAPSHOT,
    TABLE_LISTS,
    TICKER_COLUMNS,
    is_product_id,
)
from mktpred.convert.engine import EngineBatch, EngineRejected
from mktpred.store.schemas import L2, MESSAGES, TICKER, TRADES, TS_NS, TS_US, aggressor_column

#: the tables built from events, each with its channels and the list holding its rows
_EXPLODED = tuple((table, tuple(ch for ch, (t, _) in TABLE_LISTS.items() if t == table), key)
                  for table, key in dict(TABLE_LISTS.values()).items())


def _fld(rows: pa.StructArray, name: str) -> pa.Array:
    """A field of a struct array, null where the struct itself is null."""
    return pc.struct_field(rows, name)


def _own(arr: pa.Array) -> pa.Array:
    """A copy of ``arr`` in Arrow's own memory.  A column that still points into a record batch
    DuckDB exported keeps the *whole* batch (every nested level2 update) alive while it waits to
    be written, which made memory grow with the input: every output column is either computed
    (a new buffer) or passed through here."""
    return pa.concat_arrays([arr, arr.slice(0, 0)])


def _ts_ns(arr: pa.Array) -> pa.Array:
    """RFC 3339 strings (0-9 fraction digits, any offset) -> timestamp[ns, UTC]."""
    return pc.cast(arr, TS_NS)


def _ts_us(arr: pa.Array) -> pa.Array:
    """-> timestamp[us, UTC]: DuckDB's TIMESTAMPTZ (a relabelling), or RFC 3339 strings (another
    engine's batches) parsed to nanoseconds and truncated."""
    if pa.types.is_timestamp(arr.type):
        return _own(pc.cast(arr, TS_US))
    return pc.cast(pc.cast(arr, TS_NS), TS_US, safe=False)


def _f64(arr: pa.Array) -> pa.Array:
    """-> float64 (DuckDB's reader already parsed the decimal strings; other engines may not)."""
    return _own(arr) if pa.types.is_float64(arr.type) else pc.cast(arr, pa.float64())


class _Exploded:
    """The rows inside one list of a table's events (``updates``, ``tickers`` or ``trades``)."""

    def __init__(self, rows: pa.StructArray, event_idx: np.ndarray, frame_idx: np.ndarray) -> None:
        self.rows = rows
        self.event_idx = event_idx  #: per row: index into the batch's flattened events
        self.frame_idx = frame_idx  #: per row: index into the batch's frames


def flatten_frames(b: pa.RecordBatch) -> EngineBatch:
    """Tables from one batch of parsed records, one row per input line.

    ``b`` has the columns of the CPU engine's query: ``recv_ns`` int64, ``conn``, ``channel``, ``ts``
    (the frame timestamp text), ``seq`` int64, ``special`` (null, "event" or a quarantine reason) and
    ``events`` (a list of structs as :data:`mktpred.coinbase.protocol.FRAME_FIELDS` declares; numbers
    may be float64 or decimal strings, times timestamps or RFC 3339 strings).  Both engines call it,
    so their tables are identical to the last bit.
    """
    n = b.num_rows
    special_col = b.column("special")
    special: list[tuple[int, str]] = []
    if special_col.null_count < n:
        idx = pc.indices_nonzero(special_col.is_valid()).to_numpy()
        vals = special_col.take(pa.array(idx)).to_pylist()
        special = list(zip(idx.tolist(), vals, strict=True))
        ok_frame = special_col.is_null()
    else:
        ok_frame = None
    try:
        tables = _tables(b, ok_frame)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise EngineRejected(str(exc).splitlines()[0]) from None
    return EngineBatch(tables, n, special)

def _l2_side(side: pa.Array) -> pa.Array:
    """Coinbase's level2 side in the store's words (``offer`` -> ``ask``)."""
    out = side
    for theirs, ours in L2_SIDE_OF.items():
        if theirs != ours:
            out = pc.if_else(pc.equal(out, theirs), ours, out)
    return out


def _check_product_ids(table: pa.Table) -> None:
    """Reject a batch with a product id Coinbase would not send: product ids become file names
    downstream, so the line is isolated and quarantined (:func:`mktpred.convert.records.check_line`
    says why)."""
    bad = [v for v in pc.unique(table.column("product_id")).to_pylist() if v is not None and not is_product_id(v)]
    if bad:
        raise EngineRejected(f"product_id is not a Coinbase product id: {bad[0]!r}")


def _tables(b: pa.RecordBatch, ok_frame: pa.Array | None) -> dict[str, pa.Table]:
    n = b.num_rows
    channel = b.column("channel")
    recv = pc.cast(b.column("recv_ns"), TS_NS)
    time = _ts_ns(b.column("ts"))
    conn = b.column("conn")
    seq = b.column("seq")
    events: pa.ListArray = b.column("events")
    ev = events.flatten()
    ev_frame = pc.list_parent_indices(events).to_numpy()
    ev_type = pc.struct_field(ev, "type")  # an event's own keys: see coinbase.protocol.EVENT_FIELDS

    out: dict[str, pa.Table] = {}
    counts = np.zeros(n, dtype=np.int64)
    for table, channels, key in _EXPLODED:
        frame_sel = pc.is_in(channel, pa.array(channels))
        if ok_frame is not None:
            frame_sel = pc.and_(frame_sel, ok_frame)
        frame_sel = pc.fill_null(frame_sel, False)
        if not pc.any(frame_sel).as_py():
            continue
        x = _explode(ev, ev_frame, ev_type, frame_sel.to_numpy(zero_copy_only=False), key)
        if x is None:
            continue
        counts += np.bincount(x.frame_idx, minlength=n)
        fidx = pa.array(x.frame_idx)
        eidx = pa.array(x.event_idx)
        common = {
            "recv_time": recv.take(fidx),
            "time": time.take(fidx),
            "conn": conn.take(fidx),
            "seq": seq.take(fidx),
        }
        is_snap = pc.equal(ev_type.take(eidx), SNAPSHOT)
        rows = x.rows
        if table == "l2":
            side = _fld(rows, "side")
            bad = set(pc.unique(side).to_pylist()) - set(L2_SIDES)
            if bad:
                raise EngineRejected(f"level2 side is not bid or offer: {sorted(map(str, bad))}")
            cols = {
                "recv_time": common["recv_time"], "time": common["time"],
                "event_time": _ts_us(_fld(rows, "event_time")),
                "conn": common["conn"], "seq": common["seq"],
                "product_id": pc.struct_field(ev, "product_id").take(eidx),
                "is_snapshot": is_snap,
                "side": _l2_side(side),
                "price": _f64(_fld(rows, "price_level")),
                "size": _f64(_fld(rows, "new_quantity")),
            }
            out["l2"] = pa.Table.from_pydict(cols, schema=L2)
        elif table == "ticker":
            cols = {**common, "product_id": _own(_fld(rows, "product_id")), "is_snapshot": is_snap}
            for key2, col in TICKER_COLUMNS.items():
                cols[col] = _f64(_fld(rows, key2))
            out["ticker"] = pa.Table.from_pydict(cols, schema=TICKER)
        else:
            cols = {**common, "product_id": _own(_fld(rows, "product_id")), "is_snapshot": is_snap,
                    "trade_id": _own(_fld(rows, "trade_id")), "side": _own(_fld(rows, "side")),
                    "price": _f64(_fld(rows, "price")), "size": _f64(_fld(rows, "size")),
                    "trade_time": _ts_us(_fld(rows, "time")),
                    "aggressor": aggressor_column(_fld(rows, "side"), AGGRESSOR_OF_TRADE_SIDE)}
            out["trades"] = pa.Table.from_pydict(cols, schema=TRADES)

    for t in out.values():
        _check_product_ids(t)
    n_events = pc.cast(pc.fill_null(pc.list_value_length(events), 0), pa.int32())
    msgs = pa.Table.from_pydict({
        "recv_time": _own(recv), "time": time, "conn": _own(conn), "seq": _own(seq),
        "channel": _own(channel),
        "n_events": n_events, "n_rows": pa.array(counts.astype(np.int32)),
    }, schema=MESSAGES)
    if ok_frame is not None:
        msgs = msgs.filter(ok_frame)
    out["messages"] = msgs
    return out

def _explode(ev: pa.StructArray, ev_frame: np.ndarray, ev_type: pa.Array, frame_sel: np.ndarray,
             key: str) -> _Exploded | None:
    ev_sel = frame_sel[ev_frame] if len(ev_frame) else np.zeros(0, dtype=bool)
    if not ev_sel.any():
        return None
    lists: pa.ListArray = pc.struct_field(ev, key)
    sel_arr = pa.array(ev_sel)
    if pc.any(pc.and_(sel_arr, lists.is_null())).as_py():
        raise EngineRejected(f"an event has no {key} list")
    types_ok = pc.is_in(ev_type.filter(sel_arr), pa.array(list(EVENT_TYPES)))
    if not pc.all(pc.fill_null(types_ok, False)).as_py():
        raise EngineRejected("event type is not snapshot or update")
    rows = lists.flatten()
    parent = pc.list_parent_indices(lists).to_numpy()
    keep = ev_sel[parent]
    if not keep.all():  # rows listed by events of other tables or rejected frames: rare
        keep_arr = pa.array(keep)
        rows = rows.filter(keep_arr)
        parent = parent[keep]
    return _Exploded(rows, parent, ev_frame[parent])
