"""The Parquet store: layout, table schemas, manifest and the read API."""

from mktpred.store.layout import StoreLayout
from mktpred.store.schemas import TABLE_SCHEMAS, schema_for

__all__ = ["TABLE_SCHEMAS", "StoreLayout", "schema_for"]

# The read API (issue 10).
from mktpred.store.reader import L2Batch, L2Frame, Store, TimeLike, open_store, to_ns

__all__ += ["L2Batch", "L2Frame", "Store", "TimeLike", "open_store", "to_ns"]
