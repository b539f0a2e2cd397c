"""`mktpred collect`: the 24/7 recorder (the core is :mod:`mktpred.collect`)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mktpred.cli.base import ConfigOption, JsonOption, command, split_csv
from mktpred.cli.output import Terminal, one_line
from mktpred.cli.views import collect_status_view, stop_on_signals
from mktpred.config import load_config
from mktpred.errors import Interrupted, MktpredError
from mktpred.wording import plural

if TYPE_CHECKING:
    from mktpred.collect import CollectResult




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
    from mktpred.collect import Collector, CollectSettings

    cfg = load_config(config, {
        "collect.url": url, "collect.products": split_csv(products), "collect.channels": split_csv(channels),
        "paths.raw_dir": raw_dir, "collect.connections": connections,
        "collect.flush_interval_s": flush_interval, "collect.stall_timeout_s": stall_timeout,
        "collect.max_reconnects": max_reconnects,
    })
    settings = CollectSettings.from_config(cfg, duration_s=duration)
    term = Terminal()
    stop = threading.Event()
    collector = Collector(settings, stop=stop)
    try:
        with stop_on_signals(stop) as caught, collect_status_view(term, cfg.collect.status_interval_s) as (show, every):
            result = collector.run(show, every)
    except MktpredError:
        # A failed run still recorded something: --json shows what (its "error" says why); the
        # error line itself is printed by the command wrapper.
        if as_json and collector.result is not None:
            term.json(collector.result.to_dict())
        raise
    if as_json:
        term.json(result.to_dict())
    else:
        term.info(_final_line(result))
    if caught and caught[0] == signal.SIGINT:
        raise Interrupted("interrupted (segments sealed)")


def _final_line(result: CollectResult) -> str:
    """The one summary line of a run that succeeded."""
    return (f"collect: {plural(result.frames, 'frame')}, {plural(result.lines_written, 'line')}, "
            f"{result.bytes_written / 2**20:,.1f} MiB in {plural(len(result.segments), 'sealed segment')} "
            f"under {result.raw_dir}; reconnects {result.reconnects}, gaps {result.gaps}, stalls {result.stalls}"
            + (f", server errors {result.server_errors} (last: {one_line(result.last_server_error)})"
               if result.server_errors else "")
            + (f", repaired {len(result.repaired)} leftover .part ({result.trimmed_bytes} bytes trimmed)"
               if result.repaired else ""))
