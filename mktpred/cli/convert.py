"""`mktpred convert`."""

from __future__ import annotations

from mktpred.cli.base import ConfigOption, command
from mktpred.config import load_config
from mktpred.errors import NotImplementedYet


@command("convert")
def convert_command(config: ConfigOption = None) -> None:
    """Convert sealed raw JSONL segments into the date-partitioned Parquet store.

    Example: mktpred convert --raw-dir data/raw --parquet-dir data/parquet --write-csv"""
    load_config(config)
    raise NotImplementedYet("'mktpred convert' is not implemented yet")
