"""The CSV formats ``csv2parquet`` reads, and how each one's rows become store rows.

- ``mktpred``: what ``convert --write-csv`` writes: one contract table per file, recognised by its
  header (the table's columns), timestamps ISO 8601.  Read back into the same table unchanged.
- ``tardis``: Tardis.dev downloadable CSV: ``incremental_book_L2`` -> ``l2``, ``trades`` ->
  ``trades``, ``quotes`` -> ``ticker`` (best bid/ask only).  Timestamps are microseconds since the
  epoch; ``local_timestamp`` becomes ``recv_time``, ``symbol`` ``product_id``; ``conn``/``seq`` null.
- ``generic``: any CSV, as its own table; column types inferred by DuckDB's sniffer and overridable.

A :class:`CsvLayout` says which DuckDB types to read a file with (:meth:`CsvLayout.scan_spec`) and
turns each Arrow batch into rows of its table (:meth:`CsvLayout.convert`), returning the rows it
had to drop with a reason; the reader finds their line numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mktpred.coinbase.protocol import AGGRESSOR_OF_TRADE_SIDE
from mktpred.errors import DataError, UsageError
from mktpred.ingest.csv_read import ScanSpec
from mktpred.store.schemas import REQUIRED_COLUMNS, TABLE_SCHEMAS, TS_NS, TS_US, aggressor_column

FORMATS = ("auto", "mktpred", "tardis", "generic")

_TARDIS_COMMON = ("exchange", "symbol", "timestamp", "local_timestamp")
#: Tardis CSV kind -> (store table, its columns)
TARDIS_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "incremental_book_L2": ("l2", (*_TARDIS_COMMON, "is_snapshot", "side", "price", "amount")),
    "trades": ("trades", (*_TARDIS_COMMON, "id", "side", "price", "amount")),
    "quotes": ("ticker", (*_TARDIS_COMMON, "ask_amount", "ask_price", "bid_price", "bid_amount")),
}

#: ``--schema`` type names -> (DuckDB type to read with, Arrow type written)
GENERIC_TYPES: dict[str, tuple[str, pa.DataType]] = {
    "string": ("VARCHAR", pa.string()),
    "int64": ("BIGINT", pa.int64()),
    "int32": ("INTEGER", pa.int32()),
    "float64": ("DOUBLE", pa.float64()),
    "bool": ("BOOLEAN", pa.bool_()),
    "date": ("DATE", pa.date32()),
    "timestamp": ("VARCHAR", TS_NS),  # ISO 8601 text, parsed by Arrow (keeps ns, honours offsets)
    "epoch_s": ("BIGINT", TS_NS),
    "epoch_ms": ("BIGINT", TS_NS),
    "epoch_us": ("BIGINT", TS_NS),
    "epoch_ns": ("BIGINT", TS_NS),
}
TYPE_ALIASES = {"str": "string", "int": "int64", "float": "float64", "double": "float64", "boolean": "bool"}
_EPOCH_NS = {"epoch_s": 1_000_000_000, "epoch_ms": 1_000_000, "epoch_us": 1_000, "epoch_ns": 1}
_INT64_MAX = 2**63 - 1
#: DuckDB sniffer types -> our type names (anything else is read as text)
_SNIFFED = {
    "BIGINT": "int64", "INTEGER": "int64", "SMALLINT": "int64", "TINYINT": "int64", "UBIGINT": "float64",
    "HUGEINT": "float64", "DOUBLE": "float64", "FLOAT": "float64", "BOOLEAN": "bool", "DATE": "date",
    "TIMESTAMP": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamp", "TIMESTAMP_NS": "timestamp",
    "TIMESTAMP_MS": "timestamp", "TIMESTAMP_S": "timestamp", "VARCHAR": "string",
}
_TABLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_HAS_ZONE = r"[T ]\d{1,2}:\d{2}(:\d{2}(\.\d*)?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)$"
_DATE_ONLY = r"^\d{4}-\d{2}-\d{2}$"


# -- dropped rows ----------------------------------------------------------------------------------

class Drops:
    """Rows of one batch that must not be written, each with the first reason found."""

    def __init__(self) -> None:
        self.reasons: dict[int, str] = {}

    def add(self, rows: np.ndarray, reason: Callable[[int], str]) -> None:
        for r in rows.tolist():
            if r not in self.reasons:
                self.reasons[r] = reason(r)

    def nulls(self, name: str, arr: pa.Array) -> None:
        if arr.null_count:
            self.add(_where(pc.is_null(arr)), lambda _r: f"{name}: missing")

    def apply(self, table: pa.Table) -> pa.Table:
        if not self.reasons:
            return table
        keep = np.ones(table.num_rows, dtype=bool)
        keep[list(self.reasons)] = False
        return table.filter(pa.array(keep))

    def items(self) -> list[tuple[int, str]]:
        return sorted(self.reasons.items())


def _where(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.flatnonzero(np.asarray(pc.fill_null(mask, False)))


def _plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A dictionary (DuckDB ENUM) as plain strings; chunked as one array."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr


def _value(arr: pa.Array, row: int) -> str:
    return repr(arr[row].as_py())


def _bad_value(prefix: str, arr: pa.Array) -> Callable[[int], str]:
    """A reason that quotes the offending value: ``"<prefix>: '<value>'"``."""
    return lambda r: f"{prefix}: {_value(arr, r)}"


# -- timestamps ------------------------------------------------------------------------------------

def _cast_or_bad(arr: pa.Array, typ: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Cast, with values that do not cast as null: (result, their rows).  Bisects on failure, so a
    few bad values cost a few extra vectorised casts."""
    try:
        return pc.cast(arr, typ), np.empty(0, dtype=np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(arr) == 1:
            return pa.nulls(1, typ), np.zeros(1, dtype=np.int64)
    half = len(arr) // 2
    left, bad_l = _cast_or_bad(arr.slice(0, half), typ)
    right, bad_r = _cast_or_bad(arr.slice(half), typ)
    return pa.concat_arrays([left, right]), np.concatenate([bad_l, bad_r + half])


def parse_iso_ns(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """ISO 8601 text -> ``timestamp[ns, UTC]``: nine fractional digits kept, offsets applied, no
    offset read as UTC, a bare date as midnight.  Returns (timestamps, rows that did not parse);
    nulls stay null and are not counted as bad."""
    arr = _plain(arr)
    try:
        return pc.cast(arr, TS_NS), np.empty(0, dtype=np.int64)  # the usual case: "...Z" everywhere
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    text = pc.utf8_trim_whitespace(arr)
    date_only = pc.match_substring_regex(text, _DATE_ONLY)
    zoned = pc.match_substring_regex(text, _HAS_ZONE)
    text = pc.if_else(date_only, pc.binary_join_element_wise(text, "T00:00:00Z", ""),
                      pc.if_else(zoned, text, pc.binary_join_element_wise(text, "Z", "")))
    return _cast_or_bad(text, TS_NS)


def epoch_to_ns(arr: pa.Array, ns_per_unit: int) -> tuple[pa.Array, np.ndarray]:
    """Integers since the epoch in some unit -> ``timestamp[ns, UTC]``; (timestamps, rows out of
    the representable range, 1677-2262)."""
    arr = _plain(arr)
    if ns_per_unit == 1:
        return pc.cast(arr, pa.int64()).cast(TS_NS), np.empty(0, dtype=np.int64)
    limit = _INT64_MAX // ns_per_unit
    out = pc.and_(pc.greater_equal(arr, -limit), pc.less_equal(arr, limit))
    bad = _where(pc.invert(out))
    if bad.size:
        arr = pc.if_else(out, arr, pa.scalar(None, pa.int64()))
    return pc.multiply(arr, ns_per_unit).cast(pa.int64()).cast(TS_NS), bad


# -- layouts ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CsvLayout:
    """How one kind of CSV file becomes rows of one table."""

    format: str  #: "mktpred", "tardis" or "generic"
    kind: str  #: mktpred: the table; tardis: the Tardis data type; generic: the table
    table: str
    schema: pa.Schema
    date_column: str | None = "time"  #: partition by this column's UTC date; None = one file

    @property
    def key(self) -> str:
        """What the manifest remembers: a file is redone when this changes."""
        return f"{self.format}:{self.kind}"

    def scan_spec(self, header: Sequence[str], delimiter: str = ",") -> ScanSpec:
        raise NotImplementedError

    def convert(self, batch: pa.RecordBatch) -> tuple[pa.Table, list[tuple[int, str]]]:
        """(rows of :attr:`table` in its schema, [(row in batch, reason)] of the rows dropped)."""
        raise NotImplementedError


_DUCK_OF_ARROW = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER",
                  pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN"}


@dataclass(frozen=True)
class MktpredLayout(CsvLayout):
    """A table as ``convert --write-csv`` wrote it."""

    def scan_spec(self, header: Sequence[str], delimiter: str = ",") -> ScanSpec:
        required = set(REQUIRED_COLUMNS.get(self.table, ()))
        cols: list[tuple[str, str]] = []
        not_null: list[str] = []
        for name in header:
            typ = self.schema.field(name).type
            duck = "VARCHAR" if pa.types.is_timestamp(typ) else _DUCK_OF_ARROW[typ]
            if name == "side" and self.table == "l2":
                duck = "mktpred_l2_side"
            if name in required and duck != "VARCHAR":
                not_null.append(name)
            cols.append((name, duck))
        enums = (("mktpred_l2_side", ("bid", "ask")),) if self.table == "l2" else ()
        return ScanSpec(tuple(cols), tuple(not_null), enums, delimiter)

    def convert(self, batch: pa.RecordBatch) -> tuple[pa.Table, list[tuple[int, str]]]:
        drops = Drops()
        cols: list[pa.Array] = []
        for f in self.schema:
            if f.name not in batch.schema.names and (self.table, f.name) in _ADDED_COLUMNS:
                # an export from before the column existed: its trades came from Coinbase
                cols.append(aggressor_column(_plain(batch.column("side")).cast(pa.string()),
                                             AGGRESSOR_OF_TRADE_SIDE))
                continue
            arr = _plain(batch.column(f.name))
            if pa.types.is_timestamp(f.type):
                ts, bad = parse_iso_ns(arr)
                drops.add(bad, _bad_value(f"{f.name}: not an ISO 8601 timestamp", arr))
                arr = ts if f.type == TS_NS else pc.cast(ts, f.type, safe=False)
            elif arr.type != f.type:
                arr = pc.cast(arr, f.type)
            cols.append(arr)
        table = pa.Table.from_arrays(cols, schema=self.schema)
        for name in REQUIRED_COLUMNS.get(self.table, ()):
            drops.nulls(name, table.column(name))
        return drops.apply(table), drops.items()


_TARDIS_TRADE_SIDES = ("buy", "sell", "unknown")
#: Tardis trade side (the taker's) -> ``trades.aggressor``
TARDIS_AGGRESSOR = {"buy": "buy", "sell": "sell"}
#: columns a mktpred CSV may lack because an older mktpred wrote it, and how to fill them in
_ADDED_COLUMNS = {("trades", "aggressor")}


@dataclass(frozen=True)
class TardisLayout(CsvLayout):
    """Tardis.dev ``incremental_book_L2``, ``trades`` or ``quotes`` CSV."""

    def scan_spec(self, header: Sequence[str], delimiter: str = ",") -> ScanSpec:
        types = {"exchange": "VARCHAR", "symbol": "VARCHAR", "timestamp": "BIGINT", "local_timestamp": "BIGINT",
                 "is_snapshot": "BOOLEAN", "price": "DOUBLE", "amount": "DOUBLE", "id": "VARCHAR",
                 "ask_amount": "DOUBLE", "ask_price": "DOUBLE", "bid_price": "DOUBLE", "bid_amount": "DOUBLE"}
        enums: tuple[tuple[str, tuple[str, ...]], ...] = ()
        if self.kind == "incremental_book_L2":
            types["side"], enums = "tardis_book_side", (("tardis_book_side", ("bid", "ask")),)
        elif self.kind == "trades":
            types["side"], enums = "tardis_trade_side", (("tardis_trade_side", _TARDIS_TRADE_SIDES),)
        not_null = ["timestamp", "local_timestamp"]
        if self.kind != "quotes":
            not_null += ["side", "price", "amount"]
        if self.kind == "incremental_book_L2":
            not_null.append("is_snapshot")
        return ScanSpec(tuple((n, types[n]) for n in header), tuple(not_null), enums, delimiter)

    def convert(self, batch: pa.RecordBatch) -> tuple[pa.Table, list[tuple[int, str]]]:
        drops = Drops()
        n = batch.num_rows
        col = {name: _plain(batch.column(name)) for name in batch.schema.names}
        time, bad = epoch_to_ns(col["timestamp"], 1_000)
        drops.add(bad, _bad_value("timestamp: out of range", col["timestamp"]))
        recv, bad = epoch_to_ns(col["local_timestamp"], 1_000)
        drops.add(bad, _bad_value("local_timestamp: out of range", col["local_timestamp"]))
        symbol = col["symbol"]
        drops.add(_where(pc.or_kleene(pc.is_null(symbol), pc.equal(symbol, ""))), lambda _r: "symbol: missing")
        common = {"recv_time": recv, "time": time, "conn": pa.nulls(n, pa.string()), "seq": pa.nulls(n, pa.int64()),
                  "product_id": symbol}
        if self.kind == "incremental_book_L2":
            values = {**common, "event_time": pc.cast(time, TS_US, safe=False), "is_snapshot": col["is_snapshot"],
                      "side": col["side"], "price": col["price"], "size": col["amount"]}
        elif self.kind == "trades":
            values = {**common, "is_snapshot": pa.nulls(n, pa.bool_()).fill_null(False),
                      "trade_id": col["id"], "side": pc.utf8_upper(col["side"]), "price": col["price"],
                      "size": col["amount"], "trade_time": pc.cast(time, TS_US, safe=False),
                      # Tardis' side is the taker's own: buy -> buy, sell -> sell, unknown -> null
                      "aggressor": aggressor_column(pc.cast(col["side"], pa.string()), TARDIS_AGGRESSOR)}
        else:
            values = {**common, "is_snapshot": pa.nulls(n, pa.bool_()).fill_null(False),
                      "best_bid": col["bid_price"], "best_bid_size": col["bid_amount"],
                      "best_ask": col["ask_price"], "best_ask_size": col["ask_amount"]}
        arrays = [values[f.name] if f.name in values else pa.nulls(n, f.type) for f in self.schema]
        table = pa.Table.from_arrays([pc.cast(a, f.type) for a, f in zip(arrays, self.schema, strict=True)],
                                     schema=self.schema)
        return drops.apply(table), drops.items()


@dataclass(frozen=True)
class GenericLayout(CsvLayout):
    """Any CSV as its own table, with a type per column (see :data:`GENERIC_TYPES`)."""

    types: tuple[tuple[str, str], ...] = field(default=())  #: (column, type name) in table order

    @property
    def key(self) -> str:
        cols = ",".join(f"{n}:{t}" for n, t in self.types)
        return f"generic:{self.table} time={self.date_column or ''} columns={cols}"

    def scan_spec(self, header: Sequence[str], delimiter: str = ",") -> ScanSpec:
        types = dict(self.types)
        cols = tuple((n, GENERIC_TYPES[types[n]][0]) for n in header)
        not_null: tuple[str, ...] = ()
        if self.date_column is not None and GENERIC_TYPES[types[self.date_column]][0] != "VARCHAR":
            not_null = (self.date_column,)
        return ScanSpec(cols, not_null, (), delimiter, single_line_rows=False)

    def convert(self, batch: pa.RecordBatch) -> tuple[pa.Table, list[tuple[int, str]]]:
        drops = Drops()
        n = batch.num_rows
        names = set(batch.schema.names)
        cols: list[pa.Array] = []
        for (name, typ), f in zip(self.types, self.schema, strict=True):
            if name not in names:
                cols.append(pa.nulls(n, f.type))
                continue
            raw = arr = _plain(batch.column(name))
            if typ == "timestamp":
                arr, bad = parse_iso_ns(raw)
                drops.add(bad, _bad_value(f"{name}: not an ISO 8601 timestamp", raw))
            elif typ in _EPOCH_NS:
                arr, bad = epoch_to_ns(raw, _EPOCH_NS[typ])
                drops.add(bad, _bad_value(f"{name}: out of range", raw))
            elif name == self.date_column and typ == "date":
                arr = pc.cast(pc.cast(arr, pa.timestamp("s")), TS_NS)
            cols.append(pc.cast(arr, f.type))
        table = pa.Table.from_arrays(cols, schema=self.schema)
        if self.date_column is not None:
            drops.nulls(self.date_column, table.column(self.date_column))
        return drops.apply(table), drops.items()


def mktpred_layout(table: str) -> MktpredLayout:
    return MktpredLayout("mktpred", table, table, TABLE_SCHEMAS[table])


def tardis_layout(kind: str) -> TardisLayout:
    table = TARDIS_KINDS[kind][0]
    return TardisLayout("tardis", kind, table, TABLE_SCHEMAS[table])


def generic_layout(table: str, types: Sequence[tuple[str, str]], time_column: str | None) -> GenericLayout:
    fields = []
    for name, typ in types:
        arrow = GENERIC_TYPES[typ][1]
        if name == time_column:
            arrow = TS_NS
        fields.append(pa.field(name, arrow))
    return GenericLayout("generic", table, table, pa.schema(fields), time_column, tuple(types))


# -- recognising a file ----------------------------------------------------------------------------

def recognise(header: Sequence[str]) -> CsvLayout | None:
    """The mktpred or Tardis layout whose columns are exactly ``header`` (any order), if any."""
    cols = set(header)
    if len(cols) != len(header):
        return None
    for table, schema in TABLE_SCHEMAS.items():
        ours = set(schema.names)
        if cols == ours or cols == ours - {c for t, c in _ADDED_COLUMNS if t == table}:
            return mktpred_layout(table)
    for kind, (_, names) in TARDIS_KINDS.items():
        if cols == set(names):
            return tardis_layout(kind)
    return None


def known_formats() -> str:
    """The formats and what identifies each, for error messages."""
    tardis = ", ".join(TARDIS_KINDS)
    tables = ", ".join(TABLE_SCHEMAS)
    return (f"mktpred (the columns of a store table as `convert --write-csv` writes them: {tables}), "
            f"tardis ({tardis}); anything else: --format generic --table NAME")


#: tables mktpred writes itself besides the contract tables; a generic import may not take their name
RESERVED_TABLES = frozenset({"book"})


def check_table_name(table: str) -> None:
    if not _TABLE_NAME.match(table):
        raise UsageError(f"table name {table!r} must be letters, digits, '_', '.' or '-' and start with a "
                         f"letter or digit", where="--table")
    if table in TABLE_SCHEMAS:
        raise UsageError(f"{table!r} is a table of the store contract: CSV of it is imported with "
                         f"--format mktpred or tardis, not generic", where="--table")
    if table in RESERVED_TABLES:
        raise UsageError(f"{table!r} is reserved for a table mktpred derives itself (mktpred book)",
                         where="--table")


def parse_schema_option(text: str | None) -> dict[str, str]:
    """``"a=int64,b=timestamp"`` -> ``{"a": "int64", "b": "timestamp"}`` (type names checked)."""
    out: dict[str, str] = {}
    if not text:
        return out
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, typ = item.partition("=")
        name, typ = name.strip(), TYPE_ALIASES.get(typ.strip().lower(), typ.strip().lower())
        if not sep or not name:
            raise UsageError(f"--schema wants COL=TYPE items separated by commas, got {item.strip()!r}",
                             where="--schema")
        if typ not in GENERIC_TYPES:
            raise UsageError(f"--schema {name}: unknown type {typ!r} (known: {', '.join(GENERIC_TYPES)})",
                             where="--schema")
        out[name] = typ
    return out


@dataclass(frozen=True)
class Sniffed:
    """What DuckDB's sniffer made of a generic file."""

    delimiter: str
    columns: tuple[tuple[str, str], ...]  #: (name, our type name) in file order


def sniff(path: Path) -> Sniffed:
    """Delimiter and column types of a generic CSV file (DuckDB's sniffer, header assumed)."""
    con = duckdb.connect(":memory:")
    try:
        row = con.execute("SELECT Delimiter, Columns FROM sniff_csv(?, header = true, sample_size = 20480)",
                          [str(path)]).fetchone()
    except duckdb.Error as exc:
        raise DataError(f"cannot work out the CSV dialect: {str(exc).strip().splitlines()[0]}",
                        where=str(path)) from None
    finally:
        con.close()
    if row is None:  # pragma: no cover - sniff_csv always answers one row
        raise DataError("cannot work out the CSV dialect", where=str(path))
    delim, columns = row
    cols = tuple((c["name"], _SNIFFED.get(str(c["type"]).upper(), "string")) for c in columns)
    return Sniffed(delim if delim and delim != "(empty)" else ",", cols)


def unify(a: str, b: str) -> str:
    """The type that holds values of both (numbers widen to float64; otherwise text)."""
    if a == b:
        return a
    if {a, b} <= {"int64", "int32", "float64"}:
        return "float64" if "float64" in (a, b) else "int64"
    return "string"


def generic_types(sniffed: Sequence[Sniffed], overrides: dict[str, str]) -> list[tuple[str, str]]:
    """One type per column over several files (first file's column order, new columns appended),
    with ``--schema`` overrides applied."""
    types: dict[str, str] = {}
    for s in sniffed:
        for name, typ in s.columns:
            types[name] = unify(types[name], typ) if name in types else typ
    unknown = [c for c in overrides if c not in types]
    if unknown:
        raise UsageError(f"--schema names columns the CSV does not have: {', '.join(unknown)} "
                         f"(columns: {', '.join(types)})", where="--schema")
    types.update(overrides)
    return list(types.items())
