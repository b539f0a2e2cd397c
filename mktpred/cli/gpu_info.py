"""`mktpred gpu-info`."""

from __future__ import annotations

from mktpred.cli.base import ConfigOption, command
from mktpred.config import load_config
from mktpred.errors import NotImplementedYet


@command("gpu-info")
def gpu_info_command(config: ConfigOption = None) -> None:
    """Show the NVIDIA GPU(s), their memory and the cuDF stack, or why the CPU engine will run.

    Example: mktpred gpu-info --json"""
    load_config(config)
    raise NotImplementedYet("'mktpred gpu-info' is not implemented yet")
