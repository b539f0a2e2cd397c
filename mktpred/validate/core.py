"""``validate_store``: run every check over one store and return the report.

Order (cheapest first; each later step reads only files the earlier ones found usable):
footers (schema, rows) -> manifest -> quarantine -> decode every file (readability, duplicates) ->
one grouped aggregate per table (partitions, nulls, values, coverage spans) -> sequence (gaps
attributed to quarantined frames) and clock -> coverage -> the ``book`` audit (when the store has a
``book`` table) -> raw dir -> with ``deep``, the re-hash of every source.

Ctrl-C: DuckDB turns SIGINT during a query into ``RuntimeError("Query interrupted")`` (older
versions: ``duckdb.InterruptException``); :func:`validate_store` raises ``KeyboardInterrupt`` for
both, so callers see one kind of interruption.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from mktpred.errors import DataError, UsageError
from mktpred.progress import ProgressCallback, no_progress
from mktpred.store.manifest import Manifest
from mktpred.validate import (
    book_audit,
    content,
    coverage,
    deep,
    frames,
    inventory,
    manifest_checks,
    quarantine,
    raw,
    sequence,
)
from mktpred.validate.report import CheckResult, Finding, ValidationReport


def validate_store(
    parquet_dir: Path,
    *,
    raw_dir: Path | None = None,
    max_silence_s: float = 5.0,
    audit_window_ms: int = 500,
    audit_threshold: float = 0.99,
    threads: int | None = None,
    max_invalid_fraction: float = 0.001,
    deep_check: bool = False,
    progress: ProgressCallback = no_progress,
) -> ValidationReport:
    """Check the store at ``parquet_dir`` (and, with ``raw_dir``, that every sealed segment was
    converted).  Problems in the data are reported, never raised; ``UsageError`` when there is no
    store (or no raw dir) to check, or the audit settings are out of range.

    With a ``book`` table, ``book_audit`` compares the top of book rebuilt from ``l2`` with the
    ticker: it fails when a product's match rate within ±``audit_window_ms`` is below
    ``audit_threshold``.

    The quarantine is judged against ``max_invalid_fraction`` (``convert.max_invalid_fraction``:
    quarantined lines allowed as a share of the lines read).  ``deep_check`` re-hashes every source
    the manifest lists (found where it was recorded, else in ``raw_dir``)."""
    with duckdb_interrupts():
        return _validate(parquet_dir, raw_dir=raw_dir, max_silence_s=max_silence_s,
                         audit_window_ms=audit_window_ms, audit_threshold=audit_threshold, threads=threads,
                         max_invalid_fraction=max_invalid_fraction, deep_check=deep_check, progress=progress)


@contextmanager
def duckdb_interrupts() -> Iterator[None]:
    """Raise ``KeyboardInterrupt`` where DuckDB reports a Ctrl-C during a query as an error."""
    try:
        yield
    except (RuntimeError, duckdb.Error) as exc:
        if is_interrupt(exc):
            raise KeyboardInterrupt from None
        raise


def is_interrupt(exc: BaseException) -> bool:
    """DuckDB's way of saying a query was cancelled by Ctrl-C."""
    return isinstance(exc, duckdb.InterruptException) or (
        type(exc) is RuntimeError and str(exc).startswith("Query interrupted"))


