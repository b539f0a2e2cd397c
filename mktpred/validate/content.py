"""Row-level checks, run by DuckDB over the Parquet files (no Python loop over rows).

Two passes:

* the *decode* pass reads every column of every file with PyArrow (verifying page checksums
  where the writer stored them) and hashes each row with DuckDB, which proves each file decodes
  and finds exact duplicate rows within a segment (equal 64-bit hashes, sorted with numpy); a file
  that fails to decode is marked unreadable and left out of everything after;
* the *aggregate* pass, one query per table grouped by file, product, connection and UTC day,
  counts nulls and bad values, and yields the time ranges the partition and coverage checks use.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mktpred.book.table import BOOK_TABLE
from mktpred.coinbase.timestamps import format_iso_ns
from mktpred.progress import Progress, ProgressCallback
from mktpred.store.schemas import AGGRESSOR_VALUES, REQUIRED_COLUMNS
from mktpred.validate.inventory import KNOWN_TABLES, DataFile, Inventory, _first_line
from mktpred.validate.report import CheckResult, Finding

NS_PER_DAY = 86_400 * 1_000_000_000
#: columns that must be > 0 and finite where not null
PRICE_COLUMNS: dict[str, tuple[str, ...]] = {
    "l2": ("price",), "trades": ("price",), "ticker": ("price", "best_bid", "best_ask"),
}
#: columns that must be >= 0 and finite where not null
SIZE_COLUMNS: dict[str, tuple[str, ...]] = {
    "l2": ("size",), "trades": ("size",), "ticker": ("volume_24h", "best_bid_size", "best_ask_size"),
}
SIDE_COLUMNS: dict[str, tuple[str, ...]] = {"l2": ("side",), "trades": ("side", "aggressor")}
#: ``book``: required columns; its level prices / sizes are checked like the above where not null
#: (null = the book had fewer levels)
BOOK_REQUIRED = ("time", "product_id", "valid", "crossed")
#: allowed ``side`` values per table.  The contract's bid/ask applies to l2; trades keep Coinbase's
#: own BUY/SELL (the lead's decision), and bid/ask there is accepted too, as is ``UNKNOWN`` (Tardis
#: trades whose aggressor the exchange did not say).
SIDES: dict[str, tuple[str, ...]] = {"l2": ("bid", "ask"), "trades": ("bid", "ask", "BUY", "SELL", "UNKNOWN"),
                                     # the taker's direction (null where unknown); old stores lack it
                                     "trades.aggressor": AGGRESSOR_VALUES}
DATA_TABLES = ("l2", "ticker", "trades")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _bad_price(col: str, table: str = "") -> str:
    # NaN compares greater than everything in DuckDB, hence isfinite
    return f"({_q(col)} IS NOT NULL AND NOT ({_q(col)} > 0 AND isfinite({_q(col)})))"


def _bad_size(col: str, table: str = "") -> str:
    return f"({_q(col)} IS NOT NULL AND NOT ({_q(col)} >= 0 AND isfinite({_q(col)})))"


def _bad_side(col: str, table: str) -> str:
    allowed = ", ".join(f"'{v}'" for v in SIDES.get(f"{table}.{col}", SIDES[table]))
    return f"({_q(col)} IS NOT NULL AND {_q(col)} NOT IN ({allowed}))"


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection set up for the checks."""
    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {max(1, threads or os.cpu_count() or 1)}")
    con.execute("SET TimeZone = 'UTC'")
    return con


def scan(*extra: str) -> str:
    """A ``read_parquet`` over an explicit file list (``?`` parameter), with no Hive columns."""
    opts = "".join(f", {e}=true" for e in extra)
    return f"read_parquet(?, hive_partitioning=false{opts})"


# -- decode pass + duplicates ---------------------------------------------------------------------

@dataclass
class DuplicateGroup:
    table: str
    date: str
    segment: str
    files: list[DataFile]
    duplicates: int = 0
    example: str = ""


#: tables left out of the exact-duplicate search.  An ``l2_data`` event may update the same level
#: more than once (the order decides), and so may a Tardis ``incremental_book_L2`` message (one
#: local timestamp, no conn/seq to tell messages apart), so identical l2 rows are legitimate; an
#: l2 frame written twice is caught by the ``rows`` check (messages.n_rows) instead.
DUPLICATE_EXEMPT: frozenset[str] = frozenset({"l2"})


def _hash_expr(names: list[str]) -> str:
    return "hash(" + ", ".join(_q(c) for c in names) + ")"


