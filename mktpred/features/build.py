"""``mktpred features``: the store's ``l2`` and ``trades`` through the engine into the features table.

Output: ``<store>/<table>/date=YYYY-MM-DD/<product>_<date>.parquet`` (the product id made safe by
:func:`mktpred.naming.safe_name`) through the store's one write
path (:class:`~mktpred.store.writer.PartitionedWriter`), one manifest entry per product and day,
kind ``"features"``, keyed ``<table>:<product>:<date>``.  Its ``hash`` fingerprints the options and
every ``l2``, ``trades``, ``messages`` and ``events`` file of that day and all earlier days.  A
re-run recomputes from the day before the first stale day (new data completes that day's last
labels), replaying from the start of the connections open then; earlier days are left alone.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from mktpred import __version__
from mktpred.book.gaps import load_conn_spans, load_gaps
from mktpred.book.table import format_duration
from mktpred.errors import UsageError
from mktpred.features.batch import compute_product, features_schema, split_by_date
from mktpred.features.engine import FeatureSpec
from mktpred.naming import safe_name
from mktpred.progress import Progress, ProgressCallback, no_progress
from mktpred.store.manifest import SourceEntry
from mktpred.store.reader import Store, TimeLike, day_bounds, open_store, to_ns
from mktpred.store.session import StoreSession
from mktpred.store.writer import PartitionedWriter

FEATURES_FORMAT = 1  #: bump when the engine's output changes meaning (forces a recompute)
_INPUT_TABLES = ("l2", "trades", "messages", "events")


@dataclass
class ProductFeatures:
    """What ``mktpred features`` did for one product."""

    product: str
    dates_written: list[str] = field(default_factory=list)
    dates_skipped: list[str] = field(default_factory=list)
    rows: int = 0
    invalid_rows: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"dates_written": self.dates_written, "dates_skipped": self.dates_skipped, "rows": self.rows,
                "invalid_rows": self.invalid_rows, "seconds": round(self.seconds, 3), "outputs": self.outputs}


@dataclass
class FeaturesResult:
    """The ``--json`` summary of ``mktpred features``."""

    parquet_dir: Path
    table: str
    interval: str
    horizons: list[str]
    columns: list[str]
    products: list[ProductFeatures]
    elapsed_s: float = 0.0

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.products)

    def to_json(self) -> dict[str, Any]:
        return {"parquet_dir": str(self.parquet_dir), "table": self.table, "interval": self.interval,
                "horizons": self.horizons, "columns": self.columns, "rows": self.rows,
                "invalid_rows": sum(p.invalid_rows for p in self.products), "elapsed_s": round(self.elapsed_s, 3),
                "products": {p.product: p.to_json() for p in self.products}}


def manifest_key(table: str, product: str, date: str) -> str:
    """The manifest key of one product-day of a features table."""
    return f"{table}:{product}:{date}"


def _fingerprints(store: Store, options: dict[str, Any]) -> dict[str, tuple[str, int, int]]:
    """Per input day: ``(hash, input bytes, max mtime)`` chained over every earlier day."""
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


def _prev_day(date: str) -> str:
    return (datetime.strptime(date, "%Y-%m-%d") - timedelta(days=1)).strftime("%Y-%m-%d")


def build_features(parquet_dir: str | Path, spec: FeatureSpec, *, products: list[str] | None = None,
                   start: TimeLike = None, end: TimeLike = None, table: str = "features", force: bool = False,
                   compression: str = "zstd", compression_level: int | None = 3,
                   progress: ProgressCallback = no_progress) -> FeaturesResult:
    """Write the features table for ``products`` (default: all in ``l2``); see the module doc."""
    t0 = time.monotonic()
    store = open_store(parquet_dir)
    if "l2" not in store.tables():
        raise UsageError("the store has no l2 table (run mktpred convert first)", where=str(store.root))
    if table in _INPUT_TABLES or table in ("book", "ticker") or not table.replace("_", "").isalnum():
        raise UsageError(f"--table {table!r} is not a name for a features table", where="--table")
    lo, hi = to_ns(start), to_ns(end)
    if lo is not None and hi is not None and hi <= lo:
        raise UsageError("--end must be after --start", where="--end")
    known = store.products("l2")
    if products:
        unknown = [p for p in products if p not in known]
        if unknown:
            raise UsageError(f"no level2 data for {', '.join(unknown)} (the store has {', '.join(known) or 'none'})",
                             where="--products")
        chosen = list(dict.fromkeys(products))
    else:
        chosen = known
    schema = features_schema(spec)
    if spec.cross and spec.cross not in known:
        raise UsageError(f"--cross: no level2 data for {spec.cross}", where="--cross")
    options = {"format": FEATURES_FORMAT, "interval": spec.interval_ns, "horizons": list(spec.horizons_ns),
               "cross": spec.cross, "start": lo, "end": hi}
    prints = _fingerprints(store, options)
    dates = store.dates("l2", lo, hi)
    session = StoreSession.open(store.root)
    result = FeaturesResult(store.root, table, format_duration(spec.interval_ns),
                            [format_duration(h) for h in spec.horizons_ns], schema.names, [])
    gaps = load_gaps(store, None, hi)
    for i, product in enumerate(chosen):
        pf = ProductFeatures(product)
        result.products.append(pf)
        stale = [d for d in dates if force or not session.unchanged(manifest_key(table, product, d), fingerprint=prints[d][0])]
        if not stale:
            pf.dates_skipped = list(dates)
            continue
        first = stale[0]
        if _prev_day(first) in dates:
            first = _prev_day(first)  # its last labels may look into the new day
        todo = [d for d in dates if d >= first]
        pf.dates_skipped = [d for d in dates if d < first]
        p0 = time.monotonic()
        emit_lo = max(day_bounds(first)[0], lo) if lo is not None else day_bounds(first)[0]
        spans = load_conn_spans(store, product, None, hi)
        replay_lo = min([s.first for s in spans.values() if s.first < emit_lo <= s.last], default=emit_lo)
        progress(Progress("features", i, len(chosen), current=product))
        tbl = compute_product(store, product, spec, replay_lo, hi, gaps=gaps)
        by_date = split_by_date(tbl)
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        for date in todo:
            part = by_date.get(date, schema.empty_table())
            w = PartitionedWriter(store.root, f"{safe_name(product)}_{date}", compression=compression,
                                  compression_level=compression_level, schemas={table: schema},
                                  date_columns=("time",))
            try:
                w.write(table, part)
                outs = w.commit()
            except BaseException:
                w.abort()
                raise
            n = part.num_rows
            fp, size, mtime = prints[date]
            session.commit(SourceEntry(source=manifest_key(table, product, date), kind="features", size=size,
                                     mtime_ns=mtime, hash=fp, rows={table: n}, outputs=outs, engine="features",
                                     mktpred_version=__version__, converted_at=now))
            if n:
                pf.dates_written.append(date)
                pf.outputs += outs
                pf.rows += n
                pf.invalid_rows += n - int(pc.sum(part.column("valid")).as_py() or 0)
        pf.seconds = time.monotonic() - p0
        progress(Progress("features", i + 1, len(chosen), rows=result.rows, current=product))
    session.close()
    result.elapsed_s = time.monotonic() - t0
    return result
