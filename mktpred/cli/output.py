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

import functools
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.live import Live
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

if TYPE_CHECKING:
    pass

from mktpred.progress import Progress as CoreProgress
from mktpred.progress import ProgressCallback

if TYPE_CHECKING:
    from mktpred.gpu.monitor import DeviceMemory, GPUMemoryMonitor, GpuMemorySample

GIB = 2**30
#: width of a memory bar in characters
MEMORY_BAR_WIDTH = 24


def _gib(n: int) -> str:
    return f"{n / GIB:.2f}"


def _pct(used: int, total: int) -> str:
    return f"{100 * used / total:.0f}%" if total else "?%"


def memory_bar(used: int, total: int, width: int = MEMORY_BAR_WIDTH) -> Text:
    """``used`` of ``total`` as a bar of block characters (readable without colour, too)."""
    share = min(max(used / total, 0.0), 1.0) if total > 0 else 0.0
    filled = round(share * width)
    style = "red" if share >= 0.9 else "yellow" if share >= 0.7 else "green"
    return Text.assemble(("█" * filled, style), ("░" * (width - filled), "dim"))


def gpu_memory_line(sample: GpuMemorySample) -> str:
    """The panel's figures as one plain line (off a terminal), in GiB."""
    line = (f"GPU memory: GPU {sample.device_index} ({sample.device_name}) {_gib(sample.used)} / "
            f"{_gib(sample.total)} GiB used ({_pct(sample.used, sample.total)}), peak {_gib(sample.peak)} GiB")
    if sample.rmm_peak is not None:
        line += f", RMM peak {_gib(sample.rmm_peak)} GiB"
    return line


def gpu_memory_panel(sample: GpuMemorySample | None) -> Panel:
    """The live GPU memory panel: device, used / total as a bar, peak so far, RMM's peak if counted."""
    if sample is None:
        return Panel(Text("waiting for the first sample"), title="GPU memory", expand=False)
    grid = Table.grid(padding=(0, 1))
    grid.add_column()
    grid.add_column()
    grid.add_row(Text("device"), Text(f"GPU {sample.device_index} ({sample.device_name})"))
    grid.add_row(Text("used"), memory_bar(sample.used, sample.total))
    grid.add_row(Text(""), Text(f"{_gib(sample.used)} / {_gib(sample.total)} GiB ({_pct(sample.used, sample.total)})"))
    grid.add_row(Text("peak"), Text(f"{_gib(sample.peak)} GiB"))
    if sample.rmm_peak is not None:
        grid.add_row(Text("RMM peak"), Text(f"{_gib(sample.rmm_peak)} GiB (this process)"))
    return Panel(grid, title="GPU memory", expand=False)


def memory_line(d: DeviceMemory) -> str:
    """One device's memory as a plain line (``gpu-info --watch`` off a terminal)."""
    return f"GPU {d.index} ({d.name}): {_gib(d.used)} / {_gib(d.total)} GiB used ({_pct(d.used, d.total)})"


def memory_bars(devices: Iterable[DeviceMemory]) -> Table:
    """A memory bar per device: index, name, used / total as a bar, the figures."""
    t = Table(title="memory", header_style="bold")
    for col in ("#", "name", "used", "GiB"):
        t.add_column(col)
    for d in devices:
        t.add_row(str(d.index), d.name, memory_bar(d.used, d.total),
                  f"{_gib(d.used)} / {_gib(d.total)} ({_pct(d.used, d.total)})")
    return t


class _ProgressWithPanel(Progress):
    """A Rich progress display with a panel beside the bars (re-rendered at every refresh)."""

    def __init__(self, *columns: Any, side: Callable[[], RenderableType], **kwargs: Any) -> None:
        self._side = side
        super().__init__(*columns, **kwargs)

    def get_renderables(self) -> Iterable[RenderableType]:
        grid = Table.grid(padding=(0, 2))
        grid.add_row(self.make_tasks_table(self.tasks), self._side())
        yield grid


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


def cell_text(value: Any) -> Text:
    """A table cell as plain :class:`Text` (never markup); a :class:`~pathlib.Path` is one unbreakable
    piece, so a table never wraps or cuts it."""
    if isinstance(value, Text):
        return value
    if isinstance(value, Path):
        return Text(str(value), no_wrap=True)
    return Text("" if value is None else str(value))


def _longest_piece(text: Text) -> int:
    """The widest part of ``text`` that may not be broken: a word, or a whole line when unbreakable."""
    lines = text.plain.splitlines() or [""]
    if text.no_wrap:
        return max(cell_len(line) for line in lines)
    return max((cell_len(word) for line in lines for word in line.split()), default=0)


