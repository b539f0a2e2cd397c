"""Progress reporting from the core to whoever renders it (the CLI draws Rich bars from these)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """A snapshot of how far a long job is.  Totals may be ``None`` when unknown."""

    stage: str
    files_done: int = 0
    files_total: int | None = None
    bytes_done: int = 0
    bytes_total: int | None = None
    rows: int = 0
    current: str = ""


ProgressCallback = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """The default callback: ignore progress."""
