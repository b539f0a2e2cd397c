"""The conversion engine interface: what an engine is given and what it must yield.

An engine turns a file of raw-record lines into Arrow tables; everything around it -- reading and
chunking segments, quarantining bad lines, partitioned atomic Parquet output, CSV export, the
manifest -- is shared (:mod:`mktpred.convert.segment`, :mod:`mktpred.convert.runner`), so a
second engine only has to produce the same Arrow tables.

Contract of :meth:`ConversionEngine.convert_file`: given a file whose lines are all complete
(plain, or gzip/zstd when :attr:`ConversionEngine.reads_compressed`), yield
:class:`EngineBatch` objects in input order.  Each batch covers the next ``lines`` input records
(records the engine's reader skips, such as blank lines, are simply not counted; the caller then
notices that the count differs from the file's line count and takes the careful path).  Its
``tables`` hold rows of ``l2``, ``ticker``, ``trades`` and ``messages`` exactly as
:data:`mktpred.store.schemas.TABLE_SCHEMAS` says, in input order (frame order, then order inside a
frame).  Lines that are not frames are reported in ``special`` by their 0-based index inside the
batch: ``"event"`` for collector event records (the caller builds the ``events`` table from the
line text), anything else is a quarantine reason.  An engine raises :class:`EngineRejected` (or
any exception) when the input has something it cannot convert -- the caller then finds the bad
lines in Python and converts the rest.  An engine raises :class:`~mktpred.errors.EngineFailed` when it
itself failed (not the data) and may not fall back: the segment then fails with that reason.

An engine that may convert some files with another engine (the GPU engine under ``auto``) says so
through :meth:`ConversionEngine.take_usage`: which engines actually converted the files since the
last call, and why.  :func:`mktpred.convert.segment.run_job` puts that into each segment's result.

Engine selection is :mod:`mktpred.convert.factory`, the per-segment job API
:mod:`mktpred.convert.jobs`, the shared flatten step :mod:`mktpred.convert.flatten`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

#: the tables an engine produces (``events`` is built by the caller from event records)
ENGINE_TABLES = ("l2", "ticker", "trades", "messages")
EVENT = "event"


class EngineRejected(Exception):
    """The engine met input it cannot convert; the caller isolates and quarantines the bad lines."""


@dataclass
class EngineBatch:
    """Rows converted from the next ``lines`` records of a file."""

    tables: dict[str, pa.Table]
    lines: int
    special: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class EngineUsage:
    """Which engines actually converted the files of a stretch of work, and what happened."""

    engines: tuple[str, ...]  #: e.g. ``("gpu",)``, or ``("gpu", "cpu")`` after a fallback
    notes: tuple[str, ...] = ()  #: fallbacks with their reasons, out-of-memory retries

    @property
    def label(self) -> str:
        """``"gpu"``, ``"cpu"``, or ``"gpu+cpu"`` when part of the work fell back to the CPU."""
        return "+".join(self.engines)


class ConversionEngine(ABC):
    """Converts files of raw records to Arrow tables (see the module docstring for the contract)."""

    name: str = "?"
    #: whether :meth:`convert_file` reads ``.jsonl.gz`` / ``.jsonl.zst`` itself
    reads_compressed: bool = False

    @abstractmethod
    def convert_file(self, path: Path) -> Iterator[EngineBatch]:
        """Yield the batches of ``path`` in input order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections, device memory)."""

    def take_usage(self) -> EngineUsage:
        """What converted the files since the last call (and forget it); this engine, by default."""
        return EngineUsage((self.name,))
