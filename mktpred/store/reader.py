"""The Python read API of the store: open it by path, list what is in it, read any table.

    >>> from mktpred.store import open_store
    >>> store = open_store("data/parquet")
    >>> store.tables(), store.dates("l2"), store.products("l2")
    >>> ticks = store.read("ticker", products="BTC-USD", start="2026-08-09T21:00:00Z", end="2026-08-09T22:00:00Z")
    >>> rel = store.relation("l2", products="ETH-USD", start="2026-08-09")   # a DuckDB relation
    >>> df = store.to_pandas("trades", start="2026-08-09", end="2026-08-10")
    >>> for frame in store.l2_frames("BTC-USD"):                             # (conn, seq) order
    ...     frame.conn, frame.seq, frame.is_snapshot, frame.price, frame.size

Time bounds (``start`` inclusive, ``end`` exclusive) accept nanoseconds since the epoch, a
``datetime``/``date``/``numpy.datetime64``/pandas ``Timestamp``, or a string (``2026-08-09``,
``2026-08-09T21:05:48.228568804Z``, naive times read as UTC).  Only the ``date=`` partitions that
can hold rows in the range are opened (partition pruning), and the ``time``/``product_id`` filters
are pushed into the Parquet reader, which skips row groups by their statistics.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mktpred.coinbase.timestamps import NS_PER_S, format_iso_ns, parse_rfc3339_ns, utc_date
from mktpred.errors import DataError, UsageError
from mktpred.store.layout import StoreLayout
from mktpred.store.schemas import TABLE_SCHEMAS, TS_NS

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

TimeLike = int | str | _dt.datetime | _dt.date | np.datetime64 | None

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_FILE_NAME = re.compile(r"(.*?)(?:-(\d+))?\.parquet\Z")
_DAY_NS = 86_400 * NS_PER_S
_L2_COLUMNS = ["conn", "seq", "time", "is_snapshot", "side", "price", "size"]


def to_ns(value: TimeLike) -> int | None:
    """Nanoseconds since the Unix epoch (UTC) for any accepted time bound; ``None`` stays ``None``.

    Raises :class:`~mktpred.errors.UsageError` for a value that is not a time."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise UsageError(f"not a time: {value!r}")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[ns]").astype(np.int64))
    if isinstance(value, _dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=_dt.UTC)
        whole = calendar.timegm(aware.utctimetuple())
        return whole * NS_PER_S + aware.microsecond * 1000 + int(getattr(value, "nanosecond", 0))
    if isinstance(value, _dt.date):
        return calendar.timegm(value.timetuple()) * NS_PER_S
    if isinstance(value, str):
        text = value.strip()
        if _DATE_ONLY.match(text):
            try:
                return to_ns(_dt.date.fromisoformat(text))
            except ValueError:
                raise UsageError(f"not a date: {value!r}") from None
        try:
            return parse_rfc3339_ns(text)
        except ValueError:
            pass
        try:
            return to_ns(_dt.datetime.fromisoformat(text))
        except ValueError:
            raise UsageError(f"not a time: {value!r} (expected e.g. 2026-08-09 or "
                             "2026-08-09T21:05:48.228568804Z)") from None
    raise UsageError(f"not a time: {value!r}")


def _products_list(products: str | Iterable[str] | None) -> list[str] | None:
    if products is None:
        return None
    if isinstance(products, str):
        return [p.strip() for p in products.split(",") if p.strip()]
    return list(products)


def _file_order(path: Path) -> tuple[str, str, int]:
    """Files sort by date, then segment stem, then part number (``x.parquet`` before ``x-1.parquet``)."""
    m = _FILE_NAME.match(path.name)
    stem, part = (m.group(1), int(m.group(2) or 0)) if m else (path.name, 0)
    return (path.parent.name, stem, part)


@dataclass(frozen=True)
class L2Frame:
    """One level2 frame of one product: its rows in the order the exchange sent them."""

    conn: str
    seq: int
    time: int  #: frame timestamp, ns since the epoch
    is_snapshot: bool
    is_bid: np.ndarray  #: bool per row (``True`` = bid, ``False`` = ask)
    price: np.ndarray  #: float64 per row
    size: np.ndarray  #: float64 per row, 0 = level removed

    @property
    def side(self) -> np.ndarray:
        """``"bid"``/``"ask"`` per row."""
        return np.where(self.is_bid, "bid", "ask")

    def __len__(self) -> int:
        return len(self.price)


