"""The per-segment job API: what a worker is given (:class:`SegmentJob`) and what it returns.

Plain data, picklable for Dask; :func:`convert_segment` is the top-level function workers call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mktpred.config import Config


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
    #: the stem of the output files (default: the segment's stem); the driver picks another when a
    #: segment of the same name from another folder already owns it (:func:`output_stem`)
    out_stem: str | None = None


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
    quarantine: str | None = None  #: its quarantine file, relative to the store root (None: no bad line)
    #: frames converted although received more than a day after their own timestamp (a wrong
    #: clock, or a feed replaying past times such as ``mktpred simulate --start``)
    recv_ahead: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SegmentFailure:
    """A segment that could not be converted (the others go on)."""

    source: str
    error: str
    exit_code: int
