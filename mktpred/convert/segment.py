"""Converting one segment: the engine's fast path, the careful path for bad input, atomic output.

1. *Direct*: the engine reads the segment file itself while a second thread hashes it and counts
   its lines.  Used for sealed segments in a format the engine reads.
2. *Chunked*: the segment is read in bounded chunks of complete lines (``.part`` segments, up to
   their last complete line; compressed files an engine cannot read), each handed to the engine.
3. *Careful*, per chunk, when the engine rejects it (or the direct pass did, or the line counts
   disagree): every line is checked in Python (:func:`mktpred.convert.records.check_line`), bad
   ones are quarantined, the rest converted; lines the engine still rejects are isolated by
   bisection and quarantined with the engine's message.

Nothing is visible in the store until the whole segment succeeded: outputs are renamed into place
by :meth:`mktpred.store.writer.PartitionedWriter.commit` at the very end.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import zstandard

from mktpred.convert.engine import ENGINE_TABLES, EVENT, ConversionEngine, EngineBatch, EngineRejected
from mktpred.convert.factory import make_engine
from mktpred.convert.jobs import SegmentJob, SegmentResult
from mktpred.convert.records import (
    MAX_RECV_AHEAD_NS,
    MIN_RECV_NS,
    RECV_REASON,
    BadRecord,
    check_line,
    event_row,
)
from mktpred.convert.segments import LineChunk, ReadStats, fetch_lines, hash_and_count, iter_chunks
from mktpred.errors import DataError, EngineFailed, OutputNotWritable, RuntimeFailure, UsageError
from mktpred.naming import Segment, split_name
from mktpred.store.quarantine import Quarantine
from mktpred.store.schemas import EVENTS, REQUIRED_COLUMNS, TABLE_SCHEMAS
from mktpred.store.writer import PartitionedWriter

#: ``(bytes of the segment read, rows converted so far)`` during a segment, for progress bars
BytesCallback = Callable[[int, int], None]
T = TypeVar("T")


_DONE = object()


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` in a background thread, at most ``depth`` ahead of the consumer.

    The engine parses the next batch while the caller writes the previous one (both release the
    GIL).  Exceptions reach the consumer; if the consumer stops early, the producer is closed.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as exc:  # handed over to the consumer
            q.put(_Raised(exc))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        q.put(_DONE)

    thread = threading.Thread(target=produce, name="mktpred-engine", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


#: lines the Python validator passes but the engine rejects, per segment, before giving up
MAX_ENGINE_ONLY_REJECTS = 1000


class _Fallback(Exception):
    """The direct pass cannot be trusted for this segment; redo it chunk by chunk."""


def check_tables(tables: dict[str, pa.Table]) -> None:
    """Enforce the table contract on an engine's output (schema, required values)."""
    for name, table in tables.items():
        if name not in ENGINE_TABLES:
            raise EngineRejected(f"engine produced an unknown table {name!r}")
        if not table.schema.equals(TABLE_SCHEMAS[name]):
            raise EngineRejected(f"engine produced {name} with schema {table.schema}")
        for col in REQUIRED_COLUMNS[name]:
            if table.column(col).null_count:
                raise EngineRejected(f"{name}.{col} is missing in some rows")
        if "recv_time" in table.schema.names and table.num_rows:
            # engines convert any integer; the careful path quarantines these lines (check_recv)
            if pc.any(pc.less(table.column("recv_time").cast(pa.int64()), MIN_RECV_NS)).as_py():
                raise EngineRejected(f"{name}: {RECV_REASON}")


def count_recv_ahead(messages: pa.Table) -> int:
    """Frames (``messages`` rows) received more than a day after their own timestamp."""
    if not messages.num_rows:
        return 0
    recv = messages.column("recv_time").cast(pa.int64())
    limit = pc.add(messages.column("time").cast(pa.int64()), MAX_RECV_AHEAD_NS)
    return int(pc.sum(pc.greater(recv, limit)).as_py() or 0)


def segment_of(path: Path) -> Segment:
    parts = split_name(path.name)
    if parts is None:
        raise UsageError(f"not a raw segment name: {path.name}", where=str(path.parent))
    try:
        st = path.stat()
    except OSError as exc:
        raise UsageError(f"cannot read segment: {exc.strerror}", where=str(path)) from None
    return Segment(path, parts[0], parts[1], st.st_size, st.st_mtime_ns)


class _Sink:
    """Where converted rows, event records and bad lines of one segment go."""

    def __init__(self, writer: PartitionedWriter, quarantine: Quarantine) -> None:
        self.writer = writer
        self.quarantine = quarantine
        self.events: list[dict[str, object]] = []
        #: rows handed to the writer so far (progress during a segment; the result counts the writer's)
        self.rows = 0
        self.recv_ahead = 0  #: frames received more than a day after their timestamp

    def tables(self, tables: dict[str, pa.Table]) -> None:
        for name in ENGINE_TABLES:
            t = tables.get(name)
            if t is not None and t.num_rows:
                self.writer.write(name, t)
                self.rows += t.num_rows
                if name == "messages":
                    self.recv_ahead += count_recv_ahead(t)

    def special(self, line: int, kind: str, text: bytes) -> None:
        if kind == EVENT:
            try:
                self.events.append(event_row(text))
            except BadRecord as exc:
                self.quarantine.add(line, str(exc), text)
            return
        self.quarantine.add(line, kind, text)

    def finish(self) -> None:
        if self.events:
            self.writer.write("events", pa.Table.from_pylist(self.events, schema=EVENTS))
            self.events.clear()


