"""`mktpred collect`: the 24/7 recorder (the core is :mod:`mktpred.collect`)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal, one_line
from mktpred.config import load_config
from mktpred.errors import Interrupted, MktpredError

if TYPE_CHECKING:
    from mktpred.collect import CollectResult, CollectStatus


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
    from mktpred.collect import Collector, CollectSettings

    cfg = load_config(config, {
        "collect.url": url, "collect.products": _csv(products), "collect.channels": _csv(channels),
        "paths.raw_dir": raw_dir, "collect.connections": connections,
        "collect.flush_interval_s": flush_interval, "collect.stall_timeout_s": stall_timeout,
        "collect.max_reconnects": max_reconnects,
    })
    settings = CollectSettings.from_config(cfg, duration_s=duration)
    term = Terminal()
    stop = threading.Event()
    collector = Collector(settings, stop=stop)
    try:
        with _stop_on_signals(stop) as caught, _status_view(term, cfg.collect.status_interval_s) as (show, every):
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
    return (f"collect: {result.frames:,} frames, {result.lines_written:,} lines, "
            f"{result.bytes_written / 2**20:,.1f} MiB in {len(result.segments)} sealed segment(s) "
            f"under {result.raw_dir}; reconnects {result.reconnects}, gaps {result.gaps}, stalls {result.stalls}"
            + (f", server errors {result.server_errors} (last: {one_line(result.last_server_error)})"
               if result.server_errors else "")
            + (f", repaired {len(result.repaired)} leftover .part ({result.trimmed_bytes} bytes trimmed)"
               if result.repaired else ""))


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[list[int]]:
    """SIGINT and SIGTERM set ``stop`` (the recorder then drains and seals); the list gets the signal."""
    caught: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT and signal.SIGINT in caught:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting (a .part left is repaired next start)
        caught.append(signum)
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def _status_view(term: Terminal, interval_s: float) -> Iterator[tuple[Callable[[CollectStatus], None], float]]:
    """A live panel on a terminal; otherwise notices as they come and a summary line every ``interval_s``."""
    if term.interactive:
        from rich.live import Live

        with Live(console=term.err, refresh_per_second=4, transient=False) as live:
            def show_live(st: CollectStatus) -> None:
                for level, msg in st.notices:
                    (term.warn if level == "warn" else term.info)(msg)
                live.update(_panel(st))

            yield show_live, 0.5
        return

    last = [time.monotonic()]

    def show_plain(st: CollectStatus) -> None:
        for level, msg in st.notices:
            (term.warn if level == "warn" else term.info)(msg)
        now = time.monotonic()
        if now - last[0] >= interval_s:
            last[0] = now
            term.info(_line(st))

    yield show_plain, min(1.0, interval_s)


def _age(age: float | None) -> str:
    return "-" if age is None else f"{age:.1f} s"


def _newest(st: CollectStatus) -> float | None:
    ages = [c.last_frame_age_s for c in st.connections if c.last_frame_age_s is not None]
    return min(ages) if ages else None


def _line(st: CollectStatus) -> str:
    """One summary line (not on a terminal)."""
    return (f"collect: {st.frames:,} frames ({st.frames_per_s:,.0f}/s, {st.rows_per_s:,.0f} rows/s), "
            f"{st.bytes_written / 2**20:,.1f} MiB written, {len(st.connections)} conn, "
            f"reconnects {st.reconnects}, gaps {st.gaps}, buffer {st.buffer_fill:.0%}, "
            f"last frame {_age(_newest(st))}, "
            f"segment {Path(st.segment).name if st.segment else '-'}")


def _panel(st: CollectStatus) -> Any:
    """The live panel: one row per connection and channel.  Every cell is plain :class:`Text`:
    channel names come from the network and paths from the user, never markup."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    t = Table(show_lines=False, header_style="bold", expand=False)
    for col in ("conn", "state", "channel", "frames", "frames/s", "rows/s", "MiB in", "reconnects", "gaps",
                "last frame"):
        t.add_column(col, justify="right" if col not in ("conn", "state", "channel") else "left")
    for c in st.connections:
        t.add_row(*map(Text, (f"{c.slot} {c.conn or ''}", c.state, "all", f"{c.frames:,}", f"{c.frames_per_s:,.0f}",
                              f"{c.rows_per_s:,.0f}", f"{c.bytes_received / 2**20:,.1f}", str(c.reconnects),
                              str(c.gaps), _age(c.last_frame_age_s))))
        for ch in c.channels:
            t.add_row(*map(Text, ("", "", one_line(ch.channel), f"{ch.frames:,}", f"{ch.frames_per_s:,.0f}",
                                  f"{ch.rows_per_s:,.0f}", "", "", "", "")))
    foot = Text(f"segment {Path(st.segment).name if st.segment else '-'} · written "
                f"{st.bytes_written / 2**20:,.1f} MiB, {st.lines_written:,} lines · sealed {st.segments_sealed} · "
                f"buffer {st.buffer_fill:.0%} of {st.buffer_capacity / 2**20:,.0f} MiB")
    if st.buffer_full_events:
        foot.append(" WRITER BEHIND", style="bold red")
    foot.append(f" · {st.elapsed_s:,.0f} s")
    return Panel(Group(t, foot), title="mktpred collect", expand=False)