def _validate(parquet_dir: Path, *, raw_dir: Path | None, max_silence_s: float, audit_window_ms: int,
              audit_threshold: float, threads: int | None, max_invalid_fraction: float, deep_check: bool,
              progress: ProgressCallback) -> ValidationReport:
    start = time.monotonic()
    if not parquet_dir.is_dir():
        raise UsageError(f"no Parquet store at {parquet_dir}", where="--parquet-dir")
    if audit_window_ms < 0:
        raise UsageError(f"the audit window must be >= 0 ms, got {audit_window_ms}", where="book.audit_window_ms")
    if not 0 <= audit_threshold <= 1:
        raise UsageError(f"the audit threshold must be between 0 and 1, got {audit_threshold}",
                         where="book.audit_threshold")
    if raw_dir is not None and not raw_dir.is_dir():
        raise UsageError(f"raw directory not found: {raw_dir}", where="--raw-dir")
    manifest_problem: Finding | None = None
    try:
        manifest = Manifest.load(parquet_dir)
    except DataError as exc:
        manifest, manifest_problem = Manifest(), Finding("_manifest.json", exc.message)
    inv = inventory.scan_store(parquet_dir, manifest_checks.owned_tables(manifest))
    if not inv.files and not inv.has_manifest:
        raise UsageError(f"no Parquet store at {parquet_dir} (no _manifest.json and no data files)",
                         where="--parquet-dir")
    if not 0 <= max_invalid_fraction <= 1:
        raise UsageError(f"the invalid-line fraction must be between 0 and 1, got {max_invalid_fraction}",
                         where="convert.max_invalid_fraction")
    workers = threads or os.cpu_count() or 1
    inventory.read_footers(inv)
    manifest_checks.assign_segments(inv, manifest)
    timings: dict[str, float] = {}
    lap = time.monotonic()

    def mark(stage: str) -> None:
        nonlocal lap
        now = time.monotonic()
        timings[stage] = round(now - lap, 3)
        lap = now

    mark("footers")
    quarantined = quarantine.check_quarantine(parquet_dir, manifest, max_invalid_fraction=max_invalid_fraction)
    mark("quarantine")
    con = content.connect(workers)
    try:
        groups = content.decode_and_find_duplicates(con, inv, workers=workers, progress=progress)
        mark("decode")
        stats = content.aggregate(con, inv)
        mark("aggregate")
        readable = inventory.check_readable(inv)
        if errors := content.aggregate_errors(stats):
            readable = CheckResult.from_findings("readable", errors, checked=len(inv.files), passed="")
        outputs = manifest_checks.check_outputs(inv, manifest)
        if manifest_problem is not None:
            outputs = CheckResult.from_findings("manifest_outputs", [manifest_problem], checked=0, passed="")
        checks = [
            readable,
            inventory.check_schema(inv),
            outputs,
            manifest_checks.check_rows(inv, manifest, stats),
            quarantined.check,
            inventory.check_stray(inv),
            content.check_partitions(inv, stats),
            content.check_nulls(con, stats, inv),
            content.check_prices(con, stats, inv),
            content.check_sizes(con, stats, inv),
            content.check_sides(con, stats, inv),
            content.check_duplicates(groups),
        ]
        mark("checks")
        frame_scan = frames.scan_frames(con, inv, int(max_silence_s * 1e9))
        mark("messages")
        seq = sequence.check_sequence(con, inv, frame_scan, quarantined.lost)
        clock = sequence.check_clock(inv, frame_scan)
        cov = coverage.check_coverage(con, inv, stats, frame_scan, max_silence_s)
        mark("sequence+coverage")
    finally:
        con.close()
    checks += [seq.check, clock, cov.coverage, cov.heartbeats]
    audit = book_audit.check_book_audit(inv, stats, window_ms=audit_window_ms, threshold=audit_threshold)
    if audit is not None:
        checks.append(audit)
        mark("book_audit")

    report = ValidationReport(store=str(parquet_dir), raw_dir=None if raw_dir is None else str(raw_dir),
                              max_silence_s=max_silence_s)
    if raw_dir is not None:
        rr = raw.check_raw(raw_dir, manifest)
        checks += [rr.converted, rr.in_progress]
        report.in_progress = rr.parts
        mark("raw")
    if deep_check:
        checks.append(deep.check_source_hashes(manifest, raw_dir, progress=progress))
        mark("rehash")
    report.checks = checks
    report.files = len(inv.files)
    report.bytes = inv.total_bytes
    for f in inv.files:
        if f.rows is not None and f.error is None:
            report.rows[f.table] = report.rows.get(f.table, 0) + f.rows
    report.coverage = cov.rows
    report.silences, report.silences_total = cov.silences, cov.silences_total
    report.gaps, report.gaps_total = seq.gaps, seq.gaps_total
    report.quarantine = [s.to_dict() for s in quarantined.sources]
    report.timings = timings
    report.elapsed_s = time.monotonic() - start
    return report
