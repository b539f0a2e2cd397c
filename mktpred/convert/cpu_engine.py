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
from typing import Any

import duckdb
import pyarrow as pa

from mktpred.coinbase.protocol import (
    FRAME_CHANNEL,
    FRAME_EVENTS,
    FRAME_FIELDS,
    FRAME_SEQUENCE,
    FRAME_TIMESTAMP,
    FRAME_TYPE,
    TABLE_LISTS,
)
from mktpred.convert.engine import EVENT, ConversionEngine, EngineBatch, EngineRejected
from mktpred.convert.flatten import flatten_frames
from mktpred.convert.records import RAW_REASON

_DUCK_OF_KIND = {"str": "VARCHAR", "int": "BIGINT", "num": "DOUBLE", "time": "TIMESTAMPTZ"}


def _duck_type(kind: str | dict[str, Any]) -> str:
    """DuckDB's type for a kind of :data:`mktpred.coinbase.protocol.FRAME_FIELDS` (a dict: a list of
    structs).  Numbers and times are parsed by DuckDB's reader while it parses (see the docstring)."""
    if isinstance(kind, str):
        return _DUCK_OF_KIND[kind]
    return "STRUCT(" + ", ".join(f"{k} {_duck_type(v)}" for k, v in kind.items()) + ")[]"


_FRAME_FIELDS = {k: _duck_type(v) for k, v in FRAME_FIELDS.items()}
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
            coalesce(msg.{FRAME_CHANNEL}, msg.{FRAME_TYPE}, {FRAME_CHANNEL}, {FRAME_TYPE}) AS channel,
            coalesce(msg."{FRAME_TIMESTAMP}", "{FRAME_TIMESTAMP}") AS ts,
            coalesce(msg.{FRAME_SEQUENCE}, {FRAME_SEQUENCE}) AS seq,
            coalesce(msg.{FRAME_EVENTS}, {FRAME_EVENTS}) AS events
          FROM read_json('{src}', format='newline_delimited', columns={cols},
                         maximum_object_size={max_object_bytes(path, compression is not None)}{comp})
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