def _required(table: str) -> tuple[str, ...]:
    return BOOK_REQUIRED if table == BOOK_TABLE else REQUIRED_COLUMNS.get(table, ())


def _level_columns(table: str, names: list[str], kind: str) -> tuple[str, ...]:
    """The columns that must be valid prices (``kind="price"``) or sizes in a file with ``names``."""
    if table == BOOK_TABLE:
        return tuple(n for n in names if n.startswith((f"bid_{kind}_", f"ask_{kind}_")))
    return (PRICE_COLUMNS if kind == "price" else SIZE_COLUMNS).get(table, ())


def _decode_file(con: duckdb.DuckDBPyConnection, f: DataFile) -> np.ndarray | None:
    """Row hashes of one file, or None after marking it unreadable.

    PyArrow decodes every page of every column, one row group at a time (bounded memory), and
    verifies page checksums where the writer stored them; DuckDB hashes the decoded rows.
    """
    hashes: list[np.ndarray] = []
    try:
        schema = f.schema if f.schema is not None else pq.read_schema(f.path)
        strings = [n for n in schema.names if pa.types.is_string(schema.field(n).type)]
        pf = pq.ParquetFile(f.path, page_checksum_verification=True, read_dictionary=strings)
        hash_sql = f"SELECT {_hash_expr(schema.names)} AS h FROM batch" \
            if f.schema_ok and f.table not in DUPLICATE_EXEMPT else ""
        for i in range(pf.num_row_groups):
            batch = pf.read_row_group(i, use_threads=False)
            if hash_sql and batch.num_rows:
                con.register("batch", batch)
                hashes.append(np.asarray(con.execute(hash_sql).fetchnumpy()["h"], dtype=np.uint64))
                con.unregister("batch")
            del batch
    except (OSError, pa.ArrowException, ValueError, duckdb.Error) as exc:
        f.error = _first_line(exc)
        return None
    if not f.schema_ok:  # decodes, but the content checks do not read it
        return None
    if not hashes:
        return np.empty(0, dtype=np.uint64)
    return np.concatenate(hashes) if len(hashes) > 1 else hashes[0]


def _decode_group(con: duckdb.DuckDBPyConnection, group: DuplicateGroup) -> DuplicateGroup:
    hashes = [h for f in group.files if (h := _decode_file(con, f)) is not None]
    if not hashes:
        return group
    allh = np.concatenate(hashes) if len(hashes) > 1 else hashes[0]
    allh.sort()
    same = allh[1:] == allh[:-1]
    group.duplicates = int(same.sum())
    if group.duplicates:
        group.example = _duplicate_example(con, group, allh[1:][same][:3])
    return group


def _duplicate_example(con: duckdb.DuckDBPyConnection, group: DuplicateGroup, hashes: np.ndarray) -> str:
    """Where the first duplicated rows are (file and row numbers), read back for the report."""
    files = [str(f.path) for f in group.files if f.usable]
    cols = next(f.schema.names for f in group.files if f.usable and f.schema is not None)
    key = ", ".join(c for c in ("conn", "seq") if c in cols)
    rows = con.execute(
        f"SELECT filename, file_row_number, epoch_ns(time) {', ' + key if key else ''} "
        f"FROM {scan('filename', 'file_row_number')} WHERE {_hash_expr(cols)} "
        f"IN (SELECT unnest(?::UBIGINT[])) ORDER BY 1, 2 LIMIT 6",
        [files, [int(h) for h in hashes]]).fetchall()
    by_name = {str(f.path): f.rel for f in group.files}
    parts = [f"{by_name.get(r[0], r[0])} row {r[1]}" for r in rows[:2]]
    what = ""
    if rows and key:
        what = " (" + ", ".join(f"{k} {v}" for k, v in zip(key.split(", "), rows[0][3:], strict=True)) + ")"
    if rows and rows[0][2] is not None:
        what += f" at {format_iso_ns(rows[0][2])}"
    return " = ".join(parts) + what


