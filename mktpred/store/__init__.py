"""The Parquet store: layout, table schemas, manifest, the read API and the one write path.

Reading (issue 10): :func:`open_store` -> :class:`Store` (tables as Arrow, pandas or DuckDB).

Writing: every Parquet file in a store is written by :mod:`mktpred.store.writer`, and every
producer drives it the same way through :class:`StoreSession` (:mod:`mktpred.store.session`)::

    session = StoreSession.open(root)              # probe writability, sweep leftovers, load manifest
    if not session.unchanged(key, fingerprint=fp):  # or size=/mtime_ns= for a source file
        w = PartitionedWriter(root, stem, schemas={"predictions": schema}, date_columns=("time",))
        try:
            w.write("predictions", table)           # as many times as needed; memory stays bounded
            outputs = w.commit()                    # files renamed into place, atomically
        except BaseException:
            w.abort()
            raise
        session.commit(SourceEntry(source=key, kind="predictions", size=0, mtime_ns=0, hash=fp,
                                   rows={"predictions": table.num_rows}, outputs=outputs))

- :class:`PartitionedWriter`: ``<table>/date=<UTC day>/<stem>.parquet`` by a time column;
  ``prune=False`` when a run rewrites only some days of a stem.
- :class:`SingleFileWriter`: ``<table>/<stem>.parquet`` for a table without a time column.
- :func:`write_parquet_file`: one whole table to one path (model evaluations, exports).
- A file stem made from data (a product id, a model name) goes through
  :func:`mktpred.naming.safe_name` first; writers refuse a stem that would leave its folder.
- :meth:`StoreSession.commit` saves the manifest after each source (a crash loses at most the
  source in flight) and removes outputs the source's previous entry had and the new one lacks.

Names resolve lazily, so ``import mktpred.store.layout`` does not load pandas or DuckDB.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "StoreLayout": "mktpred.store.layout",
    "TABLE_SCHEMAS": "mktpred.store.schemas",
    "schema_for": "mktpred.store.schemas",
    "Manifest": "mktpred.store.manifest",
    "SourceEntry": "mktpred.store.manifest",
    "L2Batch": "mktpred.store.reader",
    "L2Frame": "mktpred.store.reader",
    "Store": "mktpred.store.reader",
    "TimeLike": "mktpred.store.reader",
    "open_store": "mktpred.store.reader",
    "to_ns": "mktpred.store.reader",
    "StoreSession": "mktpred.store.session",
    "ensure_writable": "mktpred.store.session",
    "sweep_leftovers": "mktpred.store.session",
    "PartitionedWriter": "mktpred.store.writer",
    "SingleFileWriter": "mktpred.store.writer",
    "TableWriter": "mktpred.store.writer",
    "write_parquet_file": "mktpred.store.writer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mktpred.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
