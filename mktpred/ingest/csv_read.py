"""Reading one CSV file for ``csv2parquet``: decompression, the header, DuckDB's streaming scan that
sets malformed rows aside with their line numbers, and finding the lines of rows dropped later.

DuckDB's ``read_csv`` parses in parallel against explicit column types and streams Arrow record
batches in file order; a row with the wrong number of fields, a value that is not of its column's
type, an empty value in a column that must have one (``force_not_null``) or a value outside an
``ENUM`` is skipped and recorded in its ``reject_errors`` table with the physical line number and
the line's text.  Checks that DuckDB cannot express (an ISO timestamp that does not parse, an empty
product id) run on the Arrow batches; those rows are known by their position among the rows DuckDB
returned, and :func:`locate_rows` turns positions into line numbers and text with one extra pass
over the file, made only when there are such rows.  Blank lines are ignored, as DuckDB does.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import duckdb
import numpy as np
import pyarrow as pa

from mktpred.errors import DataError

#: file name endings ``csv2parquet`` picks up in directories
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.zst")
#: a file with more malformed rows than this fails as a whole (and memory stays bounded)
MAX_BAD_ROWS = 1_000_000
_SAMPLE_BYTES = 1 << 20
_LOCATE_CHUNK = 8 << 20
#: DuckDB reject types that mean a quote never closed and the rest of the file was swallowed
_RUNAWAY = {"UNQUOTED VALUE", "LINE SIZE OVER MAXIMUM"}


def open_decompressed(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed by its suffix (``.gz``, ``.zst``) and buffered."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if name.endswith(".zst"):
        import zstandard

        return io.BufferedReader(zstandard.open(path, "rb"))
    return open(path, "rb")


def strip_csv_suffix(name: str) -> str:
    """``x.csv.gz`` -> ``x`` (and ``x.csv``, ``x.csv.zst``; other names lose their last suffix)."""
    low = name.lower()
    for suffix in sorted(CSV_SUFFIXES, key=len, reverse=True):
        if low.endswith(suffix):
            return name[: -len(suffix)]
    for suffix in (".gz", ".zst"):
        if low.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.rsplit(".", 1)[0] if "." in name else name


def read_header(path: Path) -> list[str]:
    """The column names on the file's first line (comma separated, quotes honoured, BOM dropped).

    Raises :class:`DataError` when the file cannot be read and when it has no header line."""
    try:
        with open_decompressed(path) as fh:
            line = fh.readline(_SAMPLE_BYTES)
    except Exception as exc:  # OSError, EOFError, zlib.error, zstandard.ZstdError: all "cannot read"
        raise DataError(f"cannot read the CSV header: {exc}", where=str(path)) from None
    text = line.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    if not text.strip():
        raise DataError("empty CSV: no header line", where=str(path))
    return [c.strip() for c in next(csv.reader([text]))]


def bytes_per_line(path: Path, size: int) -> float:
    """About how many bytes *of the file as stored* one line takes (from its first MiB), so a
    progress bar can follow a compressed file by the rows read so far."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_SAMPLE_BYTES)
        name = path.name.lower()
        if name.endswith(".gz"):
            data = zlib.decompressobj(wbits=31).decompress(raw, 64 * _SAMPLE_BYTES)
        elif name.endswith(".zst"):
            import zstandard

            data = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        else:
            data = raw
    except Exception:  # only an estimate: a bad file fails properly later
        return float(max(size, 1))
    lines = data.count(b"\n")
    return len(raw) / lines if lines else float(max(size, 1))


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Reject:
    """A line DuckDB set aside."""

    line: int
    reason: str
    text: str


@dataclass(frozen=True)
class ScanSpec:
    """How DuckDB reads one file: column types in file order, plus the reading options."""

    columns: tuple[tuple[str, str], ...]  #: (name, DuckDB type) in the file's column order
    force_not_null: tuple[str, ...] = ()  #: typed columns where an empty value is an error, not null
    enums: tuple[tuple[str, tuple[str, ...]], ...] = ()  #: (type name, values) to create first
    delimiter: str = ","
    single_line_rows: bool = True  #: no value may span lines (true of Tardis and mktpred CSV)


