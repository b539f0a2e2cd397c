"""``mktpred book``: replay the store's level2 table into the ``book`` table, incrementally.

Output: ``<store>/book/date=YYYY-MM-DD/<product>.parquet`` (one file per product and UTC day of
the snapshot ``time``), written to a temporary name and renamed into place.

Manifest: one entry per product and day, kind ``"book"``, keyed ``book:<product>:<date>``.  Its
``hash`` fingerprints the book options and the names, sizes and mtimes of every ``l2``,
``messages`` and ``events`` file of that day *and all earlier days* (a connection's book carries
over midnight, so a day's snapshots depend on the days before).  A re-run rebuilds from the first
day whose fingerprint changed or whose file is missing, replaying from the start of the
connections that were open then; earlier days are left alone.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from mktpred import __version__
from mktpred.book.gaps import GapIndex, load_conn_spans, load_gaps
from mktpred.book.replay import Replayer, ReplayStats
from mktpred.book.table import BOOK_TABLE, MAX_DEPTH, BookChunk, book_schema, format_duration
from mktpred.coinbase.timestamps import format_iso_ns
from mktpred.errors import DataError, UsageError
from mktpred.naming import safe_name
from mktpred.progress import Progress, ProgressCallback, no_progress
from mktpred.store.manifest import SourceEntry
from mktpred.store.reader import Store, TimeLike, day_bounds, open_store, to_ns
from mktpred.store.session import StoreSession
from mktpred.store.writer import PartitionedWriter

ROW_GROUP = 65_536  #: book rows per Parquet row group
BOOK_FORMAT = 1  #: bump when the engine's output changes meaning (forces a rebuild)
_INPUT_TABLES = ("l2", "messages", "events")


@dataclass
class ProductBook:
    """What ``mktpred book`` did for one product."""

    product: str
    dates_written: list[str] = field(default_factory=list)
    dates_skipped: list[str] = field(default_factory=list)
    snapshots: int = 0
    frames: int = 0
    updates: int = 0
    snapshot_levels: int = 0
    invalid_rows: int = 0
    invalid_spans: list[dict[str, Any]] = field(default_factory=list)
    crossed_rows: int = 0
    first_crossed: str | None = None
    before_snapshot: int = 0
    stale_frames: int = 0
    conns: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)

    @property
    def updates_per_s(self) -> float:
        return self.updates / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "dates_written": self.dates_written, "dates_skipped": self.dates_skipped,
            "snapshots": self.snapshots, "frames": self.frames, "updates": self.updates,
            "snapshot_levels": self.snapshot_levels, "invalid_rows": self.invalid_rows,
            "invalid_spans": self.invalid_spans, "crossed_rows": self.crossed_rows,
            "first_crossed": self.first_crossed, "frames_before_snapshot": self.before_snapshot,
            "stale_frames": self.stale_frames, "conns": self.conns, "seconds": round(self.seconds, 3),
            "updates_per_s": round(self.updates_per_s, 1), "outputs": self.outputs,
        }


@dataclass
class BookResult:
    """The ``--json`` summary of ``mktpred book``."""

    parquet_dir: Path
    depth: int
    interval: str  #: "100ms", "1s", ... or "every-update"
    products: list[ProductBook]
    gaps: int | None = None  #: sequence gaps in the store (None: nothing was replayed, not counted)
    elapsed_s: float = 0.0

    @property
    def snapshots(self) -> int:
        return sum(p.snapshots for p in self.products)

    @property
    def updates(self) -> int:
        return sum(p.updates for p in self.products)

    def to_json(self) -> dict[str, Any]:
        replay_s = sum(p.seconds for p in self.products)
        return {
            "parquet_dir": str(self.parquet_dir), "depth": self.depth, "interval": self.interval,
            "snapshots": self.snapshots, "updates": self.updates,
            "invalid_rows": sum(p.invalid_rows for p in self.products),
            "crossed_rows": sum(p.crossed_rows for p in self.products),
            "gaps": self.gaps, "elapsed_s": round(self.elapsed_s, 3),
            "updates_per_s": round(self.updates / replay_s, 1) if replay_s > 0 else 0.0,
            "products": {p.product: p.to_json() for p in self.products},
        }


def manifest_key(product: str, date: str) -> str:
    """The manifest key of one product-day of the ``book`` table."""
    return f"book:{product}:{date}"


def book_stem(product: str) -> str:
    """The file stem of a product's book files: the product id made safe (:func:`safe_name`)."""
    return safe_name(product)