@dataclass(frozen=True)
class L2Batch:
    """Whole level2 frames of one product on one connection, in ``seq`` order (columnar).

    Frame ``i`` is rows ``starts[i]:starts[i+1]`` (``starts`` ends with the row count); the
    per-frame arrays ``frame_seq``, ``frame_time`` and ``frame_snapshot`` mark snapshot boundaries.
    """

    conn: str
    is_bid: np.ndarray
    price: np.ndarray
    size: np.ndarray
    starts: np.ndarray  #: int64, n_frames + 1
    frame_seq: np.ndarray  #: int64 per frame
    frame_time: np.ndarray  #: int64 ns per frame
    frame_snapshot: np.ndarray  #: bool per frame

    @property
    def n_frames(self) -> int:
        return len(self.frame_seq)

    @property
    def n_rows(self) -> int:
        return len(self.price)

    def frames(self) -> Iterator[L2Frame]:
        """The batch as :class:`L2Frame` objects (convenient, slower than the arrays)."""
        s = self.starts
        for i in range(self.n_frames):
            lo, hi = int(s[i]), int(s[i + 1])
            yield L2Frame(self.conn, int(self.frame_seq[i]), int(self.frame_time[i]),
                          bool(self.frame_snapshot[i]), self.is_bid[lo:hi], self.price[lo:hi], self.size[lo:hi])