def _widest_line(text: Text) -> int:
    return max((cell_len(line) for line in text.plain.splitlines()), default=0)


def _as_text(value: Any) -> Text:
    return value if isinstance(value, Text) else Text(str(value))


def _overhead(table: Table) -> int:
    """The cells a table spends on borders and padding besides its columns' content."""
    pad_left, pad_right = table.padding[3], table.padding[1]
    edges = 2 if table.box is not None and table.show_edge else 0
    separators = (len(table.columns) - 1) if table.box is not None else 0
    padding = (pad_left + pad_right) * len(table.columns)
    if not table.pad_edge:
        padding -= pad_left + pad_right
    return edges + separators + padding


def fit_widths(table: Table, width: int) -> list[int] | None:
    """Column widths that fit ``table`` in ``width`` cells with no word or path cut, or ``None``
    when even the narrowest layout (each column as wide as its longest word) is too wide.

    Rich alone shrinks a table that is too wide by cutting cells (``prod…``) and, when piped,
    crops lines at 80 columns; this picks widths under which it only wraps between words.
    """
    columns = table.columns
    if not columns:
        return []
    low = [max(_longest_piece(_as_text(c.header)), *(_longest_piece(_as_text(v)) for v in c._cells), 1)
           for c in columns]
    high = [max(_widest_line(_as_text(c.header)), *(_widest_line(_as_text(v)) for v in c._cells), lo)
            for c, lo in zip(columns, low, strict=True)]
    room = width - _overhead(table)
    if sum(high) <= room:
        return high
    if sum(low) > room:
        return None
    spare, slack = room - sum(low), sum(h - lo for h, lo in zip(high, low, strict=True))
    return [lo + (h - lo) * spare // slack for h, lo in zip(high, low, strict=True)]


def print_fitted(console: Console, table: Table, title: str | None = None) -> None:
    """Print ``table`` within the console's width, never cutting a word or a path.

    When its columns fit, each gets a fixed width (cells wrap between words); when they do not, the
    table is tried without borders, then turned on its side (a few rows only); failing all that,
    the rows are printed vertically, one ``column: value`` line per cell, as soft-wrapped lines that
    the terminal may wrap but nothing crops.  A title too wide for the table is a line of its own.
    """
    turned = _transposed(table)
    # the borders cost 3 cells a column: without them (columns two spaces apart) a table may fit
    candidates = [table, turned, _borderless(table), _borderless(turned)]
    for candidate in candidates:
        widths = None if candidate is None else fit_widths(candidate, console.width)
        if candidate is not None and widths is not None:
            table = candidate
            break
    else:
        _print_vertical(console, table, title)
        return
    for column, w in zip(table.columns, widths, strict=True):
        column.width = w
        column.overflow = "fold"
    table_width = sum(widths) + _overhead(table)
    if title is not None:
        heading = Text(title, style="italic")
        if cell_len(title) <= min(console.width, table_width):
            table.title = heading
        else:
            console.print(heading, soft_wrap=True)
    console.print(table)


#: a table too wide for the console is turned on its side (a column per row) when it has at most
#: this many rows; a longer one is printed vertically
_MAX_TRANSPOSED_ROWS = 4


def _transposed(table: Table) -> Table | None:
    """``table`` with rows and columns swapped: the first column's cells become the headers."""
    cells = [list(c._cells) for c in table.columns]
    n_rows = max((len(c) for c in cells), default=0)
    if not 0 < n_rows <= _MAX_TRANSPOSED_ROWS or len(cells) < 2:
        return None
    turned = Table(show_lines=False, header_style=table.header_style, box=table.box, pad_edge=table.pad_edge)
    turned.add_column(_as_text(table.columns[0].header))
    for i in range(n_rows):
        turned.add_column(_as_text(cells[0][i]))
    for column, values in zip(table.columns[1:], cells[1:], strict=True):
        turned.add_row(_as_text(column.header), *(_as_text(v) for v in values))
    return turned


def _borderless(table: Table | None) -> Table | None:
    """A copy of ``table`` without borders (``None`` for ``None`` or a table that has none)."""
    if table is None or table.box is None:
        return None
    copy = Table(show_lines=False, header_style=table.header_style, box=None, pad_edge=False)
    for column in table.columns:
        copy.add_column(_as_text(column.header), justify=column.justify)
    for row in zip(*(c._cells for c in table.columns), strict=True):
        copy.add_row(*row)
    return copy


def _print_vertical(console: Console, table: Table, title: str | None) -> None:
    """Each row as lines of ``column: value`` (a key/value table, whose first column has no header,
    as ``key  value``)."""
    if title is not None:
        console.print(Text(title, style="italic"), soft_wrap=True)
    headers = [_as_text(c.header).plain for c in table.columns]
    cells = [list(c._cells) for c in table.columns]
    n_rows = max((len(c) for c in cells), default=0)
    key_value = len(headers) == 2 and not headers[0]
    key_width = max((cell_len(_as_text(v).plain) for v in cells[0]), default=0) if key_value else 0
    for i in range(n_rows):
        row = [_as_text(col[i]) for col in cells]
        if key_value:
            console.print(Text.assemble(Text(row[0].plain.ljust(key_width), style="bold"), "  ", row[1]),
                          soft_wrap=True)
            continue
        console.print(Text.assemble((f"{headers[0]}: ", "bold"), row[0]), soft_wrap=True)
        for header, value in zip(headers[1:], row[1:], strict=True):
            if value.plain:
                console.print(Text.assemble("  ", (f"{header}: ", "bold"), value), soft_wrap=True)


def plain(value: Any) -> Any:
    """``value`` as renderable text that is never parsed as markup (a ``str`` becomes :class:`Text`;
    renderables such as tables and :class:`Text` pass through)."""
    return Text(value) if isinstance(value, str) else value


class Terminal:
    """The one owner of terminal output for a command."""

    def __init__(self, *, plain_interval_s: float = 5.0, err: Console | None = None,
                 out: Console | None = None) -> None:
        self.err = err if err is not None else Console(stderr=True, highlight=False)
        self.out = out if out is not None else Console(highlight=False)
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
        """A table whose cells are plain text; pass a :class:`Text` for a styled cell.

        It fits the console's width without cutting a word or a path (see :func:`print_fitted`).
        """
        t = Table(show_lines=False, header_style="bold")
        for c in columns:
            t.add_column(Text(c))
        for r in rows:
            t.add_row(*(cell_text(v) for v in r))
        print_fitted(self.out if to_stdout else self.err, t, title)

    def panel(self, body: Any, title: str, *, to_stdout: bool = False) -> None:
        (self.out if to_stdout else self.err).print(Panel(plain(body), title=Text(title), expand=False))

    # -- progress ---------------------------------------------------------------------------------
    #: below this many columns the bar drops the byte rate and the row rate, and shortens (all of it
    #: would not fit, and Rich would cut the figures to ``5.4/…``)
    NARROW = 120

    def _progress_columns(self) -> list[Any]:
        if self.err.width >= self.NARROW:
            return [TextColumn("{task.description}", style="bold", markup=False), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TextColumn("{task.fields[rows]:,} rows ({task.fields[rate]:,.0f}/s)"),
                    TimeElapsedColumn(), TimeRemainingColumn()]
        return [TextColumn("{task.description}", style="bold", markup=False), BarColumn(bar_width=10),
                DownloadColumn(), TextColumn("{task.fields[rows]:,} rows"), TimeElapsedColumn(),
                TimeRemainingColumn()]

    @contextmanager
    def progress(self, description: str, *, gpu: GPUMemoryMonitor | None = None) -> Iterator[ProgressCallback]:
        """A callback that renders :class:`mktpred.progress.Progress` events (bar or plain lines).

        With an active GPU memory ``gpu`` monitor, a terminal shows the live GPU memory panel beside
        the bar; elsewhere each progress line is followed by a plain line with the same figures.
        """
        watch = gpu if gpu is not None and gpu.active else None
        if self.interactive:
            kind: Callable[..., Progress] = Progress
            if watch is not None:
                def side() -> RenderableType:
                    return gpu_memory_panel(watch.latest)
                kind = functools.partial(_ProgressWithPanel, side=side)
            with kind(
                *self._progress_columns(),
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
            if watch is not None and watch.latest is not None:
                sys.stderr.write(gpu_memory_line(watch.latest) + "\n")

        yield plain

    # -- live device memory (gpu-info --watch) --------------------------------------------------
    @contextmanager
    def memory_watch(self, title: str) -> Iterator[Callable[[list[DeviceMemory]], None]]:
        """A callback that shows each refresh of device memory: a live panel on a terminal, else
        one plain line per device and refresh (on stdout: it is the command's data)."""
        if self.out.is_terminal:
            with Live(console=self.out, auto_refresh=False, transient=False) as live:
                def show(devices: list[DeviceMemory]) -> None:
                    live.update(Panel(memory_bars(devices), title=title, expand=False), refresh=True)

                yield show
            return

        def plain(devices: list[DeviceMemory]) -> None:
            for d in devices:
                sys.stdout.write(memory_line(d) + "\n")
            sys.stdout.flush()

        yield plain
