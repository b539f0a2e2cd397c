"""``mktpred csv2parquet`` as a library call: CSV files (mktpred, Tardis or any other) into the store.

1. *Find* the inputs: files, directories (recursively: ``*.csv``, ``*.csv.gz``, ``*.csv.zst``) or
   glob patterns.
2. *Plan*: read every header first, so an unrecognised one stops the run (exit 2) before anything
   is written; generic files are sniffed by DuckDB and share one type per column.
3. *Convert* each file that changed (the manifest entry keyed by the file's absolute path records
   size, mtime, hash and how it was read; ``force`` redoes all): DuckDB streams typed Arrow batches
   (bounded memory), :mod:`mktpred.ingest.csv_formats` maps them to the table, the store writer
   writes date partitions atomically, malformed rows go to the quarantine with their line.

Output files are named ``<file name>_<8 hex of its path>.parquet``, so files of the same name in
different folders (``l2/date=D/x.csv``, ``ticker/date=D/x.csv``) never replace each other.
"""

from __future__ import annotations

import glob
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mktpred import __version__
from mktpred.config import Config
from mktpred.convert.summary import RunSummary
from mktpred.errors import (
    DataError,
    UsageError,
)
from mktpred.ingest.csv_formats import (
    FORMATS,
    GENERIC_TYPES,
    CsvLayout,
    Sniffed,
    check_table_name,
    generic_layout,
    generic_types,
    known_formats,
    parse_schema_option,
    recognise,
    sniff,
)
from mktpred.ingest.csv_read import (
    CSV_SUFFIXES,
    MAX_BAD_ROWS,
    DuckScan,
    LineCount,
    Located,
    Reject,
    bytes_per_line,
    count_lines,
    locate_rows,
    read_header,
    strip_csv_suffix,
)
from mktpred.progress import Progress, ProgressCallback, no_progress
from mktpred.store.manifest import SourceEntry, file_hash
from mktpred.store.quarantine import Quarantine
from mktpred.store.session import StoreSession
from mktpred.store.writer import PartitionedWriter, SingleFileWriter, TableWriter

STAGE = "csv2parquet"
ENGINE = "duckdb-csv"


@dataclass(frozen=True)
class FilePlan:
    """How one input file will be read."""

    path: Path
    size: int
    mtime_ns: int
    layout: CsvLayout
    header: tuple[str, ...]  #: column names in the file's order
    delimiter: str = ","

    @property
    def stem(self) -> str:
        return stem_for(self.path)


@dataclass
class CsvFileResult:
    """What one CSV file produced."""

    source: str
    size: int
    mtime_ns: int
    hash: str
    csv_format: str  #: the layout key, e.g. ``tardis:trades``
    table: str
    rows: dict[str, int] = field(default_factory=dict)
    lines: int = 0  #: header + rows read + rows rejected (blank lines are not counted)
    invalid: int = 0
    outputs: list[str] = field(default_factory=list)
    quarantine: str | None = None
    seconds: float = 0.0
    invalid_reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class CsvFileFailure:
    source: str
    error: str
    exit_code: int


@dataclass
class Csv2ParquetSummary(RunSummary):
    """The outcome of one ``csv2parquet`` run (``--json`` prints :meth:`to_json`)."""

    failed_what: ClassVar[str] = "file(s) could not be imported"
    invalid_what: ClassVar[str] = "malformed row(s)"

    inputs: list[str]
    parquet_dir: str
    format: str
    files_found: int = 0
    converted: int = 0
    skipped: int = 0
    failed: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    lines: int = 0
    invalid: int = 0
    max_invalid: int = 0
    input_bytes: int = 0
    seconds: float = 0.0
    files: list[CsvFileResult] = field(default_factory=list)
    failures: list[CsvFileFailure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": list(self.inputs), "parquet_dir": self.parquet_dir, "format": self.format,
            "files_found": self.files_found, "converted": self.converted, "skipped": self.skipped,
            "failed": self.failed, "rows": dict(self.rows), "lines": self.lines, "invalid": self.invalid,
            "max_invalid": self.max_invalid, "too_many_invalid": self.too_many_invalid,
            "input_bytes": self.input_bytes, "seconds": round(self.seconds, 3),
            "rows_per_s": self.per_second(self.total_rows), "mb_per_s": self.mb_per_s,
            "files": [
                {"source": r.source, "format": r.csv_format, "table": r.table, "rows": r.rows, "lines": r.lines,
                 "invalid": r.invalid, "outputs": r.outputs, "quarantine": r.quarantine,
                 "seconds": r.seconds, "invalid_reasons": r.invalid_reasons}
                for r in self.files
            ],
            "failures": self.failures_json(),
            "notes": list(self.notes),
        }


# -- finding and planning --------------------------------------------------------------------------