class Store:
    """A Parquet store opened by path (see the module docstring for examples)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.layout = StoreLayout(self.root)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- what is there ----------------------------------------------------------------------------
    def tables(self) -> list[str]:
        """Tables present on disk."""
        return self.layout.tables()

    def dates(self, table: str, start: TimeLike = None, end: TimeLike = None) -> list[str]:
        """``YYYY-MM-DD`` partitions of ``table`` that can hold rows in ``[start, end)``."""
        lo, hi = to_ns(start), to_ns(end)
        first = utc_date(lo) if lo is not None else None
        last = utc_date(hi - 1) if hi is not None else None
        return [d for d in self.layout.dates(table)
                if (first is None or d >= first) and (last is None or d <= last)]

    def files(self, table: str, start: TimeLike = None, end: TimeLike = None) -> list[Path]:
        """The Parquet files of the partitions in range, in time order (date, segment, part)."""
        out: list[Path] = []
        for d in self.dates(table, start, end):
            part = self.layout.partition_dir(table, d)
            out.extend(sorted((p for p in part.glob("*.parquet") if p.is_file()), key=_file_order))
        return out

    def check_files(self, table: str, start: TimeLike = None, end: TimeLike = None) -> None:
        """Raise :class:`DataError` naming the first file of ``table`` in range that is not a readable
        Parquet file (empty, truncated, not Parquet) or lacks a column of the table's contract (a
        foreign file dropped into the store), so readers fail with one line instead of deep in Arrow."""
        import pyarrow.parquet as pq

        want = TABLE_SCHEMAS.get(table)
        for f in self.files(table, start, end):
            rel = f.relative_to(self.root).as_posix()
            try:
                schema = pq.read_schema(f)
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"{rel} is not a readable Parquet file: {_first_line(exc)}",
                                where=str(self.root)) from None
            if want is not None:
                missing = [n for n in want.names if n not in schema.names]
                if missing:
                    raise DataError(f"{rel} is not a {table} file: no column {', '.join(missing[:5])}"
                                    f"{' ...' if len(missing) > 5 else ''}", where=str(self.root))

    def schema(self, table: str) -> pa.Schema | None:
        """The contract schema for the tables ``convert`` writes; else the first file's schema."""
        if table in TABLE_SCHEMAS:
            return TABLE_SCHEMAS[table]
        files = self.files(table)
        if not files:
            return None
        import pyarrow.parquet as pq

        return pq.read_schema(files[0])

    def products(self, table: str = "l2", start: TimeLike = None, end: TimeLike = None) -> list[str]:
        """Distinct ``product_id`` values of ``table`` in the range, sorted."""
        self._require_column(table, "product_id")
        found: set[str] = set()
        lo, hi = to_ns(start), to_ns(end)
        expr = self._expression(None, lo, hi)
        for f in self.files(table, start, end):
            col = ds.dataset(str(f), format="parquet").to_table(columns=["product_id"], filter=expr)
            found.update(v for v in pc.unique(col.column("product_id")).to_pylist() if v is not None)
        return sorted(found)

    # -- reading ----------------------------------------------------------------------------------
    def dataset(self, table: str, start: TimeLike = None, end: TimeLike = None) -> ds.Dataset:
        """A PyArrow dataset over the partitions in range only (the schema is the contract's)."""
        files = self.files(table, start, end)
        schema = self.schema(table)
        if not files:
            return ds.dataset(pa.Table.from_batches([], schema=schema or pa.schema([])))
        return ds.dataset([str(f) for f in files], schema=schema, format=_verified_parquet())

    def read(self, table: str, *, products: str | Iterable[str] | None = None, start: TimeLike = None,
             end: TimeLike = None, columns: Sequence[str] | None = None,
             filter: ds.Expression | None = None) -> pa.Table:
        """Rows of ``table`` for ``products`` with ``start <= time < end`` as a PyArrow table.

        Rows keep the store's order (files in time order, rows in input order)."""
        lo, hi = to_ns(start), to_ns(end)
        plist = _products_list(products)
        if plist is not None:
            self._require_column(table, "product_id")
        expr = self._expression(plist, lo, hi)
        if filter is not None:
            expr = filter if expr is None else expr & filter
        try:
            return self.dataset(table, lo, hi).to_table(columns=list(columns) if columns else None, filter=expr)
        except (OSError, pa.ArrowException) as exc:
            raise _damaged(table, exc) from None

    def to_pandas(self, table: str, **kwargs: Any) -> pd.DataFrame:
        """:meth:`read` as a pandas frame (timestamps as ``datetime64[ns, UTC]``)."""
        return self.read(table, **kwargs).to_pandas()

    def relation(self, table: str, *, products: str | Iterable[str] | None = None, start: TimeLike = None,
                 end: TimeLike = None, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyRelation:
        """A lazy DuckDB relation over the partitions in range, filtered by product and time.

        Timestamps are DuckDB ``TIMESTAMPTZ_NS`` (nanoseconds kept)."""
        import duckdb

        con = con if con is not None else duckdb.connect()
        lo, hi = to_ns(start), to_ns(end)
        plist = _products_list(products)
        if plist is not None:
            self._require_column(table, "product_id")
        files = self.files(table, lo, hi)
        if not files:
            schema = self.schema(table) or pa.schema([])
            return con.from_arrow(pa.Table.from_batches([], schema=schema))
        rel = con.read_parquet([str(f) for f in files], hive_partitioning=False)
        conds: list[str] = []
        if plist is not None:
            conds.append("product_id IN (" + ", ".join(_sql_str(p) for p in plist) + ")" if plist else "false")
        if lo is not None:
            conds.append(f"time >= {_sql_ts(lo)}")
        if hi is not None:
            conds.append(f"time < {_sql_ts(hi)}")
        return rel.filter(" AND ".join(conds)) if conds else rel

    # -- level2 frames ----------------------------------------------------------------------------
    def l2_batches(self, product: str, start: TimeLike = None, end: TimeLike = None, *,
                   conns: Iterable[str] | None = None, batch_rows: int = 262_144,
                   on_file: Any = None) -> Iterator[L2Batch]:
        """Whole level2 frames of ``product`` as columnar batches, each batch one connection.

        Files are read in time order and streamed (memory bounded by ``batch_rows`` plus one
        frame); rows keep frame order, and frames are sorted by ``seq`` within each batch.  Across
        batches the files' own order is kept — ``convert`` writes frames in receive order, which is
        ``seq`` order on a connection (:class:`~mktpred.book.Replayer` skips and counts a frame
        whose ``seq`` is not after the previous one).
        ``on_file(path, size)`` is called as each file is finished (progress)."""
        import pyarrow.parquet as pq

        lo, hi = to_ns(start), to_ns(end)
        conn_arr = pa.array(sorted(set(conns)), pa.string()) if conns is not None else None
        for f in self.files("l2", lo, hi):
            carry: pa.Table | None = None
            # ParquetFile streams row group by row group (the dataset scanner's readahead held far
            # more); row groups are pruned by their statistics, rows filtered per batch.
            pf = pq.ParquetFile(f, page_checksum_verification=True)  # costs ~3% of the read
            groups = _row_groups(pf, product, lo, hi)
            batches = pf.iter_batches(batch_size=batch_rows, row_groups=groups, columns=[*_L2_COLUMNS, "product_id"],
                                      use_threads=False) if groups else iter(())
            for rb in _checked(batches, f):
                mask = pc.equal(rb.column("product_id"), product)
                if lo is not None:
                    mask = pc.and_(mask, pc.greater_equal(rb.column("time"), pa.scalar(lo, TS_NS)))
                if hi is not None:
                    mask = pc.and_(mask, pc.less(rb.column("time"), pa.scalar(hi, TS_NS)))
                if conn_arr is not None:
                    mask = pc.and_(mask, pc.is_in(rb.column("conn"), value_set=conn_arr))
                sel = rb.filter(pc.fill_null(mask, False)).select(_L2_COLUMNS)
                if sel.num_rows == 0:
                    continue
                tbl = pa.Table.from_batches([sel])
                if carry is not None:
                    tbl = pa.concat_tables([carry, tbl])
                # The last frame may continue in the next batch: hold it back.
                k = _tail_start(tbl)
                n = tbl.num_rows
                carry = tbl.slice(k) if k < n else None
                if k > 0:
                    yield from _split_conns(tbl.slice(0, k))
            if carry is not None and carry.num_rows:
                yield from _split_conns(carry)
            if on_file is not None:
                on_file(f, f.stat().st_size)

    def l2_frames(self, product: str, start: TimeLike = None, end: TimeLike = None, *,
                  conns: Iterable[str] | None = None) -> Iterator[L2Frame]:
        """Level2 frames of ``product`` one by one: grouped by ``conn``, ordered by ``seq``, with
        ``is_snapshot`` marking where a new book starts."""
        for batch in self.l2_batches(product, start, end, conns=conns):
            yield from batch.frames()

    # -- helpers ----------------------------------------------------------------------------------
    def _require_column(self, table: str, column: str) -> None:
        schema = self.schema(table)
        if schema is None:
            if table not in self.tables():
                raise UsageError(f"no table {table!r} in the store", where=str(self.root))
            return
        if column not in schema.names:
            raise UsageError(f"table {table!r} has no column {column!r}", where=str(self.root))

    @staticmethod
    def _expression(products: list[str] | None, lo: int | None, hi: int | None) -> ds.Expression | None:
        expr: ds.Expression | None = None

        def add(e: ds.Expression) -> None:
            nonlocal expr
            expr = e if expr is None else expr & e

        if products is not None:
            add(pc.field("product_id").isin(pa.array(products, pa.string())))
        if lo is not None:
            add(pc.field("time") >= pa.scalar(lo, TS_NS))
        if hi is not None:
            add(pc.field("time") < pa.scalar(hi, TS_NS))
        return expr


def _verified_parquet() -> ds.ParquetFileFormat:
    """Parquet with page-checksum verification: a flipped bit fails the read instead of passing
    wrong values on (the store writer stores page checksums; verifying costs ~3% of a read)."""
    return ds.ParquetFileFormat(
        default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True))


