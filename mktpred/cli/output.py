"""All terminal output: the Rich consoles, progress bars, tables, panels and JSON summaries.

Status and progress go to stderr; data and ``--json`` go to stdout.  On a terminal progress is a
live Rich bar; elsewhere (CI, pipes, systemd) it is a plain line every few seconds.  Rich honours
``NO_COLOR`` itself.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

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
        self.err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True, highlight=False) \
            if self.interactive else sys.stderr.write(f"error: {message}\n")

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]warning:[/] {message}", soft_wrap=True) \
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
        t = Table(title=title, show_lines=False, header_style="bold")
        for c in columns:
            t.add_column(c)
        for r in rows:
            t.add_row(*("" if v is None else str(v) for v in r))
        (self.out if to_stdout else self.err).print(t)

    def panel(self, body: Any, title: str, *, to_stdout: bool = False) -> None:
        (self.out if to_stdout else self.err).print(Panel(body, title=title, expand=False))

    # -- progress ---------------------------------------------------------------------------------
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
                TextColumn("[bold]{task.description}"),
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