class SegmentConverter:
    """Converts one segment with one engine (see the module docstring)."""

    def __init__(self, segment: Segment, engine: ConversionEngine, sink: _Sink, staging: Path,
                 chunk_bytes: int, on_bytes: BytesCallback | None = None) -> None:
        self.seg = segment
        self.engine = engine
        self.sink = sink
        self.staging = staging
        self.chunk_bytes = chunk_bytes
        self.on_bytes = on_bytes
        self.mode = "direct"
        self.engine_only_rejects = 0

    # -- direct -----------------------------------------------------------------------------------
    def direct(self) -> ReadStats:
        specials: list[tuple[int, str]] = []
        base = read = 0
        cancel = threading.Event()
        with ThreadPoolExecutor(1, thread_name_prefix="mktpred-hash") as pool:
            counted = pool.submit(hash_and_count, self.seg, cancel)
            try:
                for batch in prefetch(self.engine.convert_file(self.seg.path)):
                    check_tables(batch.tables)
                    self.sink.tables(batch.tables)
                    specials.extend((base + i + 1, kind) for i, kind in batch.special)
                    base += batch.lines
                    if self.on_bytes is not None:
                        if counted.done() and counted.result().lines:
                            # the hash pass runs ahead and knows the line count: report the share done
                            read = self.seg.size * min(base, counted.result().lines) // counted.result().lines
                        self.on_bytes(read, self.sink.rows)
            except (OutputNotWritable, EngineFailed):  # not the data: no other path can help
                cancel.set()
                raise
            except Exception as exc:
                cancel.set()
                raise _Fallback(str(exc)) from None
            except BaseException:  # Ctrl-C: do not wait for the hash of a large file
                cancel.set()
                raise
            stats = counted.result()
        if stats.lines != base:
            raise _Fallback(f"the engine read {base} records of {stats.lines} lines")
        texts = fetch_lines(self.seg, {line for line, _ in specials})
        for line, kind in specials:
            self.sink.special(line, kind, texts.get(line, b""))
        return stats

    # -- chunked / careful ----------------------------------------------------------------------
    def chunked(self) -> ReadStats:
        stats = ReadStats()
        for chunk in iter_chunks(self.seg, self.chunk_bytes, stats):
            self._chunk(chunk)
            if self.on_bytes is not None:
                self.on_bytes(chunk.raw_offset, self.sink.rows)
        return stats

    def _run_engine(self, data: Iterable[bytes], expected_lines: int) -> list[EngineBatch]:
        path = self.staging / "chunk.jsonl"
        try:
            with open(path, "wb") as fh:
                for piece in data:
                    fh.write(piece)
        except OSError as exc:
            raise OutputNotWritable(f"cannot write the staging file: {exc.strerror or exc}",
                                    where=str(self.staging)) from None
        batches = list(self.engine.convert_file(path))
        for b in batches:
            check_tables(b.tables)
        got = sum(b.lines for b in batches)
        if got != expected_lines:
            raise EngineRejected(f"the engine read {got} records of {expected_lines} lines")
        return batches

    def _emit(self, batches: list[EngineBatch], numbers: list[int] | range, lines: list[bytes] | None,
              data: bytes | None) -> None:
        base = 0
        split: list[bytes] | None = lines
        for b in batches:
            self.sink.tables(b.tables)
            for i, kind in b.special:
                if split is None:
                    assert data is not None
                    split = data.split(b"\n")
                self.sink.special(numbers[base + i], kind, split[base + i])
            base += b.lines

    def _chunk(self, chunk: LineChunk) -> None:
        numbers = range(chunk.first_line, chunk.first_line + chunk.n_lines)
        try:
            batches = self._run_engine([chunk.data], chunk.n_lines)
        except (OutputNotWritable, EngineFailed):
            raise
        except Exception:
            self.mode = "careful"
            self._careful(chunk)
            return
        self._emit(batches, numbers, None, chunk.data)

    def _careful(self, chunk: LineChunk) -> None:
        lines = chunk.data.split(b"\n")[: chunk.n_lines]
        good: list[bytes] = []
        numbers: list[int] = []
        for i, line in enumerate(lines):
            reason = check_line(line)
            if reason is None:
                good.append(line)
                numbers.append(chunk.first_line + i)
            else:
                self.sink.quarantine.add(chunk.first_line + i, reason, line)
        self._bisect(good, numbers)

    def _bisect(self, lines: list[bytes], numbers: list[int]) -> None:
        if not lines:
            return
        try:
            batches = self._run_engine((line + b"\n" for line in lines), len(lines))
        except (OutputNotWritable, EngineFailed):
            raise
        except Exception as exc:
            if len(lines) == 1:
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self.engine_only_rejects += 1
                if self.engine_only_rejects > MAX_ENGINE_ONLY_REJECTS:
                    # Not bad lines but a broken engine: stop rather than quarantine everything.
                    raise RuntimeFailure(f"the {self.engine.name} engine rejects lines the validator accepts "
                                         f"(line {numbers[0]}: {msg})", where=str(self.seg.path)) from None
                self.sink.quarantine.add(numbers[0], f"rejected by the {self.engine.name} engine: {msg}", lines[0])
                return
            mid = len(lines) // 2
            self._bisect(lines[:mid], numbers[:mid])
            self._bisect(lines[mid:], numbers[mid:])
            return
        self._emit(batches, numbers, lines, None)


