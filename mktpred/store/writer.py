"""The store's one write path for Parquet: every Parquet file in a store is written here.

- :class:`PartitionedWriter`: one source's rows into ``<root>/<table>/date=<UTC date>/<stem>.parquet``
  by the UTC date of its date column(s) (``time``, falling back to ``recv_time`` where ``time`` is
  null);
- :class:`SingleFileWriter`: a table without a time column, ``<root>/<table>/<stem>.parquet``;
- :func:`write_parquet_file`: one whole table as one file (model evaluations, Power BI exports).

Files are written under ``<name>.tmp`` (page checksums on) and renamed into place by ``commit``
(fsync, then rename), which also removes files an earlier run of the same stem left in other
partitions; until then a reader sees the previous state, never half a file.  Memory is bounded:
rows are flushed as a row group once ``row_group_rows`` rows or ``row_group_bytes`` bytes are
pending for a file.  Rows keep the order they were given in.  The driver half (probe, sweep,
manifest) is :mod:`mktpred.store.session`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mktpred.coinbase.timestamps import utc_date
from mktpred.errors import OutputNotWritable
from mktpred.store.layout import TMP_SUFFIX, StoreLayout, atomic_replace
from mktpred.store.schemas import TABLE_SCHEMAS

NS_PER_DAY = 86_400 * 1_000_000_000
DATE_COLUMNS = ("time", "recv_time")


def output_pattern(stem: str) -> re.Pattern[str]:
    """File names a source called ``stem`` may own: ``<stem>.parquet``, ``<stem>-<k>.parquet``
    and their temporary ``.tmp`` siblings."""
    return re.compile(re.escape(stem) + r"(-\d+)?\.parquet(" + re.escape(TMP_SUFFIX) + r")?\Z")


def stem_files(root: Path, stem: str, tables: list[str] | None = None) -> list[Path]:
    """Every file of ``stem`` (final or temporary) in the store's partitions."""
    pat = output_pattern(stem)
    layout = StoreLayout(root)
    found: list[Path] = []
    for table in tables if tables is not None else layout.tables():
        tdir = layout.table_dir(table)
        if not tdir.is_dir():
            continue
        for part in tdir.iterdir():
            if part.is_dir() and part.name.startswith("date="):
                found.extend(p for p in part.iterdir() if pat.match(p.name))
    return found