def _damaged(what: str | Path, exc: BaseException) -> DataError:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return DataError(f"cannot read {what}: {text} (`mktpred validate` names damaged files)", where=str(what))


def _checked(batches: Iterator[pa.RecordBatch], path: Path) -> Iterator[pa.RecordBatch]:
    """``batches`` read from ``path``; a damaged page (checksum, decompression) is a DataError."""
    try:
        yield from batches
    except (OSError, pa.ArrowException) as exc:
        raise _damaged(path, exc) from None


def open_store(root: str | Path) -> Store:
    """Open an existing store; :class:`~mktpred.errors.UsageError` (exit 2) when it does not exist."""
    path = Path(root)
    if not path.is_dir():
        raise UsageError(f"no Parquet store at {path}", where="--parquet-dir")
    return Store(path)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_ts(ns: int) -> str:
    iso = format_iso_ns(ns)  # 2026-08-09T21:05:48.228568804Z
    return f"'{iso[:10]} {iso[11:-1]}+00'::TIMESTAMPTZ_NS"


def _row_groups(pf: Any, product: str, lo: int | None, hi: int | None) -> list[int]:
    """Row groups whose statistics allow rows of ``product`` with ``lo <= time < hi``."""
    md = pf.metadata
    names = pf.schema_arrow.names
    ti, pi = names.index("time"), names.index("product_id")
    keep = []
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        if rg.num_rows == 0:
            continue
        ts, ps = rg.column(ti).statistics, rg.column(pi).statistics
        if ts is not None and ts.has_min_max:
            if (hi is not None and ts.min_raw >= hi) or (lo is not None and ts.max_raw < lo):
                continue
        if ps is not None and ps.has_min_max:
            pmin, pmax = ps.min, ps.max
            pmin = pmin.decode() if isinstance(pmin, bytes) else pmin
            pmax = pmax.decode() if isinstance(pmax, bytes) else pmax
            if not pmin <= product <= pmax:
                continue
        keep.append(g)
    return keep


