"""`mktpred csv2parquet`."""

from __future__ import annotations

from mktpred.cli.base import ConfigOption, command
from mktpred.config import load_config
from mktpred.errors import NotImplementedYet


@command("csv2parquet")
def csv2parquet_command(config: ConfigOption = None) -> None:
    """Import existing CSV data (Tardis, mktpred CSV, generic) into the Parquet store.

    Example: mktpred csv2parquet tardis/*.csv.gz --parquet-dir data/parquet"""
    load_config(config)
    raise NotImplementedYet("'mktpred csv2parquet' is not implemented yet")
