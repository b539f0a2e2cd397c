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

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from mktpred.convert.engine import EVENT, ConversionEngine, EngineBatch, EngineRejected
from mktpred.convert.flatten import flatten_frames
from mktpred.convert.records import RAW_REASON, TABLE_LISTS

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
#: DuckDB's read buffer grows with this; 16 MiB (its default) parses fastest and holds 3x the
#: largest real snapshot frame (5 MB).  A longer line fails its chunk and is quarantined.
MAX_OBJECT_BYTES = 16 * 2**20

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
                         maximum_object_size={MAX_OBJECT_BYTES}{comp})
        )"""


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
                    yield flatten_frames(batch)
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
        return flatten_frames(frames)