class DuckScan:
    """Streams one CSV file as Arrow batches; :meth:`rejects` afterwards lists the lines set aside."""

    def __init__(self, path: Path, spec: ScanSpec, *, threads: int = 0, batch_rows: int = 262_144) -> None:
        self.path = path
        self.spec = spec
        self.batch_rows = batch_rows
        self.con = duckdb.connect(":memory:")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self.con.execute("SET preserve_insertion_order = true")
        for name, values in spec.enums:
            self.con.execute(f'CREATE TYPE "{name}" AS ENUM ({", ".join(_lit(v) for v in values)})')

    def _sql(self) -> str:
        cols = ", ".join(f"{_lit(n)}: {_lit(t)}" for n, t in self.spec.columns)
        opts = [
            "header = true", "auto_detect = false", f"columns = {{{cols}}}",
            f"delim = {_lit(self.spec.delimiter)}", "quote = '\"'", "escape = '\"'",
            "strict_mode = true", "store_rejects = true", f"rejects_limit = {MAX_BAD_ROWS + 1}",
            "allow_quoted_nulls = false", "compression = 'auto'",
        ]
        if self.spec.force_not_null:
            opts.append("force_not_null = [" + ", ".join(_lit(c) for c in self.spec.force_not_null) + "]")
        return f"SELECT * FROM read_csv({_lit(str(self.path))}, {', '.join(opts)})"

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The rows DuckDB accepted, in file order.  Raises :class:`DataError` on a file it cannot
        parse at all (corrupt compression, mixed line endings)."""
        try:
            reader = self.con.sql(self._sql()).to_arrow_reader(self.batch_rows)
            yield from reader
        except duckdb.Error as exc:
            msg = _first_line(exc)
            if "state machine" in msg:
                msg += " (mixed line endings?)"
            raise DataError(f"cannot parse the CSV: {msg}", where=str(self.path)) from None

    def rejects(self) -> list[Reject]:
        """One entry per rejected line, by line number.  Raises :class:`DataError` when a quote
        that never closes swallowed the rest of the file, or when there were too many."""
        rows = self.con.execute(
            "SELECT line, arg_min(error_type, column_idx), arg_min(error_message, column_idx), "
            "arg_min(csv_line, column_idx), arg_min(column_name, column_idx) "
            "FROM reject_errors GROUP BY line ORDER BY line").fetchall()
        out: list[Reject] = []
        for line, etype, message, text, column in rows:
            text = (text or "").strip("\r\n")  # DuckDB may include the blank lines before the row
            multi = "\n" in text
            if etype in _RUNAWAY or (multi and (self.spec.single_line_rows or etype == "MISSING COLUMNS")):
                raise DataError(f"line {line}: a quoted value never closes, so the rest of the file cannot be "
                                f"read reliably; fix that line and run again", where=str(self.path))
            out.append(Reject(int(line), _reason(str(etype), message or "", column), text))
        if len(out) > MAX_BAD_ROWS:
            raise DataError(f"more than {MAX_BAD_ROWS:,} malformed rows: is this the right --format?",
                            where=str(self.path))
        return out

    def close(self) -> None:
        self.con.close()


def _reason(etype: str, message: str, column: str | None) -> str:
    """``cast: price: Could not convert string "abc" to 'DOUBLE'``, ``missing columns: ...``."""
    message = message.replace("\n", " ").strip()
    if etype == "CAST" and column:
        detail = message.split(". ", 1)[1].strip() if message.startswith("Error when converting") else message
        return f"cast: {column}: {detail or 'empty'}"
    return f"{etype.lower()}: {message}"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


#: a line at least this long is remembered by :func:`count_lines` (DuckDB may drop such lines unseen)
LONG_LINE = 1 << 20
#: how much of a line too long to read is kept in the quarantine
LONG_LINE_TEXT = 1000


@dataclass(frozen=True)
class LineCount:
    """What :func:`count_lines` found: every non-blank line, and the long ones."""

    lines: int  #: non-blank physical lines, the header included
    long_lines: dict[int, tuple[int, str]]  #: line number -> (bytes, its first LONG_LINE_TEXT characters)


def count_lines(path: Path) -> LineCount:
    """Count the non-blank lines of the (decompressed) file, and note every line of at least
    :data:`LONG_LINE` bytes, independently of DuckDB: a line longer than its read buffer (about
    32 MB) is dropped by DuckDB without a reject record, so the import checks its count against
    this one and quarantines what DuckDB never saw (issue 19: every input line is accounted for)."""
    lines = line_base = 0
    long_lines: dict[int, tuple[int, str]] = {}
    carry_len = 0  # bytes of the unfinished line carried over from earlier chunks
    carry_head = b""  # its first bytes (enough to tell blank from not, and to quote it)
    with open_decompressed(path) as fh:
        while True:
            chunk = fh.read(_LOCATE_CHUNK)
            eof = not chunk
            if eof:
                if carry_len:
                    chunk = b"\n"  # a last line without a newline
                else:
                    break
            arr = np.frombuffer(chunk, dtype=np.uint8)
            nl = np.flatnonzero(arr == 10)
            if nl.size == 0:
                if carry_len < LONG_LINE_TEXT * 4:
                    carry_head += chunk[: LONG_LINE_TEXT * 4]
                carry_len += len(chunk)
                continue
            starts = np.empty_like(nl)
            starts[0] = 0
            starts[1:] = nl[:-1] + 1
            length = nl - starts
            length[0] += carry_len
            first = arr[starts]
            if carry_len:
                first[0] = carry_head[0]
            blank = (length == 0) | ((length == 1) & (first == 13))
            lines += int((~blank).sum())
            for i in np.flatnonzero(length >= LONG_LINE).tolist():
                head = (carry_head + chunk[: min(int(nl[0]), LONG_LINE_TEXT * 4)]) if i == 0 and carry_len else \
                    chunk[int(starts[i]): int(starts[i]) + LONG_LINE_TEXT * 4]
                text = head.decode("utf-8", errors="replace")[:LONG_LINE_TEXT]
                long_lines[line_base + 1 + i] = (int(length[i]), text)
            line_base += nl.size
            rest = chunk[int(nl[-1]) + 1:]
            carry_len, carry_head = len(rest), rest[: LONG_LINE_TEXT * 4]
            if eof:
                break
    return LineCount(lines, long_lines)


@dataclass(frozen=True)
class Located:
    line: int | None  #: physical 1-based line, None when the file's rows could not be matched to lines
    text: str


def locate_rows(path: Path, ordinals: list[int], skip_lines: list[int], *, rows_expected: int,
                header_lines: int = 1) -> dict[int, Located]:
    """Physical line number and text of rows given by their position among the rows DuckDB
    returned (0-based), skipping the header, blank lines and ``skip_lines`` (its rejects).

    Assumes one row per line; if the count of rows found differs from ``rows_expected`` (values
    spanning lines), the lines are unknown and come back as ``None`` with empty text."""
    want = np.unique(np.asarray(ordinals, dtype=np.int64))
    skip = np.unique(np.asarray(skip_lines, dtype=np.int64))
    found: dict[int, Located] = {}
    line_base = row_base = wi = 0
    carry = b""
    with open_decompressed(path) as fh:
        while True:
            chunk = fh.read(_LOCATE_CHUNK)
            eof = not chunk
            buf = carry + chunk
            if eof:
                if not buf:
                    break
                if not buf.endswith(b"\n"):
                    buf += b"\n"
            arr = np.frombuffer(buf, dtype=np.uint8)
            nl = np.flatnonzero(arr == 10)
            if nl.size == 0:
                carry = buf
                continue
            starts = np.empty_like(nl)
            starts[0] = 0
            starts[1:] = nl[:-1] + 1
            length = nl - starts
            blank = (length == 0) | ((length == 1) & (arr[starts] == 13))
            numbers = line_base + 1 + np.arange(nl.size, dtype=np.int64)
            is_row = ~blank & (numbers > header_lines)
            if skip.size:
                is_row &= ~np.isin(numbers, skip)
            n_rows = int(is_row.sum())
            hi = wi + int(np.searchsorted(want[wi:], row_base + n_rows))
            if hi > wi:
                where = np.flatnonzero(is_row)[want[wi:hi] - row_base]
                for k, i in zip(want[wi:hi].tolist(), where.tolist(), strict=True):
                    text = buf[int(starts[i]):int(nl[i])].rstrip(b"\r").decode("utf-8", errors="replace")
                    found[k] = Located(int(numbers[i]), text)
                wi = hi
            row_base += n_rows
            line_base += nl.size
            carry = buf[int(nl[-1]) + 1:]
            if eof:
                break
    if row_base != rows_expected:
        return {k: Located(None, "") for k in want.tolist()}
    return found