def stem_for(path: Path) -> str:
    """The output file stem of a CSV file: its name and 8 hex digits of its absolute path."""
    digest = hashlib.blake2b(str(path.resolve()).encode(), digest_size=4).hexdigest()
    return f"{strip_csv_suffix(path.name)}_{digest}"


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith(CSV_SUFFIXES)


def find_inputs(inputs: Sequence[str], exclude: Path | None = None) -> list[Path]:
    """Files named, CSV files under directories (recursively) and files matching glob patterns,
    in the order given, each once.  Raises :class:`UsageError` for an input that names nothing."""
    if not inputs:
        raise UsageError("no input: name CSV files, directories or glob patterns", where="INPUT")
    skip = exclude.resolve() if exclude is not None else None
    seen: set[Path] = set()
    out: list[Path] = []

    def add(p: Path) -> None:
        r = p.resolve()
        if r in seen or (skip is not None and r.is_relative_to(skip)):
            return
        seen.add(r)
        out.append(r)

    for item in inputs:
        path = Path(item).expanduser()
        if path.is_file():
            add(path)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _is_csv(p))
            if not found:
                raise UsageError(f"no CSV files ({', '.join('*' + s for s in CSV_SUFFIXES)}) in the directory",
                                 where=str(path))
            for p in found:
                add(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            files = [m for m in matches if m.is_file()]
            for d in (m for m in matches if m.is_dir()):
                files.extend(sorted(p for p in d.rglob("*") if p.is_file() and _is_csv(p)))
            if not files:
                raise UsageError("no such file or directory, and no file matches it as a pattern", where=item)
            for p in files:
                add(p)
    return out


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror or exc}", where=str(path)) from None
    return st.st_size, st.st_mtime_ns


