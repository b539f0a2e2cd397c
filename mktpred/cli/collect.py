"""`mktpred collect`: the 24/7 recorder (the core is :mod:`mktpred.collect`)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal, collect_status_view, stop_on_signals
from mktpred.config import load_config
from mktpred.errors import Interrupted

if TYPE_CHECKING:
    pass


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


@command("collect")
def collect_command(
    url: Annotated[str | None, typer.Option(help="WebSocket endpoint (e.g. a local `mktpred simulate`).",
                                            show_default=False)] = None,
    products: Annotated[str | None, typer.Option(help="Comma-separated product ids.", show_default=False)] = None,
    channels: Annotated[str | None, typer.Option(help="Comma-separated channels (heartbeats is always added).",
                                                 show_default=False)] = None,
    raw_dir: Annotated[Path | None, typer.Option(help="Where segments are written.", show_default=False)] = None,
    connections: Annotated[int | None, typer.Option(help="Spread the products over N connections.",
                                                    show_default=False)] = None,
    flush_interval: Annotated[float | None, typer.Option(help="Flush + fsync period, seconds.",
                                                         show_default=False)] = None,
    stall_timeout: Annotated[float | None, typer.Option(help="Reconnect after this many silent seconds.",
                                                        show_default=False)] = None,
    duration: Annotated[float | None, typer.Option(help="Stop cleanly after S seconds (default: run until "
                                                        "stopped).", show_default=False)] = None,
    max_reconnects: Annotated[int | None, typer.Option(help="Give up (exit 3) after N reconnects in a row "
                                                            "(0 = never).", show_default=False)] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record Coinbase market data (level2, ticker, trades, heartbeats) into raw JSONL segments, 24/7.

    Reconnects forever, checks sequence numbers and rotates segments at UTC midnight.
    SIGTERM seals the segment and exits 0; Ctrl-C does the same and exits 130.

    Example: mktpred collect --products BTC-USD,ETH-USD --channels level2,ticker --duration 60"""
    from mktpred.collect import CollectSettings, run_collect

    cfg = load_config(config, {
        "collect.url": url, "collect.products": _csv(products), "collect.channels": _csv(channels),
        "paths.raw_dir": raw_dir, "collect.connections": connections,
        "collect.flush_interval_s": flush_interval, "collect.stall_timeout_s": stall_timeout,
        "collect.max_reconnects": max_reconnects,
    })
    settings = CollectSettings.from_config(cfg, duration_s=duration)
    term = Terminal()
    stop = threading.Event()
    with stop_on_signals(stop) as caught, collect_status_view(term, cfg.collect.status_interval_s) as (show, every):
        result = run_collect(settings, stop=stop, on_status=show, status_every_s=every)
    summary = result.to_dict()
    if as_json:
        term.json(summary)
    else:
        term.info(f"collect: {result.frames:,} frames, {result.lines_written:,} lines, "
                  f"{result.bytes_written / 2**20:,.1f} MiB in {len(result.segments)} sealed segment(s) "
                  f"under {result.raw_dir}; reconnects {result.reconnects}, gaps {result.gaps}, "
                  f"stalls {result.stalls}" + (f", repaired {len(result.repaired)} leftover .part "
                                               f"({result.trimmed_bytes} bytes trimmed)" if result.repaired else ""))
    if caught and caught[0] == signal.SIGINT:
        raise Interrupted("interrupted (segments sealed)")
