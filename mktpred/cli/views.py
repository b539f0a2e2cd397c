"""Views that several commands share, built on :mod:`mktpred.cli.output`: the signal handling and
live status view of the recorders (collect, serve, demo), the simulator's log handler (simulate,
demo) and the validation report (validate, demo).  Outside text stays plain, as in ``output``."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mktpred.cli.output import Terminal, fit_widths, one_line, print_fitted
from mktpred.wording import plural

if TYPE_CHECKING:
    from mktpred.collect import CollectStatus
    from mktpred.validate import ValidationReport


# -- views shared by several commands (collect and demo; simulate and demo; validate and demo) -------

@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[list[int]]:
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


class _WithNotices(Protocol):
    @property
    def notices(self) -> Sequence[tuple[str, str]]:
        """``(level, message)`` pairs to show once."""


StatusT = TypeVar("StatusT", bound=_WithNotices)


@contextmanager
def live_status_view(term: Terminal, interval_s: float, panel: Callable[[StatusT, int], Any],
                     line: Callable[[StatusT], str]) -> Iterator[tuple[Callable[[StatusT], None], float]]:
    """A live ``panel`` (given the status and the terminal's width) on a terminal; otherwise notices
    as they come and a ``line`` every ``interval_s``.  Yields the callback for each status snapshot
    and how often to send one."""
    if term.interactive:
        with Live(console=term.err, refresh_per_second=4, transient=False) as live:
            def show_live(st: StatusT) -> None:
                for level, msg in st.notices:
                    (term.warn if level == "warn" else term.info)(msg)
                live.update(panel(st, term.err.width))

            yield show_live, 0.5
        return

    last = [time.monotonic()]

    def show_plain(st: StatusT) -> None:
        for level, msg in st.notices:
            (term.warn if level == "warn" else term.info)(msg)
        now = time.monotonic()
        if now - last[0] >= interval_s:
            last[0] = now
            term.info(line(st))

    yield show_plain, min(1.0, interval_s)


def collect_status_view(term: Terminal,
                        interval_s: float) -> AbstractContextManager[tuple[Callable[[CollectStatus], None], float]]:
    """The recorder's live panel on a terminal; otherwise notices and a summary line every ``interval_s``."""
    return live_status_view(term, interval_s, _panel, _line)


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


def _panel(st: CollectStatus, width: int = 80) -> Any:
    """The live panel: a table of connections and a table of channels, each narrow enough for 80
    columns.  Every cell is plain :class:`Text`: channel names come from the network and paths from
    the user, never markup."""
    from rich.console import Group

    conns = Table(title=Text("connections"), header_style="bold", expand=False)
    for col in ("conn", "state", "MiB in", "reconnects", "gaps", "last frame"):
        conns.add_column(col, justify="left" if col in ("conn", "state") else "right")
    chans = Table(title=Text("channels"), header_style="bold", expand=False)
    for col in ("conn", "channel", "frames", "frames/s", "rows/s"):
        chans.add_column(col, justify="left" if col in ("conn", "channel") else "right")
    for c in st.connections:
        name = f"{c.slot} {c.conn or ''}".strip()
        conns.add_row(*map(Text, (name, c.state, f"{c.bytes_received / 2**20:,.1f}", str(c.reconnects),
                                  str(c.gaps), _age(c.last_frame_age_s))))
        chans.add_row(*map(Text, (name, "all", f"{c.frames:,}", f"{c.frames_per_s:,.0f}", f"{c.rows_per_s:,.0f}")))
        for ch in c.channels:
            chans.add_row(*map(Text, ("", one_line(ch.channel), f"{ch.frames:,}", f"{ch.frames_per_s:,.0f}",
                                      f"{ch.rows_per_s:,.0f}")))
    inner = width - 4  # the panel's border and padding
    for t in (conns, chans):
        widths = fit_widths(t, inner)
        for column, w in zip(t.columns, widths or (), strict=False):
            column.width, column.overflow = w, "fold"
    foot = Text(f"segment {Path(st.segment).name if st.segment else '-'} · written "
                f"{st.bytes_written / 2**20:,.1f} MiB, {plural(st.lines_written, 'line')} · "
                f"sealed {st.segments_sealed} · "
                f"buffer {st.buffer_fill:.0%} of {st.buffer_capacity / 2**20:,.0f} MiB")
    if st.buffer_full_events:
        foot.append(" WRITER BEHIND", style="bold red")
    foot.append(f" · {st.elapsed_s:,.0f} s")
    return Panel(Group(conns, chans, foot), title="mktpred collect", expand=False)


class TerminalLogHandler(logging.Handler):
    """Shows the simulator's log records (connections, faults) through the Terminal."""

    def __init__(self, term: Terminal) -> None:
        super().__init__(logging.INFO)
        self.term = term

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        (self.term.warn if record.levelno >= logging.WARNING else self.term.info)(message)


_STYLE = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]fail[/]"}
_LISTED = 10


def render_validation(term: Terminal, report: ValidationReport) -> None:
    rows = sum(report.rows.values())
    term.out.print(f"[bold]{escape(str(report.store))}[/]: {plural(report.files, 'file')}, "
                   f"{report.bytes / 2**30:,.2f} GiB, {plural(rows, 'row')}, checked in {report.elapsed_s:,.1f} s",
                   soft_wrap=True)
    term.table("checks", ["check", "status", "count", "details"],
               [(c.name, Text.from_markup(_STYLE[c.status.value]), c.count or "", c.details)
                for c in report.checks],
               to_stdout=True)
    if report.coverage:
        cov = Table(box=None, pad_edge=False, header_style="bold")
        for name, justify in (("product", "left"), ("date", "left"), ("UTC", "left"), ("rows", "right"),
                              ("conns", "right"), ("cover", "right"), ("silences", "left"),
                              ("no hb", "right")):
            cov.add_column(name, justify=justify)  # type: ignore[arg-type]
        for r in report.coverage:
            cov.add_row(r.product, r.date, f"{_hms(r.first_ns, r.date)}-{_hms(r.last_ns, r.date)}", f"{r.rows:,}",
                        str(r.conns), f"{r.coverage:.1%}",
                        f"{r.silences}, max {r.longest_silence_s:,.0f} s" if r.silences else "",
                        f"{r.missing_heartbeat_s:,} s" if r.missing_heartbeat_s else "")
        print_fitted(term.out, cov, "coverage per product and UTC day")
    for c in report.checks:
        if c.status.value != "pass" and c.locations:
            more = f" (first {_LISTED} of {c.count})" if c.count > _LISTED else ""
            term.out.print(f"[bold]{c.name}[/] {_STYLE[c.status.value]}{more}:")
            for loc in c.locations[:_LISTED]:
                term.out.print(f"  {loc}", markup=False, highlight=False, soft_wrap=True)
    if report.in_progress:
        term.out.print("[bold]in progress[/]:")
        for line in report.in_progress:
            term.out.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    verdict = {"pass": "[green]store OK[/]", "warn": "[yellow]store OK, with warnings[/]",
               "fail": "[bold red]store has problems[/]"}[report.status.value]
    term.out.print(verdict)


def _hms(ns: int, date: str) -> str:
    """``HH:MM:SS`` on ``date``; the next midnight shows as ``24:00:00``."""
    from mktpred.coinbase.timestamps import format_iso_ns

    iso = format_iso_ns(ns)
    return iso[11:19] if iso[:10] == date else "24:00:00"
