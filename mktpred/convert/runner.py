"""``mktpred convert`` as a library call: discover segments, convert what changed, keep the manifest.

The driver (this module) alone reads and writes the manifest; segments are converted by
:func:`mktpred.convert.engine.convert_segment` locally, one after the other (each engine uses
every core), or on Dask workers with ``--scheduler`` (each worker resolving ``auto`` to its own
engine; results are taken as they complete).  Either way the manifest is saved after each segment
and progress reported once per segment, so an interrupted run keeps what it finished and a re-run
converts the rest.  Each segment's result names the engine that actually converted it.
"""

from __future__ import annotations

import hashlib
import importlib
import time
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mktpred import __version__
from mktpred.config import Config
from mktpred.convert.engine import ConversionEngine
from mktpred.convert.factory import ENGINE_NAMES, select_engine
from mktpred.convert.jobs import SegmentFailure, SegmentJob, SegmentResult
from mktpred.convert.segment import run_job
from mktpred.convert.summary import RunSummary
from mktpred.errors import (
    DataError,
    EngineFailed,
    UsageError,
)
from mktpred.naming import PART_SUFFIX, SEALED_SUFFIXES, Segment, discover, split_name
from mktpred.progress import Progress, ProgressCallback, no_progress
from mktpred.store.layout import QUARANTINE_DIR, STAGING_DIR
from mktpred.store.manifest import Manifest, SourceEntry
from mktpred.store.schemas import TABLE_SCHEMAS
from mktpred.store.session import StoreSession, ensure_writable

DASK_HINT = "pip install -e '.[dask]'"


