"""The CPU engine: DuckDB parses the JSON, Arrow compute flattens it into the store's tables.

DuckDB's ``read_json`` with an explicit nested schema is the fastest JSON reader measured on two
cores (FACTS.md); it streams the file as Arrow record batches of nested frames.  Flattening those
with Arrow (``list_flatten``/``list_parent_indices`` are zero-copy on the level2 updates) parses
each line once for all tables and costs less than DuckDB's ``UNNEST``.  Decimal strings and the
microsecond times (``event_time``, trade ``time``) are converted by DuckDB's reader while it parses
(on every core, ~5% less CPU than casting in Arrow); the frame ``timestamp`` is cast by Arrow to
keep all nine digits and honour UTC offsets (DuckDB's ``TIMESTAMP_NS`` ignores offsets).  An
unparsable value fails the batch so the caller can isolate the line.  Row order is input order
throughout (``preserve_insertion_order``).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mktpred.convert.engine import EVENT, ConversionEngine, EngineBatch, EngineRejected
from mktpred.convert.records import L2_SIDES, RAW_REASON, TABLE_LISTS
from mktpred.store.schemas import L2, MESSAGES, TICKER, TRADES, TS_NS, TS_US

_UPDATE = "STRUCT(side VARCHAR, event_time TIMESTAMPTZ, price_level DOUBLE, new_quantity DOUBLE)[]"
_TICKER_NUMBERS = ("price", "volume_24_h", "low_24_h", "high_24_h", "low_52_w", "high_52_w",
                   "price_percent_chg_24_h", "best_bid", "best_ask", "best_bid_quantity", "best_ask_quantity")
_TICKER = "STRUCT(product_id VARCHAR, " + ", ".join(f"{f} DOUBLE" for f in _TICKER_NUMBERS) + ")[]"
_TRADE = "STRUCT(product_id VARCHAR, trade_id VARCHAR, price DOUBLE, size DOUBLE, time TIMESTAMPTZ, side VARCHAR)[]"
_EVENTS = f"STRUCT(type VARCHAR, product_id VARCHAR, updates {_UPDATE}, tickers {_TICKER}, trades {_TRADE})[]"
_FRAME_FIELDS = {"channel": "VARCHAR", "timestamp": "VARCHAR", "sequence_num": "BIGINT", "type": "VARCHAR",
                 "events": _EVENTS}
_FRAME = "STRUCT(" + ", ".join(f'"{k}" {v}' for k, v in _FRAME_FIELDS.items()) + ")"
#: every key the engine reads; unknown keys are ignored
COLUMNS: dict[str, str] = {"recv_ns": "BIGINT", "conn": "VARCHAR", "event": "VARCHAR", "raw": "VARCHAR",
                           "msg": _FRAME, **_FRAME_FIELDS}
_DATA_CHANNELS = tuple(TABLE_LISTS)
#: DuckDB's read buffers grow with this (per thread: a 700 MiB segment peaked at 0.37 GiB RSS with
#: 16 MiB, 0.98 GiB with 256 MiB); 16 MiB (its default) parses fastest and holds 3x the largest real
#: snapshot frame (5 MB).  A longer line fails the direct pass; the careful path then isolates it
#: by bisection, and a file of that one line is read with the limit set to its size (below).
MAX_OBJECT_BYTES = 16 * 2**20
_DUCKDB_MAX_OBJECT = 2**32 - 1  #: maximum_object_size is a UINTEGER


def max_object_bytes(path: Path, compressed: bool) -> int:
    """:data:`MAX_OBJECT_BYTES`, or the size of an uncompressed file holding one longer line, so a
    frame of any size the collector recorded converts (and nothing else pays for bigger buffers)."""
    try:
        size = path.stat().st_size
        if compressed or not MAX_OBJECT_BYTES < size < _DUCKDB_MAX_OBJECT:
            return MAX_OBJECT_BYTES
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            first_newline = mm.find(b"\n")  # stops at the first line's end: cheap for any file
    except (OSError, ValueError):
        return MAX_OBJECT_BYTES
    return size + 1 if first_newline in (-1, size - 1) else MAX_OBJECT_BYTES

# ticker output column -> frame key
_TICKER_MAP = {
    "price": "price", "volume_24h": "volume_24_h", "low_24h": "low_24_h", "high_24h": "high_24_h",
    "low_52w": "low_52_w", "high_52w": "high_52_w", "price_pct_chg_24h": "price_percent_chg_24_h",
    "best_bid": "best_bid", "best_bid_size": "best_bid_quantity", "best_ask": "best_ask",
    "best_ask_size": "best_ask_quantity",
}


def _sql(path: Path, compression: str | None) -> str:
    cols = "{" + ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items()) + "}"
    src = str(path).replace("'", "''")
    comp = f", compression='{compression}'" if compression else ""
    data = ", ".join(f"'{c}'" for c in _DATA_CHANNELS)
    return f"""
        SELECT recv_ns, conn, channel, ts, seq, events,
          CASE WHEN event IS NOT NULL THEN '{EVENT}'
               WHEN raw IS NOT NULL THEN '{RAW_REASON}'
               WHEN channel IS NULL THEN 'frame has no channel'
               WHEN ts IS NULL AND (recv_ns IS NULL OR channel IN ({data})) THEN 'missing timestamp'
               WHEN events IS NULL AND channel IN ({data}) THEN 'data frame has no events'
          END AS special
        FROM (
          SELECT recv_ns, conn, event, raw,
            coalesce(msg.channel, msg.type, channel, type) AS channel,
            coalesce(msg.timestamp, "timestamp") AS ts,
            coalesce(msg.sequence_num, sequence_num) AS seq,
            coalesce(msg.events, events) AS events
          FROM read_json('{src}', format='newline_delimited', columns={cols},
                         maximum_object_size={max_object_bytes(path, compression is not None)}{comp})
        )"""


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


class CpuEngine(ConversionEngine):
    """DuckDB ``read_json`` + Arrow compute, on all cores unless ``threads`` says otherwise."""

    name = "cpu"
    reads_compressed = True

    def __init__(self, threads: int = 0) -> None:
        self.con = duckdb.connect(config={"preserve_insertion_order": True})
        self.con.execute("SET enable_progress_bar = false")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")

    def close(self) -> None:
        self.con.close()

    def convert_file(self, path: Path) -> Iterator[EngineBatch]:
        name = path.name
        compression = "gzip" if name.endswith(".gz") else "zstd" if name.endswith(".zst") else None
        try:
            reader = self.con.sql(_sql(path, compression)).arrow()
        except duckdb.Error as exc:
            raise EngineRejected(str(exc).splitlines()[0]) from None
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except duckdb.Error as exc:
                    raise EngineRejected(str(exc).splitlines()[0]) from None
                except pa.ArrowInvalid as exc:
                    raise EngineRejected(str(exc).splitlines()[0]) from None
                if batch.num_rows:
                    yield self._convert_batch(batch)
        finally:
            reader.close()

    # -- one record batch of frames -> tables ------------------------------------------------------
    def convert_frames(self, frames: pa.RecordBatch) -> EngineBatch:
        """Tables from one batch of parsed records, one row per input line.

        ``frames`` has the columns of :func:`_sql`'s result: ``recv_ns`` int64, ``conn``,
        ``channel``, ``ts`` (the frame timestamp text), ``seq`` int64, ``special`` (null, "event"
        or a quarantine reason) and ``events`` (a list of structs as :data:`COLUMNS` declares;
        numbers may be float64 or decimal strings, times timestamps or RFC 3339 strings).  Another
        engine that parses the JSON its own way can reuse this to build identical tables.
        """
        return self._convert_batch(frames)

    def _convert_batch(self, b: pa.RecordBatch) -> EngineBatch:
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
            tables = self._tables(b, ok_frame)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise EngineRejected(str(exc).splitlines()[0]) from None
        return EngineBatch(tables, n, special)

    def _tables(self, b: pa.RecordBatch, ok_frame: pa.Array | None) -> dict[str, pa.Table]:
        n = b.num_rows
        channel = b.column("channel")
        recv = pc.cast(b.column("recv_ns"), TS_NS)
        time = _ts_ns(b.column("ts"))
        conn = b.column("conn")
        seq = b.column("seq")
        events: pa.ListArray = b.column("events")
        ev = events.flatten()
        ev_frame = pc.list_parent_indices(events).to_numpy()
        ev_type = pc.struct_field(ev, "type")

        out: dict[str, pa.Table] = {}
        counts = np.zeros(n, dtype=np.int64)
        for table, channels, key in (("l2", ("l2_data",), "updates"),
                                     ("ticker", ("ticker", "ticker_batch"), "tickers"),
                                     ("trades", ("market_trades",), "trades")):
            frame_sel = pc.is_in(channel, pa.array(channels))
            if ok_frame is not None:
                frame_sel = pc.and_(frame_sel, ok_frame)
            frame_sel = pc.fill_null(frame_sel, False)
            if not pc.any(frame_sel).as_py():
                continue
            x = self._explode(ev, ev_frame, ev_type, frame_sel.to_numpy(zero_copy_only=False), key)
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
            is_snap = pc.equal(ev_type.take(eidx), "snapshot")
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
                    "side": pc.if_else(pc.equal(side, "offer"), "ask", side),
                    "price": _f64(_fld(rows, "price_level")),
                    "size": _f64(_fld(rows, "new_quantity")),
                }
                out["l2"] = pa.Table.from_pydict(cols, schema=L2)
            elif table == "ticker":
                cols = {**common, "product_id": _own(_fld(rows, "product_id")), "is_snapshot": is_snap}
                for col, key2 in _TICKER_MAP.items():
                    cols[col] = _f64(_fld(rows, key2))
                out["ticker"] = pa.Table.from_pydict(cols, schema=TICKER)
            else:
                cols = {**common, "product_id": _own(_fld(rows, "product_id")), "is_snapshot": is_snap,
                        "trade_id": _own(_fld(rows, "trade_id")), "side": _own(_fld(rows, "side")),
                        "price": _f64(_fld(rows, "price")), "size": _f64(_fld(rows, "size")),
                        "trade_time": _ts_us(_fld(rows, "time"))}
                out["trades"] = pa.Table.from_pydict(cols, schema=TRADES)

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

    @staticmethod
    def _explode(ev: pa.StructArray, ev_frame: np.ndarray, ev_type: pa.Array, frame_sel: np.ndarray,
                 key: str) -> _Exploded | None:
        ev_sel = frame_sel[ev_frame] if len(ev_frame) else np.zeros(0, dtype=bool)
        if not ev_sel.any():
            return None
        lists: pa.ListArray = pc.struct_field(ev, key)
        sel_arr = pa.array(ev_sel)
        if pc.any(pc.and_(sel_arr, lists.is_null())).as_py():
            raise EngineRejected(f"an event has no {key} list")
        types_ok = pc.is_in(ev_type.filter(sel_arr), pa.array(["snapshot", "update"]))
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
