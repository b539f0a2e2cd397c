"""`mktpred simulate`."""

from __future__ import annotations

from mktpred.cli.base import ConfigOption, command
from mktpred.config import load_config
from mktpred.errors import NotImplementedYet


@command("simulate")
def simulate_command(config: ConfigOption = None) -> None:
    """Run a Coinbase Advanced Trade-compatible exchange on localhost (market model, replay, faults).

    Example: mktpred simulate --port 8765 --products BTC-USD --fault drop:after=500"""
    load_config(config)
    raise NotImplementedYet("'mktpred simulate' is not implemented yet")
