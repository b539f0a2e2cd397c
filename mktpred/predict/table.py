"""The store's ``predictions`` table: its schema, the fingerprints that make writes incremental,
the ``fwd_ret`` join and the one function that writes a partition through the store's write path.

One schema for every model: ``p_down, p_flat, p_up, ret_bps`` are all present and a model fills
the ones it outputs (the others are null), so batch and live rows of any model read as one
dataset (DuckDB, PyArrow, Power BI) without ``union_by_name``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mktpred.features.labels import label_name
from mktpred.naming import safe_name
from mktpred.store.manifest import SourceEntry
from mktpred.store.reader import Store
from mktpred.store.schemas import TS_NS
from mktpred.store.session import StoreSession
from mktpred.store.writer import PartitionedWriter

TABLE = "predictions"
FEATURES_TABLE = "features"
#: every output column a model can have, in table order
OUTPUT_COLUMNS = ("p_down", "p_flat", "p_up", "ret_bps")
#: bump when the rows written for the same inputs change meaning (forces a rewrite)
PREDICTIONS_FORMAT = 1

SCHEMA = pa.schema([
    pa.field("time", TS_NS),
    pa.field("product_id", pa.string()),
    pa.field("model", pa.string()),
    pa.field("version", pa.string()),
    pa.field("horizon_s", pa.float64()),
    pa.field("valid", pa.bool_()),
    *(pa.field(c, pa.float64()) for c in OUTPUT_COLUMNS),
    pa.field("source", pa.string()),
    pa.field("latency_us", pa.int64()),
    pa.field("fwd_ret", pa.float64()),
])


def horizon_label(horizon_s: float) -> str:
    """The features table's label column for a horizon in seconds (``10.0`` -> ``fwd_ret_10s``)."""
    return label_name(round(horizon_s * 1e9))


def features_fingerprint(store: Store, dates: Iterable[str]) -> str:
    """Names, sizes and mtimes of the features files of ``dates``: it changes whenever ``features``
    rewrites a day (e.g. when the next day's data completes its last labels)."""
    h = hashlib.blake2b(digest_size=16)
    for date in sorted(set(dates)):
        part = store.layout.partition_dir(FEATURES_TABLE, date)
        for f in sorted(part.glob("*.parquet")) if part.is_dir() else []:
            st = f.stat()
            h.update(f"{date}/{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return "blake2b:" + h.hexdigest()


def combine(*parts: str) -> str:
    """One fingerprint from several."""
    h = hashlib.blake2b(digest_size=16)
    for p in (f"predictions-format:{PREDICTIONS_FORMAT}", *parts):
        h.update(p.encode() + b"\n")
    return "blake2b:" + h.hexdigest()


def join_fwd_ret(store: Store, time_ns: np.ndarray, products: np.ndarray, horizon_s: np.ndarray) -> np.ndarray:
    """``fwd_ret_<h>`` of the features row at the same ``(time, product_id)`` for each prediction
    (NaN where the features table has no such row, no such label, or the label is null: the
    future is not in the store yet)."""
    out = np.full(len(time_ns), np.nan)
    if len(time_ns) == 0 or FEATURES_TABLE not in store.tables():
        return out
    lo, hi = int(time_ns.min()), int(time_ns.max()) + 1
    schema_names = set(_features_columns(store, lo, hi))
    for h in np.unique(horizon_s):
        label = horizon_label(float(h))
        if label not in schema_names:
            continue
        sel = np.flatnonzero(horizon_s == h)
        wanted = sorted({str(p) for p in products[sel]})
        tbl = store.read(FEATURES_TABLE, products=wanted, start=lo, end=hi, columns=["time", "product_id", label])
        if tbl.num_rows == 0:
            continue
        ft = tbl.column("time").cast(pa.int64()).to_numpy()
        fp = np.asarray(tbl.column("product_id").to_pylist(), dtype=object)
        fv = np.asarray(pc.fill_null(tbl.column(label), np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
        index = {(int(t), str(p)): float(v) for t, p, v in zip(ft.tolist(), fp.tolist(), fv.tolist(), strict=True)}
        for i in sel.tolist():
            out[i] = index.get((int(time_ns[i]), str(products[i])), np.nan)
    return out


def _features_columns(store: Store, lo: int, hi: int) -> list[str]:
    import pyarrow.parquet as pq

    names: list[str] = []
    for f in store.files(FEATURES_TABLE, lo, hi):
        names += [n for n in pq.read_schema(f).names if n not in names]
    return names


def write_rows(session: StoreSession, *, key: str, stem: str, rows: pa.Table, hash: str, size: int = 0,
               mtime_ns: int = 0, kind: str = "predictions", lines: int = 0, invalid: int = 0, truncated: int = 0,
               partial: bool = False, engine: str = "predict", replaces: tuple[str, ...] = ()) -> list[str]:
    """Write ``rows`` (the :data:`SCHEMA`) as ``predictions/date=D/<stem>.parquet`` through the
    store's one write path (temporary name, rename) and commit the manifest entry ``key`` (saved at
    once; files the key's previous entry listed and this one does not are removed).  ``stem`` is made
    file-safe here (it holds model and product names).  Returns the files written."""
    w = PartitionedWriter(session.root, safe_name(stem), schemas={TABLE: SCHEMA}, date_columns=("time",))
    try:
        w.write(TABLE, rows)
        outputs = w.commit()
    except BaseException:
        w.abort()
        raise
    session.commit(SourceEntry(source=key, kind=kind, size=size, mtime_ns=mtime_ns, hash=hash,
                               rows={TABLE: rows.num_rows} if rows.num_rows else {}, lines=lines, invalid=invalid,
                               truncated=truncated, outputs=outputs, engine=engine, partial=partial),
                   replaces=replaces)
    return outputs


def up_to_date(store: Store, entry: SourceEntry | None, hash: str) -> bool:
    """The entry exists with the same fingerprint and every file it lists is still there."""
    if entry is None or entry.hash != hash:
        return False
    return all((store.root / o).is_file() for o in entry.outputs)