def plan_files(paths: Sequence[Path], fmt: str = "auto", *, table: str | None = None, schema: str | None = None,
               time_column: str | None = None) -> tuple[list[FilePlan], list[CsvFileFailure]]:
    """Decide how each file is read (see the module docstring).  Raises :class:`UsageError` for bad
    options and for a header no format recognises; unreadable files come back as failures."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})", where="--format")
    overrides = parse_schema_option(schema)
    if fmt in ("mktpred", "tardis") and (overrides or time_column):
        raise UsageError("--schema and --time-column apply to --format generic only", where="--format")
    if fmt == "generic":
        if not table:
            raise UsageError("--format generic needs --table NAME (the table the rows go to)", where="--table")
        check_table_name(table)
    failures: list[CsvFileFailure] = []
    plans: dict[Path, FilePlan] = {}
    generic: list[Path] = []
    for path in paths:
        try:
            size, mtime = _stat(path)
            header = read_header(path)
        except DataError as exc:
            failures.append(CsvFileFailure(str(path), exc.message, exc.exit_code))
            continue
        if fmt == "generic":
            generic.append(path)
            continue
        layout = recognise(header)
        seen = ", ".join(header)
        if fmt != "auto" and (layout is None or layout.format != fmt):
            raise UsageError(f"not {fmt} CSV: the header has columns {seen}; known formats: {known_formats()}",
                             where=str(path))
        if layout is None:
            if table:
                check_table_name(table)
                generic.append(path)
                continue
            raise UsageError(f"unrecognised CSV header with columns {seen}; known formats: {known_formats()}",
                             where=str(path))
        if table and table != layout.table:
            raise UsageError(f"this is {layout.format} {layout.kind} CSV, which goes to table {layout.table!r}, not "
                             f"{table!r} (--format generic --table {table} imports it as it is)", where=str(path))
        plans[path] = FilePlan(path, size, mtime, layout, tuple(header))
    if generic:
        assert table is not None
        sniffed: list[tuple[Path, Sniffed]] = []
        for path in generic:
            try:
                sniffed.append((path, sniff(path)))
            except DataError as exc:
                failures.append(CsvFileFailure(str(path), exc.message, exc.exit_code))
        if sniffed:
            types = generic_types([s for _, s in sniffed], overrides)
            _check_time_column(time_column, dict(types))
            layout = generic_layout(table, types, time_column)
            for path, s in sniffed:
                size, mtime = _stat(path)
                plans[path] = FilePlan(path, size, mtime, layout, tuple(n for n, _ in s.columns), s.delimiter)
    elif overrides or time_column:
        raise UsageError("--schema and --time-column apply to generic CSV, and no input was read as generic",
                         where="--format")
    return [plans[p] for p in paths if p in plans], failures


def _check_time_column(column: str | None, types: dict[str, str]) -> None:
    if column is None:
        return
    if column not in types:
        raise UsageError(f"--time-column {column!r} is not a column of the CSV (columns: {', '.join(types)})",
                         where="--time-column")
    typ = types[column]
    if typ not in ("timestamp", "date") and not typ.startswith("epoch_"):
        raise UsageError(f"--time-column {column!r} is read as {typ}: say what it holds with --schema "
                         f"{column}=epoch_s|epoch_ms|epoch_us|epoch_ns, or {column}=timestamp for ISO 8601 text",
                         where="--time-column")


# -- writing one file ------------------------------------------------------------------------------

@dataclass(frozen=True)
class WriteSettings:
    compression: str = "zstd"
    compression_level: int | None = 3
    row_group_rows: int = 1_000_000
    threads: int = 0  #: DuckDB threads (0 = all cores)

    @classmethod
    def from_config(cls, cfg: Config) -> WriteSettings:
        return cls(cfg.convert.compression, cfg.convert.compression_level, cfg.convert.chunk_rows,
                   cfg.convert.threads)


def _writer_for(plan: FilePlan, root: Path, settings: WriteSettings) -> TableWriter:
    lay = plan.layout
    if lay.date_column is None:
        return SingleFileWriter(root, lay.table, plan.stem, lay.schema, compression=settings.compression,
                                compression_level=settings.compression_level, row_group_rows=settings.row_group_rows)
    return PartitionedWriter(root, plan.stem, compression=settings.compression,
                             compression_level=settings.compression_level, row_group_rows=settings.row_group_rows,
                             schemas={lay.table: lay.schema}, date_columns=(lay.date_column,))


def _hash_and_count(path: Path) -> tuple[str, LineCount]:
    """The content hash and the independent line count, in the background while DuckDB reads."""
    return file_hash(path), count_lines(path)


def _unseen_lines(counted: LineCount, path: Path, rows_read: int, rejects: list[Reject], *,
                  single_line_rows: bool) -> dict[int, tuple[str, str]]:
    """Lines DuckDB neither returned nor rejected (longer than its read buffer), by line number:
    ``(reason, first characters)``.  Raises :class:`DataError` when the count of lines cannot be
    explained that way, so no line is ever lost without a word.  A generic CSV may have values
    spanning lines, so there a row is not a line and only fewer lines than rows would be wrong."""
    accounted = 1 + rows_read + len(rejects)
    if counted.lines == accounted or (not single_line_rows and counted.lines > accounted):
        return {}
    rejected = {r.line for r in rejects}
    unseen = {line: (f"line too long: {size:,} bytes, more than the CSV reader reads", text)
              for line, (size, text) in counted.long_lines.items() if line not in rejected}
    if counted.lines != accounted + len(unseen):
        raise DataError(f"the CSV reader accounted for {accounted:,} of {counted.lines:,} non-blank lines "
                        f"and the difference cannot be told apart", where=str(path))
    return unseen


def convert_file(plan: FilePlan, root: Path, settings: WriteSettings = WriteSettings(), *,
                 on_progress: Callable[[int, int], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> CsvFileResult:
    """Import one CSV file into the store at ``root``; nothing is visible until it all succeeded.

    ``on_progress(bytes_done_estimate, rows)`` is called after each batch.  Raises
    :class:`DataError` for a file that cannot be read (the store is left as it was) and
    :class:`OutputNotWritable`."""
    t0 = clock()
    lay = plan.layout
    writer = _writer_for(plan, root, settings)
    quarantine = Quarantine(root, plan.stem, plan.path.name)
    scan = DuckScan(plan.path, lay.scan_spec(plan.header, plan.delimiter), threads=settings.threads)
    per_line = bytes_per_line(plan.path, plan.size)
    drops: list[tuple[int, str]] = []
    rows_read = 0
    with ThreadPoolExecutor(1, thread_name_prefix="mktpred-hash") as pool:
        hashed = pool.submit(_hash_and_count, plan.path)
        try:
            for batch in scan.batches():
                table, dropped = lay.convert(batch)
                drops.extend((rows_read + i, reason) for i, reason in dropped)
                if len(drops) > MAX_BAD_ROWS:
                    raise DataError(f"more than {MAX_BAD_ROWS:,} malformed rows: is this the right --format?",
                                    where=str(plan.path))
                rows_read += batch.num_rows
                writer.write(lay.table, table)
                if on_progress is not None:
                    on_progress(min(plan.size - 1, int(rows_read * per_line)), sum(writer.rows.values()))
            rejects = scan.rejects()
            digest, counted = hashed.result()
            unseen = _unseen_lines(counted, plan.path, rows_read, rejects,
                                   single_line_rows=scan.spec.single_line_rows)
            located: dict[int, Located] = {}
            if drops:
                located = locate_rows(plan.path, [k for k, _ in drops], [r.line for r in rejects] + list(unseen),
                                      rows_expected=rows_read)
            bad = [(r.line, r.reason, r.text) for r in rejects]
            bad += [(line, reason, text) for line, (reason, text) in unseen.items()]
            bad += [(located[k].line or 0, reason, located[k].text) for k, reason in drops]
            for line, reason, text in sorted(bad, key=lambda b: b[0]):
                quarantine.add(line, reason, text.encode("utf-8", errors="replace"))
            outputs = writer.commit()
            q_rel = quarantine.commit()
        except BaseException:
            writer.abort()
            quarantine.abort()
            raise
        finally:
            scan.close()
    if on_progress is not None:
        on_progress(plan.size, sum(writer.rows.values()))
    rows = dict(writer.rows) or {lay.table: 0}
    return CsvFileResult(
        source=str(plan.path), size=plan.size, mtime_ns=plan.mtime_ns, hash=digest, csv_format=lay.key,
        table=lay.table, rows=rows, lines=1 + rows_read + len(rejects) + len(unseen), invalid=quarantine.count,
        outputs=outputs, quarantine=q_rel, seconds=round(clock() - t0, 3), invalid_reasons=dict(quarantine.reasons))


# -- the run ---------------------------------------------------------------------------------------

def _entry(r: CsvFileResult) -> SourceEntry:
    return SourceEntry(
        source=r.source, kind="csv", size=r.size, mtime_ns=r.mtime_ns, hash=r.hash, rows=dict(r.rows),
        lines=r.lines, invalid=r.invalid, outputs=list(r.outputs), engine=ENGINE, mktpred_version=__version__,
        csv_format=r.csv_format, quarantine=r.quarantine or "")


def run_csv2parquet(
    cfg: Config,
    inputs: Sequence[str],
    *,
    fmt: str = "auto",
    table: str | None = None,
    schema: str | None = None,
    time_column: str | None = None,
    max_invalid: int | None = None,
    force: bool = False,
    progress: ProgressCallback = no_progress,
    clock: Callable[[], float] = time.perf_counter,
) -> Csv2ParquetSummary:
    """Import the CSV ``inputs`` into ``cfg.paths.parquet_dir`` (see the module docstring).

    Raises :class:`UsageError` (no input, bad option, unrecognised header: exit 2) and
    :class:`OutputNotWritable`; data problems are in the summary (see :meth:`Csv2ParquetSummary.check`).
    """
    t0 = clock()
    root = Path(cfg.paths.parquet_dir)
    paths = find_inputs(inputs, exclude=root)
    if not paths:
        raise UsageError("no CSV input left (inputs inside the Parquet store are not read)", where="INPUT")
    plans, failures = plan_files(paths, fmt, table=table, schema=schema, time_column=time_column)
    summary = Csv2ParquetSummary([str(i) for i in inputs], str(root), fmt, files_found=len(paths),
                                 failures=failures)
    session = StoreSession.open(root)
    try:
        todo = [p for p in plans if force or not session.unchanged(
            p.path, size=p.size, mtime_ns=p.mtime_ns, kind="csv", csv_format=p.layout.key)]
        summary.skipped = len(plans) - len(todo)
        total_bytes = sum(p.size for p in todo)
        done = {"files": 0, "bytes": 0, "rows": 0}
        progress(Progress(STAGE, 0, len(todo), 0, total_bytes, 0))
        for plan in todo:
            def on_progress(nbytes: int, nrows: int, _name: str = plan.path.name) -> None:
                progress(Progress(STAGE, done["files"], len(todo), done["bytes"] + nbytes, total_bytes,
                                  done["rows"] + nrows, _name))
            try:
                result = convert_file(plan, root, WriteSettings.from_config(cfg), on_progress=on_progress, clock=clock)
            except DataError as exc:
                summary.failures.append(CsvFileFailure(str(plan.path), exc.message, exc.exit_code))
            else:
                session.commit(_entry(result))
                summary.files.append(result)
                done["rows"] += sum(result.rows.values())
            done["files"] += 1
            done["bytes"] += plan.size
            progress(Progress(STAGE, done["files"], len(todo), done["bytes"], total_bytes, done["rows"], plan.path.name))
    finally:
        session.close()

    counts: Counter[str] = Counter()
    for r in summary.files:
        counts.update(r.rows)
        summary.lines += r.lines
        summary.invalid += r.invalid
        summary.input_bytes += r.size
    summary.rows = dict(counts)
    summary.converted = len(summary.files)
    summary.failed = len(summary.failures)
    summary.max_invalid = max_invalid if max_invalid is not None \
        else int(cfg.convert.max_invalid_fraction * summary.lines)
    summary.seconds = clock() - t0
    return summary


__all__ = [
    "GENERIC_TYPES",
    "Csv2ParquetSummary",
    "CsvFileFailure",
    "CsvFileResult",
    "FilePlan",
    "WriteSettings",
    "convert_file",
    "find_inputs",
    "plan_files",
    "run_csv2parquet",
    "stem_for",
]
