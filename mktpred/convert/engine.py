"""The conversion engine interface, engine selection, and the per-segment job API.

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
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from mktpred.config import Config
from mktpred.errors import GPUUnavailable, UsageError

ENGINE_NAMES = ("auto", "cpu", "gpu")
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


@dataclass(frozen=True)
class SegmentJob:
    """Everything a worker needs to convert one segment (plain data: picklable for Dask)."""

    source: str  #: absolute path of the segment
    store_root: str  #: the Parquet store
    engine: str = "cpu"  #: "cpu", "gpu", or "auto" (resolved by the worker that runs the job)
    #: whether a GPU engine may convert a file on the CPU when the GPU cannot (``auto``); under
    #: ``--engine gpu`` it may not: the segment fails instead
    cpu_fallback: bool = False
    config: Config = field(default_factory=Config)
    chunk_bytes: int = 64 * 2**20  #: input bytes per chunk on the careful path
    csv_dir: str | None = None  #: also write CSV there
    staging_dir: str | None = None  #: scratch space (default: ``<store>/_staging``)


@dataclass
class SegmentResult:
    """What converting one segment produced (becomes its manifest entry)."""

    source: str
    stem: str
    size: int
    mtime_ns: int
    hash: str
    rows: dict[str, int]
    lines: int
    invalid: int
    truncated: int
    outputs: list[str]  #: Parquet files, relative to the store root
    csv_outputs: list[str]
    engine: str  #: the engine that actually converted it: "cpu", "gpu", or "gpu+cpu" (part fell back)
    partial: bool
    seconds: float
    mode: str  #: "direct" (engine read the file), "chunked", or "careful" (bad lines isolated)
    invalid_reasons: dict[str, int] = field(default_factory=dict)
    #: what the engine reported for this segment (a CPU fallback and its reason, out-of-memory retries)
    engine_notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SegmentFailure:
    """A segment that could not be converted (the others go on)."""

    source: str
    error: str
    exit_code: int


def _gpu_module() -> Any:
    try:
        return importlib.import_module("mktpred.convert.gpu_engine")
    except ImportError:
        return None


def make_engine(name: str, cfg: Config, *, cpu_fallback: bool = False) -> ConversionEngine:
    """Instantiate an engine by name (in the process that will use it).

    "auto" is resolved here, in this process (see :func:`select_engine`).  ``cpu_fallback`` lets the
    GPU engine convert a file on the CPU when the GPU cannot (and report it); without it such a
    file fails with :class:`~mktpred.errors.EngineFailed`.
    """
    if name == "auto":
        return select_engine("auto", cfg)[0]
    if name == "cpu":
        from mktpred.convert.cpu_engine import CpuEngine

        return CpuEngine(threads=cfg.convert.threads)
    if name == "gpu":
        mod = _gpu_module()
        if mod is None:
            raise GPUUnavailable("GPU engine unavailable: mktpred.convert.gpu_engine is not installed")
        engine: ConversionEngine = mod.GpuEngine(cfg, cpu_fallback=cpu_fallback)
        return engine
    raise UsageError(f"unknown engine {name!r} (expected one of {', '.join(ENGINE_NAMES)})", where="--engine")


def select_engine(requested: str, cfg: Config) -> tuple[ConversionEngine, str]:
    """The engine to use for ``requested`` ("auto", "cpu" or "gpu") and a human reason.

    "auto" takes the GPU engine when its module imports and reports no problem, else the CPU
    engine; "gpu" raises :class:`GPUUnavailable` (exit 3) instead of falling back.  Under "auto"
    the GPU engine may convert a file on the CPU (reported per segment); under "gpu" it may not.
    """
    if requested not in ENGINE_NAMES:
        raise UsageError(f"unknown engine {requested!r} (expected one of {', '.join(ENGINE_NAMES)})",
                         where="--engine")
    if requested == "cpu":
        return make_engine("cpu", cfg), "CPU engine requested"
    mod = _gpu_module()
    if mod is None:
        reason = "the GPU engine is not part of this installation"
    else:
        try:
            reason = mod.gpu_unavailable_reason(cfg)
        except Exception as exc:  # a broken driver stack must not crash "auto"
            reason = f"GPU check failed: {exc}"
    if reason is None:
        return mod.GpuEngine(cfg, cpu_fallback=requested == "auto"), "GPU engine available"
    if requested == "gpu":
        raise GPUUnavailable(f"GPU engine unavailable: {reason}")
    return make_engine("cpu", cfg), f"CPU engine ({reason})"


def convert_segment(job: SegmentJob) -> SegmentResult:
    """Convert one segment into the store (a top-level function: Dask workers call it too).

    Writes the segment's Parquet files (temporary names, renamed into place at the end), its
    quarantine file and, when asked, its CSV files; the manifest is the driver's business.
    """
    from mktpred.convert.segment import run_job

    return run_job(job)
