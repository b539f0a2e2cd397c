"""`mktpred demo`."""

from __future__ import annotations

from mktpred.cli.base import ConfigOption, command
from mktpred.config import load_config
from mktpred.errors import NotImplementedYet


@command("demo")
def demo_command(config: ConfigOption = None) -> None:
    """Run the whole chain offline: simulator, collect, convert, validate, and a summary.

    Example: mktpred demo --seconds 15"""
    load_config(config)
    raise NotImplementedYet("'mktpred demo' is not implemented yet")