def decode_and_find_duplicates(con: duckdb.DuckDBPyConnection, inv: Inventory, *, workers: int,
                               progress: ProgressCallback) -> list[DuplicateGroup]:
    """Decode every readable file (marking failures) and count exact duplicate rows per segment."""
    groups: dict[tuple[str, str, str], DuplicateGroup] = {}
    for f in inv.files:
        if f.error is None:
            key = (f.table, f.date, f.segment)
            groups.setdefault(key, DuplicateGroup(f.table, f.date, f.segment, [])).files.append(f)
    todo = sorted(groups.values(), key=lambda g: -sum(f.size for f in g.files))
    total_files = sum(len(g.files) for g in todo)
    total_bytes = sum(f.size for g in todo for f in g.files)
    done_files = done_bytes = rows = 0
    progress(Progress("decode", 0, total_files, 0, total_bytes))
    cursors = [con.cursor() for _ in todo]
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        futures = [pool.submit(_decode_group, cur, g) for cur, g in zip(cursors, todo, strict=True)]
        for fut in as_completed(futures):
            g = fut.result()
            done_files += len(g.files)
            done_bytes += sum(f.size for f in g.files)
            rows += sum(f.rows or 0 for f in g.files)
            progress(Progress("decode", done_files, total_files, done_bytes, total_bytes, rows,
                              current=g.files[0].rel))
    except BaseException:
        # Ctrl-C (or a bug): do not decode the rest of the store before giving up
        pool.shutdown(wait=False, cancel_futures=True)
        for cur in cursors:
            cur.interrupt()
        raise
    finally:
        pool.shutdown(wait=True)
    return todo


def check_duplicates(groups: list[DuplicateGroup]) -> CheckResult:
    """No exact duplicate rows within a segment (per table and date partition; not l2, see
    :data:`DUPLICATE_EXEMPT`)."""
    findings = [
        Finding(", ".join(f.rel for f in g.files[:3]) + (" ..." if len(g.files) > 3 else ""),
                f"{g.duplicates:,} exact duplicate {g.table} rows in segment {os.path.basename(g.segment)}"
                + (f": {g.example}" if g.example else ""), count=g.duplicates)
        for g in groups if g.duplicates
    ]
    checked = sum(len(g.files) for g in groups)
    return CheckResult.from_findings("duplicates", findings, checked=checked,
                                     passed=f"no duplicate rows in {len(groups)} segment partitions")


# -- aggregate pass -------------------------------------------------------------------------------

@dataclass
class TableStats:
    """Per (file, product, conn, day) aggregates of one table, as column lists."""

    table: str
    groups: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def _aggregate_sql(table: str, cols: list[str]) -> str:
    keys = ["filename"] + (["product_id"] if "product_id" in cols else []) + ["conn"]
    aggs = ["count(*) AS n", "min(epoch_ns(time)) AS t_min", "max(epoch_ns(time)) AS t_max"]
    if table == "messages":  # rows the frames say they carried, per channel (the rows check)
        keys.append("channel")
        aggs.append("sum(n_rows) AS frame_rows")
    for c in _required(table):
        aggs.append(f"count(*) FILTER (WHERE {_q(c)} IS NULL) AS {_q('null:' + c)}")
    for c in _level_columns(table, cols, "price"):
        aggs.append(f"count(*) FILTER (WHERE {_bad_price(c)}) AS {_q('price:' + c)}")
    for c in _level_columns(table, cols, "size"):
        aggs.append(f"count(*) FILTER (WHERE {_bad_size(c)}) AS {_q('size:' + c)}")
    for c in (c for c in SIDE_COLUMNS.get(table, ()) if c in cols):
        aggs.append(f"count(*) FILTER (WHERE {_bad_side(c, table)}) AS {_q('side:' + c)}")
    key_sql = ", ".join(keys)
    return (f"SELECT {key_sql}, epoch_ns(time) // {NS_PER_DAY} AS day, {', '.join(aggs)} "
            f"FROM {scan('filename')} GROUP BY ALL")


