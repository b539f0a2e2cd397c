"""`mktpred collect`."""

from __future__ import annotations

from mktpred.cli.base import ConfigOption, command
from mktpred.config import load_config
from mktpred.errors import NotImplementedYet


@command("collect")
def collect_command(config: ConfigOption = None) -> None:
    """Record Coinbase market data (level2, ticker, trades, heartbeats) into raw JSONL segments, 24/7.

    Example: mktpred collect --products BTC-USD,ETH-USD --channels level2,ticker"""
    load_config(config)
    raise NotImplementedYet("'mktpred collect' is not implemented yet")