def convert_one(segment: Segment, engine: ConversionEngine, store_root: Path, *, chunk_bytes: int,
                compression: str, compression_level: int, row_group_rows: int, staging_root: Path,
                csv_dir: Path | None = None, on_bytes: BytesCallback | None = None,
                allow_direct: bool = True, out_stem: str | None = None) -> SegmentResult:
    """Convert ``segment`` into the store with ``engine`` (outputs committed on success), as files
    named ``out_stem`` (default: the segment's stem).

    ``allow_direct=False`` always takes the chunked path (tests use it to compare the paths)."""
    t0 = time.perf_counter()
    stem = out_stem or segment.stem
    writer = PartitionedWriter(store_root, stem, compression=compression,
                               compression_level=compression_level, row_group_rows=row_group_rows)
    quarantine = Quarantine(store_root, stem, segment.path.name)
    staging = staging_root / f"{stem}.{os.getpid()}"
    try:
        staging.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputNotWritable(f"cannot create a staging folder: {exc.strerror}", where=str(staging_root)) \
            from None
    try:
        sink = _Sink(writer, quarantine)
        conv = SegmentConverter(segment, engine, sink, staging, chunk_bytes, on_bytes)
        direct = allow_direct and not segment.partial and (
            segment.compression is None or engine.reads_compressed)
        stats: ReadStats | None = None
        if direct:
            try:
                stats = conv.direct()
            except _Fallback:
                writer.abort()
                quarantine.abort()
                sink.events.clear()
                sink.rows = 0
                sink.recv_ahead = 0
                stats = None
        if stats is None:
            conv.mode = "chunked"
            stats = conv.chunked()
        sink.finish()
        outputs = writer.commit()
        quarantined = quarantine.commit()
    except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
        writer.abort()
        quarantine.abort()
        if isinstance(exc, OSError) and exc.filename and str(store_root) in str(exc.filename):
            raise OutputNotWritable(f"cannot write: {exc.strerror}", where=str(exc.filename)) from None
        raise DataError(f"cannot read segment: {exc}", where=str(segment.path)) from None
    except BaseException:
        writer.abort()
        quarantine.abort()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    csv_outputs: list[str] = []
    if csv_dir is not None:
        from mktpred.convert.csv_export import export_csv

        csv_outputs = export_csv(store_root, outputs, csv_dir)
    rows = {t: writer.rows.get(t, 0) for t in TABLE_SCHEMAS}
    return SegmentResult(
        source=str(segment.path), stem=stem, size=segment.size, mtime_ns=segment.mtime_ns,
        hash=stats.hash, rows=rows, lines=stats.lines, invalid=quarantine.count, truncated=stats.truncated,
        outputs=outputs, csv_outputs=csv_outputs, engine=engine.name, partial=segment.partial,
        seconds=round(time.perf_counter() - t0, 3), mode=conv.mode, invalid_reasons=dict(quarantine.reasons),
        quarantine=quarantined, recv_ahead=sink.recv_ahead,
    )


def run_job(job: SegmentJob, engine: ConversionEngine | None = None,
            on_bytes: BytesCallback | None = None) -> SegmentResult:
    """Convert the segment of ``job`` (creates the engine unless one is given)."""
    store = Path(job.store_root)
    own = engine is None
    eng = make_engine(job.engine, job.config, cpu_fallback=job.cpu_fallback) if engine is None else engine
    try:
        cc = job.config.convert
        eng.take_usage()  # forget whatever a shared engine did before this segment
        result = convert_one(
            segment_of(Path(job.source)), eng, store, chunk_bytes=job.chunk_bytes,
            compression=cc.compression, compression_level=cc.compression_level,
            row_group_rows=cc.chunk_rows,
            staging_root=Path(job.staging_dir) if job.staging_dir else store / "_staging",
            csv_dir=Path(job.csv_dir) if job.csv_dir else None, on_bytes=on_bytes, out_stem=job.out_stem,
        )
        usage = eng.take_usage()
        result.engine = usage.label  # the engine that actually ran (a GPU engine may have fallen back)
        result.engine_notes = list(usage.notes)
        return result
    finally:
        if own:
            eng.close()


def convert_segment(job: SegmentJob) -> SegmentResult:
    """Convert one segment into the store (a top-level function: Dask workers call it too).

    Writes the segment's Parquet files (temporary names, renamed into place at the end), its
    quarantine file and, when asked, its CSV files; the manifest is the driver's business.
    """
    return run_job(job)
