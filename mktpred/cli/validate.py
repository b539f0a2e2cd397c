"""`mktpred validate`."""

from __future__ import annotations

from mktpred.cli.base import ConfigOption, command
from mktpred.config import load_config
from mktpred.errors import NotImplementedYet


@command("validate")
def validate_command(config: ConfigOption = None) -> None:
    """Check the Parquet store (schema, row counts, nulls, partitions, sequence gaps, coverage).

    Example: mktpred validate --parquet-dir data/parquet --raw-dir data/raw"""
    load_config(config)
    raise NotImplementedYet("'mktpred validate' is not implemented yet")