@dataclass
class ConvertSummary(RunSummary):
    """The outcome of one ``convert`` run (``--json`` prints :meth:`to_json`)."""

    failed_what: ClassVar[str] = "segment(s) could not be converted"
    invalid_what: ClassVar[str] = "invalid line(s)"

    raw_dir: str
    parquet_dir: str
    engine: str
    engine_reason: str
    segments_found: int = 0
    converted: int = 0
    skipped: int = 0
    failed: int = 0
    rows: dict[str, int] = field(default_factory=lambda: {t: 0 for t in TABLE_SCHEMAS})
    lines: int = 0
    invalid: int = 0
    truncated: int = 0
    max_invalid: int = 0
    input_bytes: int = 0
    seconds: float = 0.0
    csv_dir: str | None = None
    segments: list[SegmentResult] = field(default_factory=list)
    failures: list[SegmentFailure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: segments converted per engine that actually ran ("cpu", "gpu", "gpu+cpu")
    engines: dict[str, int] = field(default_factory=dict)
    #: from the manifest after the run, over every segment found (converted now or before): lines
    #: read and lines quarantined; ``--max-invalid`` applies to these, so a re-run that converts
    #: nothing still says what is quarantined and still fails while too much is
    lines_total: int = 0
    quarantined_total: int = 0
    #: frames converted this run although received more than a day after their own timestamp
    recv_ahead: int = 0
    #: per segment with quarantined lines: source, invalid count, quarantine file (relative to the store)
    quarantined: list[dict[str, Any]] = field(default_factory=list)

    @property
    def counted_invalid(self) -> int:
        return self.quarantined_total

    @property
    def quarantine_files(self) -> list[str]:
        return [q["quarantine"] for q in self.quarantined if q["quarantine"]]

    @property
    def up_to_date(self) -> bool:
        """Nothing to do: every segment found was converted before and is unchanged."""
        return self.segments_found > 0 and self.skipped == self.segments_found

    def to_json(self) -> dict[str, Any]:
        return {
            "raw_dir": self.raw_dir, "parquet_dir": self.parquet_dir, "csv_dir": self.csv_dir,
            "engine": self.engine, "engine_reason": self.engine_reason, "engines": dict(self.engines),
            "segments_found": self.segments_found, "converted": self.converted, "skipped": self.skipped,
            "failed": self.failed, "rows": dict(self.rows), "lines": self.lines, "invalid": self.invalid,
            "truncated": self.truncated, "max_invalid": self.max_invalid,
            "too_many_invalid": self.too_many_invalid, "lines_total": self.lines_total,
            "quarantined_total": self.quarantined_total, "quarantine_files": self.quarantine_files,
            "quarantined": [dict(q) for q in self.quarantined], "up_to_date": self.up_to_date,
            "recv_ahead": self.recv_ahead,
            "input_bytes": self.input_bytes,
            "seconds": round(self.seconds, 3), "rows_per_s": self.per_second(self.total_rows),
            "l2_rows_per_s": self.per_second(self.rows.get("l2", 0)),
            "mb_per_s": self.mb_per_s,
            "segments": [
                {"source": r.source, "rows": r.rows, "lines": r.lines, "invalid": r.invalid,
                 "truncated": r.truncated, "outputs": r.outputs, "csv_outputs": r.csv_outputs,
                 "seconds": r.seconds, "mode": r.mode, "invalid_reasons": r.invalid_reasons,
                 "engine": r.engine, "engine_notes": r.engine_notes, "recv_ahead": r.recv_ahead}
                for r in self.segments
            ],
            "failures": self.failures_json(),
            "notes": list(self.notes),
        }


def _check_dirs(raw_dir: Path, parquet_dir: Path, include_latest: bool) -> tuple[list[Segment], list[str]]:
    if not raw_dir.is_dir():
        raise UsageError("raw directory not found", where=str(raw_dir))
    segments, notes = discover(raw_dir, include_latest=include_latest)
    if not segments:
        hint = ""
        if not include_latest and any(p.name.endswith(PART_SUFFIX) for p in raw_dir.iterdir()):
            hint = " (only .part segments: use --include-latest)"
        raise UsageError(f"no raw segments ({', '.join('*' + s for s in SEALED_SUFFIXES)}){hint}",
                         where=str(raw_dir))
    ensure_writable(parquet_dir)
    return segments, notes


def _up_to_date(session: StoreSession, seg: Segment, csv_dir: Path | None) -> bool:
    """Unchanged source, every output present, and (with ``--write-csv``) every CSV copy too."""
    def csv_copy(o: str) -> bool:
        return csv_dir is None or (csv_dir / Path(o).with_suffix(".csv")).is_file()
    return session.unchanged(seg.path, size=seg.size, mtime_ns=seg.mtime_ns, also=csv_copy)


def _entry(r: SegmentResult) -> SourceEntry:
    return SourceEntry(
        source=r.source, kind="raw", size=r.size, mtime_ns=r.mtime_ns, hash=r.hash, rows=dict(r.rows),
        lines=r.lines, invalid=r.invalid, truncated=r.truncated, outputs=list(r.outputs), engine=r.engine,
        mktpred_version=__version__, partial=r.partial, quarantine=r.quarantine or "", stem=r.stem,
    )


def entry_stem(entry: SourceEntry) -> str:
    """The stem of an entry's output files."""
    if entry.stem:
        return entry.stem
    parts = split_name(Path(entry.source).name)
    return parts[0] if parts is not None else Path(entry.source).name


def own_keys(manifest: Manifest, path: Path) -> list[str]:
    """Manifest keys of the source at ``path``: its own key, the files of its stem in its folder
    (a ``.part`` now sealed, an archived copy) and the entry of its moved folder (:meth:`Manifest.get`)."""
    parts = split_name(path.name)
    stem = parts[0] if parts is not None else path.name
    keys = [key for key, e in manifest.entries.items()
            if e.kind == "raw" and Path(key).parent == path.parent
            and (p := split_name(Path(key).name)) is not None and p[0] == stem]
    moved = manifest.get(path)
    if moved is not None and moved.source not in keys:
        keys.append(moved.source)
    return keys


def output_stem(manifest: Manifest, path: Path) -> str:
    """The stem of the output files of the segment at ``path``: the one its entries already have;
    else its own stem, unless a segment of the same name from another folder owns that (two
    recorders both open ``coinbase_<day>T000000Z.jsonl`` at midnight): then ``<stem>_<8 hex of its
    folder>``, so distinct sources never overwrite each other's files."""
    own = own_keys(manifest, path)
    for key in own:
        return entry_stem(manifest.entries[key])
    parts = split_name(path.name)
    stem = parts[0] if parts is not None else path.name
    taken = {entry_stem(e) for key, e in manifest.entries.items() if key not in own}
    if stem not in taken:
        return stem
    folder = hashlib.blake2b(str(path.parent).encode(), digest_size=4).hexdigest()
    return f"{stem}_{folder}"


def _record(session: StoreSession, r: SegmentResult) -> None:
    """Commit ``r``; it replaces the other entries of its source (``.part`` -> sealed, a moved folder)."""
    session.commit(_entry(r), replaces=own_keys(session.manifest, Path(r.source)))


def run_convert(
    cfg: Config,
    *,
    engine: str | None = None,
    include_latest: bool = False,
    write_csv: bool = False,
    force: bool = False,
    max_invalid: int | None = None,
    scheduler: str | None = None,
    progress: ProgressCallback = no_progress,
    clock: Callable[[], float] = time.perf_counter,
) -> ConvertSummary:
    """Convert the raw segments of ``cfg.paths.raw_dir`` into ``cfg.paths.parquet_dir``.

    Raises :class:`UsageError` (missing or empty raw directory), :class:`OutputNotWritable`,
    :class:`GPUUnavailable`; data problems are in the summary (see :meth:`ConvertSummary.check`).
    """
    t0 = clock()
    raw_dir, root = Path(cfg.paths.raw_dir), Path(cfg.paths.parquet_dir)
    segments, notes = _check_dirs(raw_dir, root, include_latest)
    requested = engine or cfg.convert.engine
    sched = scheduler if scheduler is not None else cfg.convert.scheduler
    eng: ConversionEngine | None = None
    if sched:
        # Each Dask worker creates (and for "auto" chooses) its own engine: the driver's GPU, or
        # lack of one, says nothing about the workers'.
        name, reason = _dask_engine(requested)
    else:
        eng, reason = select_engine(requested, cfg)
        name = eng.name
    csv_dir = Path(cfg.paths.csv_dir) if write_csv else None
    summary = ConvertSummary(str(raw_dir), str(root), name, reason, segments_found=len(segments),
                             csv_dir=str(csv_dir) if csv_dir else None, notes=notes)
    session: StoreSession | None = None
    try:
        session = StoreSession.open(root)
        todo = [s for s in segments if force or not _up_to_date(session, s, csv_dir)]
        summary.skipped = len(segments) - len(todo)
        jobs = [SegmentJob(source=str(s.path), store_root=str(root), engine=name, config=cfg,
                           cpu_fallback=requested == "auto", csv_dir=str(csv_dir) if csv_dir else None,
                           out_stem=output_stem(session.manifest, s.path))
                for s in todo]
        total_bytes = sum(s.size for s in todo)
        state = {"files": 0, "bytes": 0, "rows": 0}

        def done(result: SegmentResult | SegmentFailure, size: int) -> None:
            state["files"] += 1
            state["bytes"] += size
            if isinstance(result, SegmentResult):
                _record(session, result)
                summary.segments.append(result)
                state["rows"] += sum(result.rows.values())
            else:
                summary.failures.append(result)
            progress(Progress("convert", state["files"], len(jobs), state["bytes"], total_bytes, state["rows"],
                              Path(result.source).name))

        progress(Progress("convert", 0, len(jobs), 0, total_bytes, 0))
        sizes = {s.path: s.size for s in todo}
        if eng is None:
            if jobs:
                # closing(): an interrupt ends the generator (and the cluster) now, not at collection
                with closing(_stream_dask(jobs, sched)) as stream:
                    for res in stream:
                        done(res, sizes.get(Path(res.source), 0))
        else:
            for job, seg in zip(jobs, todo, strict=True):
                def on_bytes(n: int, rows: int, _base: int = state["bytes"], _name: str = seg.path.name) -> None:
                    progress(Progress("convert", state["files"], len(jobs), _base + n, total_bytes,
                                      state["rows"] + rows, _name))
                outcome: SegmentResult | SegmentFailure
                try:
                    outcome = run_job(job, engine=eng, on_bytes=on_bytes)
                except (DataError, EngineFailed) as exc:
                    outcome = SegmentFailure(job.source, str(exc), exc.exit_code)
                done(outcome, seg.size)
    finally:
        if eng is not None:
            eng.close()
        if session is not None:
            session.close()
        try:
            (root / STAGING_DIR).rmdir()  # only when empty: per-segment folders remove themselves
        except OSError:
            pass

    for r in summary.segments:
        summary.converted += 1
        summary.engines[r.engine] = summary.engines.get(r.engine, 0) + 1
        summary.notes.extend(f"{Path(r.source).name}: {note}" if not note.startswith(Path(r.source).name) else note
                             for note in r.engine_notes)
        for t, n in r.rows.items():
            summary.rows[t] = summary.rows.get(t, 0) + n
        summary.lines += r.lines
        summary.invalid += r.invalid
        summary.truncated += r.truncated
        summary.input_bytes += r.size
        summary.recv_ahead += r.recv_ahead
        if r.recv_ahead:
            summary.notes.append(f"{Path(r.source).name}: {r.recv_ahead:,} frame(s) received more than a day after "
                                 f"their own timestamp (a wrong clock, or a feed replaying past times); converted")
    summary.failed = len(summary.failures)
    assert session is not None  # opened, or the run raised before here
    _tally_quarantine(summary, root, session.manifest, segments)
    summary.max_invalid = max_invalid if max_invalid is not None \
        else int(cfg.convert.max_invalid_fraction * summary.lines_total)
    summary.seconds = clock() - t0
    return summary


def _tally_quarantine(summary: ConvertSummary, root: Path, manifest: Manifest, segments: list[Segment]) -> None:
    """Lines read and quarantined per segment found, from the manifest (this run's and earlier runs')."""
    for seg in segments:
        e = manifest.get(seg.path)
        if e is None:
            continue
        summary.lines_total += e.lines
        if not e.invalid:
            continue
        summary.quarantined_total += e.invalid
        # entries written before the field: the quarantine file is named by the output stem
        rel = e.quarantine or f"{QUARANTINE_DIR}/{entry_stem(e)}.jsonl"
        summary.quarantined.append({"source": str(seg.path), "invalid": e.invalid,
                                    "quarantine": rel if (root / rel).is_file() else ""})


def _dask_engine(requested: str) -> tuple[str, str]:
    """The engine name Dask jobs carry for ``requested``, and the reason the summary gives."""
    if requested not in ENGINE_NAMES:
        raise UsageError(f"unknown engine {requested!r} (expected one of {', '.join(ENGINE_NAMES)})",
                         where="--engine")
    return requested, {
        "auto": "each Dask worker uses the GPU engine where it can, else the CPU engine",
        "cpu": "CPU engine requested",
        "gpu": "GPU engine requested (segments on a worker without a usable GPU fail)",
    }[requested]


def _stream_dask(jobs: list[SegmentJob], address: str) -> Generator[SegmentResult | SegmentFailure, None, None]:
    try:
        mod = importlib.import_module("mktpred.convert.dask_runner")
    except ImportError as exc:
        raise UsageError(f"--scheduler needs Dask distributed ({DASK_HINT}): {exc}", where="--scheduler") from None
    results: Generator[SegmentResult | SegmentFailure, None, None] = mod.stream_on_dask(jobs, address)
    return results
