"""``mktpred csv2parquet``: CSV files (mktpred, Tardis or any other) into the Parquet store.

Public API: :func:`run_csv2parquet` (the command as a call), :func:`convert_file` (one file).
It turns each file into Arrow tables and hands them to the store's write path
(:mod:`mktpred.store.writer`), like ``convert`` does for raw segments.
"""

from mktpred.ingest.csv_import import Csv2ParquetSummary, convert_file, run_csv2parquet

__all__ = ["Csv2ParquetSummary", "convert_file", "run_csv2parquet"]
