"""`mktpred book`."""

from __future__ import annotations

from mktpred.cli.base import ConfigOption, command
from mktpred.config import load_config
from mktpred.errors import NotImplementedYet


@command("book")
def book_command(config: ConfigOption = None) -> None:
    """Rebuild top-N order-book snapshots from the l2 table and audit them against the ticker.

    Example: mktpred book --depth 10 --interval 100ms --audit"""
    load_config(config)
    raise NotImplementedYet("'mktpred book' is not implemented yet")