def book_file(store: Store, product: str, date: str) -> Path:
    return store.layout.partition_dir(BOOK_TABLE, date) / f"{book_stem(product)}.parquet"


class _DayWriter:
    """The replayer's sink: each chunk of a product's snapshots goes to the store's partitioned
    writer, which splits it by UTC day into ``book/date=D/<product>.parquet``."""

    def __init__(self, store: Store, product: str, depth: int, compression: str, level: int | None) -> None:
        # Only the days being rebuilt are written: earlier days' files of the product stay.
        self.writer = PartitionedWriter(store.root, book_stem(product), compression=compression,
                                        compression_level=level, row_group_rows=ROW_GROUP,
                                        schemas={BOOK_TABLE: book_schema(depth)}, date_columns=("time",),
                                        prune=False, exact_row_groups=True)

    def __call__(self, chunk: BookChunk) -> None:
        self.writer.write(BOOK_TABLE, chunk.to_arrow())

    def close(self) -> dict[str, int]:
        rows = self.writer.partition_rows(BOOK_TABLE)
        self.writer.commit()
        return rows

    def abort(self) -> None:
        self.writer.abort()


def _fingerprints(store: Store, options: dict[str, Any]) -> dict[str, tuple[str, int, int]]:
    """Per l2 day: ``(hash, input bytes, max mtime)`` chained over every earlier day."""
    dates = sorted(set().union(*(store.layout.dates(t) for t in _INPUT_TABLES)))
    h = hashlib.blake2b(json.dumps(options, sort_keys=True).encode(), digest_size=16)
    out: dict[str, tuple[str, int, int]] = {}
    for date in dates:
        size = mtime = 0
        for table in _INPUT_TABLES:
            for f in sorted(store.layout.partition_dir(table, date).glob("*.parquet")):
                st = f.stat()
                h.update(f"{table}/{date}/{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
                size += st.st_size
                mtime = max(mtime, st.st_mtime_ns)
        out[date] = ("blake2b:" + h.copy().hexdigest(), size, mtime)
    return out


def build_book(parquet_dir: str | Path, *, depth: int = 10, interval_ns: int | None = 1_000_000_000,
               products: list[str] | None = None, start: TimeLike = None, end: TimeLike = None,
               force: bool = False, compression: str = "zstd", compression_level: int | None = 3,
               progress: ProgressCallback = no_progress) -> BookResult:
    """Write the ``book`` table for ``products`` (default: all in ``l2``); see the module doc.

    ``interval_ns=None`` emits a snapshot after every frame (``--every-update``)."""
    t0 = time.monotonic()
    if not 1 <= depth <= MAX_DEPTH:
        raise UsageError(f"--depth must be between 1 and {MAX_DEPTH}, got {depth}", where="--depth")
    store = open_store(parquet_dir)
    if "l2" not in store.tables():
        raise UsageError("the store has no l2 table (run mktpred convert first)", where=str(store.root))
    lo, hi = to_ns(start), to_ns(end)
    if lo is not None and hi is not None and hi <= lo:
        raise UsageError("--end must be after --start", where="--end")
    for table in _INPUT_TABLES:  # every day up to --end may be replayed
        store.check_files(table, None, hi)
    known = store.products("l2")
    if products:
        unknown = [p for p in products if p not in known]
        if unknown:
            raise UsageError(f"no level2 data for {', '.join(unknown)} (the store has {', '.join(known) or 'none'})",
                             where="--products")
        chosen = list(dict.fromkeys(products))
    else:
        chosen = known
    interval = "every-update" if interval_ns is None else format_duration(interval_ns)
    options = {"format": BOOK_FORMAT, "depth": depth, "interval": interval, "start": lo, "end": hi}
    prints = _fingerprints(store, options)
    dates = store.dates("l2", lo, hi)
    session = StoreSession.open(store.root)
    result = BookResult(store.root, depth, interval, [])
    plans: list[tuple[str, list[str]]] = []
    for product in chosen:
        todo = [d for d in dates if force or not session.unchanged(manifest_key(product, d), fingerprint=prints[d][0])]
        if todo:
            todo = [d for d in dates if d >= todo[0]]
        plans.append((product, todo))
    to_read = [f for _, t in plans if t for f in store.files("l2", day_bounds(t[0])[0], hi)]
    total_files = len(to_read)
    total_bytes = sum(f.stat().st_size for f in to_read)
    state = {"files": 0, "bytes": 0, "rows": 0}

    def on_file(path: Path, size: int) -> None:
        state["files"] += 1
        state["bytes"] += size
        progress(Progress("book", state["files"], max(total_files, state["files"]), state["bytes"],
                          max(total_bytes, state["bytes"]), state["rows"], path.name))

    gaps_all: GapIndex | None = None
    for product, todo in plans:
        pb = ProductBook(product)
        result.products.append(pb)
        if not todo:
            pb.dates_skipped = [d for d in dates]
            continue
        pb.dates_skipped = [d for d in dates if d < todo[0]]
        p0 = time.monotonic()
        emit_lo = max(day_bounds(todo[0])[0], lo) if lo is not None else day_bounds(todo[0])[0]
        emit_hi = min(day_bounds(todo[-1])[1], hi) if hi is not None else day_bounds(todo[-1])[1]
        spans = load_conn_spans(store, product, None, emit_hi)
        # Replay from the start of the connections still open at emit_lo (a book starts at a snapshot).
        replay_lo = min([s.first for s in spans.values() if s.first < emit_lo <= s.last], default=emit_lo)
        if gaps_all is None:
            gaps_all = load_gaps(store, None, hi)
            result.gaps = gaps_all.count()
        writer = _DayWriter(store, product, depth, compression, compression_level)
        rep = Replayer(product, depth, interval_ns=interval_ns, sink=writer, gaps=gaps_all,
                       conn_ends={c: s.last for c, s in spans.items()}, emit_start=emit_lo, emit_end=emit_hi)
        try:
            for batch in store.l2_batches(product, replay_lo, emit_hi, on_file=on_file):
                rep.feed(batch)
                state["rows"] += batch.n_rows
            stats = rep.finish()
            rows = writer.close()
        except pa.ArrowException as exc:  # a damaged data page (the footers were checked up front)
            writer.abort()
            raise DataError(f"cannot read the store's l2 table: {str(exc).strip().splitlines()[0]}",
                            where=str(store.root)) from None
        except BaseException:
            writer.abort()
            raise
        _record(store, session, pb, stats, rows, todo, prints)
        pb.seconds = time.monotonic() - p0
    session.close()
    result.elapsed_s = time.monotonic() - t0
    return result


def _record(store: Store, session: StoreSession, pb: ProductBook, stats: ReplayStats, rows: dict[str, int],
            todo: list[str], prints: dict[str, tuple[str, int, int]]) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    for date in todo:
        out = book_file(store, pb.product, date)
        n = rows.get(date, 0)
        if n == 0:
            out.unlink(missing_ok=True)  # a stale file from an earlier run
        rel = out.relative_to(store.root).as_posix()
        fp, size, mtime = prints[date]
        session.commit(SourceEntry(
            source=manifest_key(pb.product, date), kind="book", size=size, mtime_ns=mtime, hash=fp,
            rows={BOOK_TABLE: n}, outputs=[rel] if n else [], engine="book",
            mktpred_version=__version__, converted_at=now))
        if n:
            pb.dates_written.append(date)
            pb.outputs.append(rel)
    pb.snapshots = stats.rows
    pb.frames = stats.frames
    pb.updates = stats.updates
    pb.snapshot_levels = stats.snapshot_levels
    pb.invalid_rows = stats.invalid_rows
    pb.crossed_rows = stats.crossed_rows
    pb.first_crossed = format_iso_ns(stats.first_crossed) if stats.first_crossed is not None else None
    pb.before_snapshot = stats.before_snapshot
    pb.stale_frames = stats.stale
    pb.conns = stats.conns
    pb.invalid_spans = [
        {"conn": s.conn, "start": format_iso_ns(s.start),
         "end": format_iso_ns(s.end) if s.end is not None else None, "after_seq": s.expected_after_seq}
        for s in stats.invalid_spans]