def _tail_start(tbl: pa.Table) -> int:
    """Start of the run of rows of the table's last frame (same ``conn`` and ``seq`` as its last row)."""
    conn = tbl.column("conn")
    seq = tbl.column("seq")
    last_conn, last_seq = conn[-1].as_py(), seq[-1].as_py()
    same_conn = pc.is_null(conn) if last_conn is None else pc.fill_null(pc.equal(conn, last_conn), False)
    same_seq = pc.is_null(seq) if last_seq is None else pc.fill_null(pc.equal(seq, last_seq), False)
    if last_seq is None:  # no sequence numbers: a frame is a run of equal time
        same_seq = pc.equal(tbl.column("time"), tbl.column("time")[-1])
    other = np.flatnonzero(~pc.and_(same_conn, same_seq).to_numpy(zero_copy_only=False))
    return int(other[-1]) + 1 if len(other) else 0


def _split_conns(tbl: pa.Table) -> Iterator[L2Batch]:
    """Whole frames (possibly several connections) -> one :class:`L2Batch` per connection."""
    conn_col = tbl.column("conn")
    if conn_col.null_count:
        conn_col = pc.fill_null(conn_col, "")
    uniq = pc.unique(conn_col)
    if len(uniq) == 1:
        yield _make_batch(str(uniq[0].as_py()), tbl)
        return
    codes = pc.index_in(conn_col, value_set=uniq).to_numpy()
    for i, c in enumerate(uniq.to_pylist()):
        yield _make_batch(str(c), tbl.take(np.flatnonzero(codes == i)))


def _make_batch(conn: str, tbl: pa.Table) -> L2Batch:
    seq_col = tbl.column("seq")
    time = tbl.column("time").cast(pa.int64()).to_numpy()
    if seq_col.null_count:
        # Imported data without sequence numbers: frames are runs of equal time, in row order.
        seq = np.concatenate([[0], np.cumsum(np.diff(time) != 0)]).astype(np.int64) - 1
    else:
        seq = seq_col.to_numpy()
    is_bid = pc.equal(tbl.column("side"), "bid").to_numpy(zero_copy_only=False)
    price = tbl.column("price").to_numpy()
    size = tbl.column("size").to_numpy()
    snap = tbl.column("is_snapshot").to_numpy(zero_copy_only=False)
    if len(seq) > 1 and bool(np.any(np.diff(seq) < 0)):
        order = np.argsort(seq, kind="stable")
        seq, time, is_bid, price, size, snap = (a[order] for a in (seq, time, is_bid, price, size, snap))
    n = len(seq)
    starts = np.flatnonzero(np.diff(seq)) + 1 if n > 1 else np.empty(0, np.int64)
    first = np.concatenate([[0], starts]).astype(np.int64)
    return L2Batch(
        conn=conn, is_bid=np.ascontiguousarray(is_bid, dtype=bool), price=np.ascontiguousarray(price),
        size=np.ascontiguousarray(size), starts=np.concatenate([first, [n]]).astype(np.int64),
        frame_seq=seq[first], frame_time=time[first], frame_snapshot=np.asarray(snap[first], dtype=bool),
    )


def day_bounds(date: str) -> tuple[int, int]:
    """``[start, end)`` in ns of a ``YYYY-MM-DD`` UTC day."""
    lo = to_ns(date)
    assert lo is not None
    return lo, lo + _DAY_NS
