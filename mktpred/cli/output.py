"""All terminal output: the Rich consoles, progress bars, tables, panels and JSON summaries.

Status and progress go to stderr; data and ``--json`` go to stdout.  On a terminal progress is a
live Rich bar; elsewhere (CI, pipes, systemd) it is a plain line every few seconds.  Rich honours
``NO_COLOR`` itself.

Text that comes from the network, from files or from the user (server messages, paths, product
ids, config values) is never Rich markup: a ``[/]`` in a server's error message must print as is,
not crash the command.  Messages, table cells and panel bodies given as ``str`` are rendered as
plain :class:`~rich.text.Text`; styles are applied here, around the text, never inside it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from mktpred.progress import Progress as CoreProgress
from mktpred.progress import ProgressCallback


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "__fspath__"):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def one_line(message: str) -> str:
    """``message`` with line breaks, escape sequences and other control characters shown escaped
    (``\\n``, ``\\x1b``): an error or warning stays one line, and a server cannot move the cursor
    or recolour the terminal through it."""
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)


def plain(value: Any) -> Any:
    """``value`` as renderable text that is never parsed as markup (a ``str`` becomes :class:`Text`;
    renderables such as tables and :class:`Text` pass through)."""
    return Text(value) if isinstance(value, str) else value


class Terminal:
    """The one owner of terminal output for a command."""

    def __init__(self, *, plain_interval_s: float = 5.0) -> None:
        self.err = Console(stderr=True, highlight=False)
        self.out = Console(highlight=False)
        self.plain_interval_s = plain_interval_s

    @property
    def interactive(self) -> bool:
        return self.err.is_terminal

    # -- messages ---------------------------------------------------------------------------------
    def error(self, message: str) -> None:
        message = one_line(message)
        self.err.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True, highlight=False) \
            if self.interactive else sys.stderr.write(f"error: {message}\n")

    def warn(self, message: str) -> None:
        message = one_line(message)
        self.err.print(Text.assemble(("warning:", "yellow"), " ", message), soft_wrap=True, highlight=False) \
            if self.interactive else sys.stderr.write(f"warning: {message}\n")

    def info(self, message: str) -> None:
        self.err.print(message, soft_wrap=True, markup=False) \
            if self.interactive else sys.stderr.write(message + "\n")

    # -- data -------------------------------------------------------------------------------------
    def json(self, obj: Any) -> None:
        """One JSON object on stdout (the ``--json`` summary)."""
        sys.stdout.write(json.dumps(obj, default=_json_default, sort_keys=False) + "\n")
        sys.stdout.flush()

    def table(self, title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]],
              *, to_stdout: bool = False) -> None:
        """A table whose cells are plain text; pass a :class:`Text` for a styled cell."""
        t = Table(title=None if title is None else Text(title), show_lines=False, header_style="bold")
        for c in columns:
            t.add_column(Text(c))
        for r in rows:
            t.add_row(*(v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in r))
        (self.out if to_stdout else self.err).print(t)

    def panel(self, body: Any, title: str, *, to_stdout: bool = False) -> None:
        (self.out if to_stdout else self.err).print(Panel(plain(body), title=Text(title), expand=False))

    # -- progress ---------------------------------------------------------------------------------
    @contextmanager
    def progress(self, description: str) -> Iterator[ProgressCallback]:
        """A callback that renders :class:`mktpred.progress.Progress` events (bar or plain lines)."""
        if self.interactive:
            with Progress(
                TextColumn("{task.description}", style="bold", markup=False),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TextColumn("{task.fields[rows]:,} rows ({task.fields[rate]:,.0f}/s)"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.err,
                transient=False,
            ) as bar:
                files_task: TaskID = bar.add_task(description, total=None, rows=0, rate=0.0)
                start = time.monotonic()

                def update(p: CoreProgress) -> None:
                    elapsed = max(time.monotonic() - start, 1e-9)
                    bar.update(files_task, completed=p.bytes_done, total=p.bytes_total,
                               rows=p.rows, rate=p.rows / elapsed,
                               description=f"{description} {p.files_done}/{p.files_total or '?'} files")

                yield update
            return

        last = 0.0
        start = time.monotonic()

        def plain(p: CoreProgress) -> None:
            nonlocal last
            now = time.monotonic()
            done = p.files_total is not None and p.files_done >= p.files_total
            if now - last < self.plain_interval_s and not done:
                return
            last = now
            elapsed = max(now - start, 1e-9)
            mb = p.bytes_done / 2**20
            sys.stderr.write(
                f"{description}: {p.files_done}/{p.files_total if p.files_total is not None else '?'} files, "
                f"{mb:,.1f} MiB, {p.rows:,} rows, {p.rows / elapsed:,.0f} rows/s\n")

        yield plain