def _days(table: pa.Table, columns: tuple[str, ...]) -> pa.Array:
    """The UTC day number of each row (from the first non-null of ``columns``)."""
    key: pa.Array | pa.ChunkedArray | None = None
    for col in columns:
        if col not in table.column_names:
            continue
        vals = pc.cast(table.column(col), pa.int64())
        key = vals if key is None else pc.coalesce(key, vals)
    if key is None:
        raise ValueError(f"table has none of the date columns {columns}")
    # integer division truncates towards zero: shift negatives so it floors
    shifted = pc.if_else(pc.less(key, 0), pc.subtract(key, NS_PER_DAY - 1), key)
    return pc.divide(shifted, NS_PER_DAY)


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Dictionary-encode strings and booleans only: on timestamps and prices it costs a third more
    time and a quarter more space (measured on level2 rows)."""
    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_boolean(f.type)]


def check_stem(stem: str) -> str:
    """``stem`` if it is one file-name part that stays in its folder, else ``ValueError`` (names
    taken from data go through :func:`mktpred.naming.safe_name` first)."""
    if stem in ("", ".", "..") or "/" in stem or "\\" in stem or "\0" in stem:
        raise ValueError(f"not a safe output file stem: {stem!r}")
    return stem


def _codec(compression: str, level: int | None) -> tuple[str | None, int | None]:
    codec = None if compression == "none" else compression
    return codec, level if codec in ("zstd", "gzip", "brotli") else None


@dataclass
class _OpenFile:
    """One output file being written: rows pending for the next row group, then the writer."""

    final: Path
    tmp: Path
    schema: pa.Schema
    writer: pq.ParquetWriter | None = None
    pending: list[pa.Table] = field(default_factory=list)
    pending_rows: int = 0
    pending_bytes: int = 0
    rows: int = 0

    def add(self, data: pa.Table) -> None:
        self.pending.append(data)
        self.pending_rows += data.num_rows
        self.pending_bytes += data.nbytes
        self.rows += data.num_rows

    def flush(self, compression: str | None, level: int | None, row_group_rows: int, exact: bool = False) -> None:
        """Write what is pending: one row group (``exact``: row groups of at most ``row_group_rows``)."""
        if not self.pending:
            return
        try:
            if self.writer is None:
                self.tmp.parent.mkdir(parents=True, exist_ok=True)
                self.writer = pq.ParquetWriter(self.tmp, self.schema, compression=compression,
                                               compression_level=level,
                                               use_dictionary=_dictionary_columns(self.schema),
                                               # page CRCs let `validate` catch flipped bytes that still decode
                                               write_page_checksum=True)
            data = pa.concat_tables(self.pending) if len(self.pending) > 1 else self.pending[0]
            self.writer.write_table(data, row_group_size=row_group_rows if exact else max(row_group_rows, data.num_rows))
        except OSError as exc:
            raise OutputNotWritable(f"cannot write {self.tmp.name}: {exc.strerror or exc}",
                                    where=str(self.tmp.parent)) from None
        self.pending.clear()
        self.pending_rows = 0
        self.pending_bytes = 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def discard(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:
                pass
            self.writer = None
        self.pending.clear()
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


class TableWriter(Protocol):
    """What a producer hands its tables to: :class:`PartitionedWriter` or :class:`SingleFileWriter`."""

    rows: dict[str, int]

    def write(self, table: str, data: pa.Table) -> None: ...

    def commit(self) -> list[str]: ...

    def abort(self) -> None: ...


class PartitionedWriter:
    """Writes one source's rows into the date partitions of a store (see the module docstring)."""

    def __init__(self, root: Path, stem: str, *, compression: str = "zstd", compression_level: int | None = 3,
                 row_group_rows: int = 1_000_000, row_group_bytes: int = 64 * 2**20, schemas: dict[str, pa.Schema] | None = None,
                 date_columns: tuple[str, ...] = DATE_COLUMNS, prune: bool = True,
                 exact_row_groups: bool = False) -> None:
        self.layout = StoreLayout(root)
        self.stem = check_stem(stem)
        self.compression, self.level = _codec(compression, compression_level)
        self.row_group_rows = row_group_rows
        self.row_group_bytes = row_group_bytes
        self.schemas = schemas if schemas is not None else TABLE_SCHEMAS
        self.date_columns = date_columns
        #: on commit, remove this stem's files in partitions not written this time (a source
        #: re-converted whole); ``False`` for producers that rewrite only some days (book)
        self.prune = prune
        #: row groups of at most ``row_group_rows`` (else one row group per flush)
        self.exact_row_groups = exact_row_groups
        self._files: dict[tuple[str, str], _OpenFile] = {}
        self.rows: dict[str, int] = {}

    # -- writing ---------------------------------------------------------------------------------
    def write(self, table: str, data: pa.Table) -> None:
        """Append rows of ``table`` (its contract schema); rows with no date raise ``ValueError``."""
        if data.num_rows == 0:
            return
        schema = self.schemas[table]
        if not data.schema.equals(schema):
            data = data.cast(schema)
        days = _days(data, self.date_columns)
        if days.null_count:
            raise ValueError(f"{table}: rows without a timestamp to partition by")
        lo, hi = pc.min_max(days).values()
        if lo == hi:
            self._append(table, utc_date(lo.as_py() * NS_PER_DAY), data)
            return
        for day in pc.unique(days).to_pylist():
            self._append(table, utc_date(day * NS_PER_DAY), data.filter(pc.equal(days, day)))

    def _append(self, table: str, date: str, data: pa.Table) -> None:
        key = (table, date)
        f = self._files.get(key)
        if f is None:
            final = self.layout.data_file(table, date, self.stem)
            f = _OpenFile(final, final.with_name(final.name + TMP_SUFFIX), self.schemas[table])
            self._files[key] = f
        f.add(data)
        self.rows[table] = self.rows.get(table, 0) + data.num_rows
        if f.pending_rows >= self.row_group_rows or f.pending_bytes >= self.row_group_bytes:
            self._flush(f)

    def _flush(self, f: _OpenFile) -> None:
        f.flush(self.compression, self.level, self.row_group_rows, self.exact_row_groups)

    def partition_rows(self, table: str) -> dict[str, int]:
        """Rows written so far into each date partition of ``table``."""
        return {date: f.rows for (t, date), f in self._files.items() if t == table and f.rows}

    # -- finishing -------------------------------------------------------------------------------
    def commit(self) -> list[str]:
        """Close every file, rename it into place, drop this stem's files the new set does not
        include; returns the files, relative to the store root, in a stable order."""
        finals: list[Path] = []
        for f in self._files.values():
            self._flush(f)
            f.close()
        try:
            for f in self._files.values():
                if f.rows:
                    atomic_replace(f.tmp, f.final)
                    finals.append(f.final)
            if self.prune:
                keep = set(finals)
                for p in stem_files(self.layout.root, self.stem, list(self.schemas)):
                    if p not in keep:
                        p.unlink(missing_ok=True)
        except OSError as exc:
            raise OutputNotWritable(f"cannot finish the output files: {exc.strerror or exc}",
                                    where=str(self.layout.root)) from None
        self._files.clear()
        return sorted(str(p.relative_to(self.layout.root)) for p in finals)

    def abort(self) -> None:
        """Forget everything written since the start (temporary files are removed)."""
        for f in self._files.values():
            f.discard()
        self._files.clear()
        self.rows.clear()