def aggregate(con: duckdb.DuckDBPyConnection, inv: Inventory) -> dict[str, TableStats]:
    """One grouped query per table over its usable files (per depth for ``book``, whose files may
    differ in their level columns)."""
    out: dict[str, TableStats] = {}
    tables = [t for t in KNOWN_TABLES if inv.usable(t)]
    for table in tables:
        files = inv.usable(table)
        stats = TableStats(table)
        by_columns: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for f in files:
            by_columns[tuple(f.schema.names if f.schema is not None else ())].append(str(f.path))
        for cols, paths in by_columns.items():
            try:
                cur = con.execute(_aggregate_sql(table, list(cols)), [paths])
                names = [d[0] for d in cur.description]
                stats.groups += [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            except duckdb.InterruptException:  # Ctrl-C, not a problem of the data
                raise
            except duckdb.Error as exc:  # decoded a moment ago, so this is not expected
                stats.error = _first_line(exc)
        by_path = {str(f.path): f.rel for f in files}
        for g in stats.groups:
            g["rel"] = by_path.get(g["filename"], g["filename"])
        out[table] = stats
    return out


def _date_of_day(day: int) -> str:
    return format_iso_ns(day * NS_PER_DAY)[:10]


def check_partitions(inv: Inventory, stats: dict[str, TableStats]) -> CheckResult:
    """Every row's ``time`` falls on its ``date=`` partition's UTC date."""
    date_of = {f.rel: f.date for f in inv.files}
    bad: dict[str, list[tuple[str, int, int, int]]] = defaultdict(list)
    checked = 0
    for ts in stats.values():
        for g in ts.groups:
            checked += g["n"]
            if g["day"] is None:
                continue
            day = _date_of_day(g["day"])
            if day != date_of[g["rel"]]:
                bad[g["rel"]].append((day, g["n"], g["t_min"], g["t_max"]))
    findings: list[Finding] = []
    for rel, items in sorted(bad.items()):
        n = sum(i[1] for i in items)
        t_min = min(i[2] for i in items)
        t_max = max(i[3] for i in items)
        days = ", ".join(sorted({i[0] for i in items}))
        when = format_iso_ns(t_min) + ("" if t_min == t_max else f" .. {format_iso_ns(t_max)}")
        findings.append(Finding(rel, f"{n:,} rows dated {days} in partition date={date_of[rel]} ({when})",
                                count=n))
    return CheckResult.from_findings("partitions", findings, checked=checked,
                                     passed=f"{checked:,} rows on their partition's date")


def _column_check(name: str, prefix: str, what: str, con: duckdb.DuckDBPyConnection,
                  stats: dict[str, TableStats], inv: Inventory, passed: str,
                  condition: Callable[[str, str], str]) -> CheckResult:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    checked = 0
    for ts in stats.values():
        for g in ts.groups:
            checked += g["n"]
            for key, value in g.items():
                if key.startswith(prefix) and value:
                    counts[(g["rel"], key[len(prefix):])] += value
    by_rel = {f.rel: f for f in inv.files}
    findings: list[Finding] = []
    for (rel, col), n in sorted(counts.items()):
        example = con.execute(
            f"SELECT file_row_number, {_q(col)} FROM {scan('file_row_number')} "
            f"WHERE {condition(col, by_rel[rel].table)} ORDER BY 1 LIMIT 3", [str(by_rel[rel].path)]).fetchall()
        rows = ", ".join(f"row {r}" + ("" if v is None else f" = {v!r}") for r, v in example)
        findings.append(Finding(rel, f"{n:,} rows with {col} {what} ({rows})", count=n))
    return CheckResult.from_findings(name, findings, checked=checked, passed=passed)


def check_nulls(con: duckdb.DuckDBPyConnection, stats: dict[str, TableStats], inv: Inventory) -> CheckResult:
    """Required columns have no nulls."""
    return _column_check("nulls", "null:", "null", con, stats, inv,
                         "no nulls in required columns", lambda c, _: f"{_q(c)} IS NULL")


def check_prices(con: duckdb.DuckDBPyConnection, stats: dict[str, TableStats], inv: Inventory) -> CheckResult:
    """Prices are > 0 and finite where present (a null price is absent, e.g. a Tardis quote's ``price``)."""
    return _column_check("prices", "price:", "not > 0 and finite", con, stats, inv,
                         "all prices > 0 and finite", _bad_price)


def check_sizes(con: duckdb.DuckDBPyConnection, stats: dict[str, TableStats], inv: Inventory) -> CheckResult:
    """Sizes are >= 0 and finite."""
    return _column_check("sizes", "size:", "not >= 0 and finite", con, stats, inv,
                         "all sizes >= 0 and finite", _bad_size)


def check_sides(con: duckdb.DuckDBPyConnection, stats: dict[str, TableStats], inv: Inventory) -> CheckResult:
    """``side`` is ``bid`` or ``ask`` (see :data:`SIDES` for trades)."""
    return _column_check("sides", "side:", "not an allowed side", con, stats, inv,
                         "every side is bid or ask (trades: also BUY/SELL/UNKNOWN)", _bad_side)


def aggregate_errors(stats: dict[str, TableStats]) -> list[Finding]:
    """Tables whose aggregate query failed (reported under ``readable``)."""
    return [Finding(f"{t}/", f"query failed: {s.error}") for t, s in stats.items() if s.error]
