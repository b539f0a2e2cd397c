"""``--write-csv``: each written Parquet file again as CSV, for tools such as Power BI.

``<csv_dir>/<table>/date=<YYYY-MM-DD>/<stem>.csv`` with a header row; timestamps are ISO 8601 UTC
with ``Z`` and all nine fractional digits (``2026-08-09T21:05:48.228568804Z``, as
:func:`mktpred.coinbase.timestamps.format_iso_ns`), whatever the machine's time zone.  Read from the
committed Parquet file in row groups (bounded memory), written to a temporary name and renamed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mktpred.errors import OutputNotWritable
from mktpred.store.layout import TMP_SUFFIX
from mktpred.store.schemas import TS_NS

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # Arrow prints %S with the unit's fraction: 9 digits at ns


def csv_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Timestamps as ISO 8601 UTC text with nine fractional digits; other columns unchanged."""
    cols = []
    for arr in batch.columns:
        if pa.types.is_timestamp(arr.type):
            arr = pc.strftime(pc.cast(arr, TS_NS), format=ISO_FORMAT)
        cols.append(arr)
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


def parquet_to_csv(src: Path, dest: Path) -> None:
    """One Parquet file -> one CSV file (atomically)."""
    tmp = dest.with_name(dest.name + TMP_SUFFIX)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        pf = pq.ParquetFile(src)
        writer: pacsv.CSVWriter | None = None
        with open(tmp, "wb") as fh:
            for batch in pf.iter_batches(batch_size=256_000):
                out = csv_batch(batch)
                if writer is None:
                    writer = pacsv.CSVWriter(fh, out.schema)
                writer.write_batch(out)
            if writer is None:  # no rows: header only
                empty = pa.RecordBatch.from_pylist([], schema=pf.schema_arrow)
                writer = pacsv.CSVWriter(fh, csv_batch(empty).schema)
            writer.close()
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputNotWritable(f"cannot write CSV: {exc.strerror or exc}", where=str(dest.parent)) from None


def export_csv(store_root: Path, outputs: list[str], csv_dir: Path) -> list[str]:
    """CSV copies of ``outputs`` (Parquet paths relative to the store); returns the CSV paths
    relative to ``csv_dir``."""
    written: list[str] = []
    for rel in outputs:
        rel_csv = Path(rel).with_suffix(".csv")
        parquet_to_csv(store_root / rel, csv_dir / rel_csv)
        written.append(str(rel_csv))
    return written