class SingleFileWriter:
    """A table without a time column: one file ``<root>/<table>/<stem>.parquet``, written under a
    temporary name in bounded row groups and renamed into place by :meth:`commit` (a commit with
    no rows removes the file an earlier run left)."""

    def __init__(self, root: Path, table: str, stem: str, schema: pa.Schema, *, compression: str = "zstd",
                 compression_level: int | None = 3, row_group_rows: int = 1_000_000,
                 row_group_bytes: int = 64 * 2**20) -> None:
        self.root = root
        final = StoreLayout(root).table_dir(table) / f"{check_stem(stem)}.parquet"
        self._file = _OpenFile(final, final.with_name(final.name + TMP_SUFFIX), schema)
        self.compression, self.level = _codec(compression, compression_level)
        self.row_group_rows = row_group_rows
        self.row_group_bytes = row_group_bytes
        self.rows: dict[str, int] = {}

    @property
    def final(self) -> Path:
        return self._file.final

    def write(self, table: str, data: pa.Table) -> None:
        """Append rows (``table`` only counts them: the file's table was fixed at creation)."""
        if data.num_rows == 0:
            return
        self._file.add(data)
        self.rows[table] = self.rows.get(table, 0) + data.num_rows
        if self._file.pending_rows >= self.row_group_rows or self._file.pending_bytes >= self.row_group_bytes:
            self._file.flush(self.compression, self.level, self.row_group_rows)

    def commit(self) -> list[str]:
        """Rename the file into place; returns it relative to the store root (none without rows)."""
        f = self._file
        f.flush(self.compression, self.level, self.row_group_rows)
        try:
            if f.writer is None:
                f.final.unlink(missing_ok=True)
                return []
            f.close()
            atomic_replace(f.tmp, f.final)
        except OSError as exc:
            raise OutputNotWritable(f"cannot finish {f.final.name}: {exc.strerror or exc}",
                                    where=str(f.final.parent)) from None
        return [f.final.relative_to(self.root).as_posix()]

    def abort(self) -> None:
        """Forget everything written (the temporary file is removed)."""
        self._file.discard()
        self.rows.clear()


def write_parquet_file(table: pa.Table, path: Path, *, compression: str = "zstd",
                       row_group_rows: int | None = None) -> Path:
    """Write one whole table as one Parquet file, atomically (temporary name, fsync, rename)."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp, compression=None if compression == "none" else compression,
                       row_group_size=row_group_rows, write_page_checksum=True)
        atomic_replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputNotWritable(f"cannot write {path.name}: {exc.strerror or exc}", where=str(path.parent)) from None
    return path
