"""Stand-ins for the GPU side, so the code around it runs for real on a machine without a GPU.

* :class:`ArrowRangeReader` -- cuDF's ``read_json(byte_range=...)`` contract implemented with
  PyArrow's JSON reader and the same nested schema: a range owns the lines that start after its
  first byte, up to and including one that starts at its end.  It can fail on purpose (out of memory
  above a range size, a CUDA error from the n-th call, on files with a given name);
* :class:`ScriptedSampler` -- a :class:`mktpred.gpu.MemorySampler` that plays back a script of
  device memory readings (rising, peaking, falling), for the monitor, the panel and ``--watch``;
* :data:`ENGINES` / :func:`make_engine` -- every engine a test body can be parametrised over:
  ``cpu`` always, ``gpu-host`` (the GPU engine with the stand-in reader) always, ``gpu`` (cuDF on a
  real device) skipped with detection's reason where none is usable.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pj
import pytest

from mktpred.config import Config
from mktpred.convert.cpu_engine import CpuEngine
from mktpred.convert.engine import ConversionEngine
from mktpred.convert.gpu_engine import RAW_SCHEMA, GpuEngine, gpu_unavailable_reason
from mktpred.gpu import DeviceRef, MemoryReading, MemorySampler

_I64 = pa.int64()


def _as_read(t: pa.DataType) -> pa.DataType:
    """What the stand-in asks PyArrow for: sequence numbers and recv_ns as integers, like the JSON."""
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _I64 if f.name == "sequence_num" else _as_read(f.type)) for f in t])
    if pa.types.is_list(t):
        return pa.list_(_as_read(t.value_type))
    return t


STANDIN_SCHEMA = pa.schema([pa.field(f.name, _I64 if f.name in ("recv_ns", "sequence_num") else _as_read(f.type))
                            for f in RAW_SCHEMA])


class ArrowRangeReader:
    """cuDF's read_json(byte_range=...) contract, implemented with PyArrow on the CPU."""

    def __init__(self, oom_above: int | None = None, fail_from_call: int | None = None,
                 fail_on_name: str | None = None) -> None:
        self.oom_above = oom_above
        self.fail_from_call = fail_from_call
        self.fail_on_name = fail_on_name
        self.calls: list[tuple[int, int]] = []

    def __call__(self, path: Path, offset: int, size: int) -> pa.Table:
        self.calls.append((offset, size))
        if self.fail_on_name is not None and path.name == self.fail_on_name:
            raise RuntimeError("CUDA error: an illegal memory access was encountered (stand-in)")
        if self.oom_above is not None and size > self.oom_above:
            raise MemoryError("std::bad_alloc: out_of_memory: RMM failure (stand-in)")
        if self.fail_from_call is not None and len(self.calls) >= self.fail_from_call:
            raise RuntimeError("CUDA error: an illegal memory access was encountered (stand-in)")
        data = path.read_bytes()
        start = 0 if offset == 0 else data.find(b"\n", offset) + 1
        nl = data.find(b"\n", offset + size)
        end = len(data) if nl < 0 else nl + 1
        if (start == 0 and offset > 0) or start >= end:
            return STANDIN_SCHEMA.empty_table()
        opts = pj.ParseOptions(explicit_schema=STANDIN_SCHEMA, unexpected_field_behavior="ignore")
        return pj.read_json(io.BytesIO(data[start:end]), parse_options=opts,
                            read_options=pj.ReadOptions(block_size=64 * 2**20))


class ScriptedSampler(MemorySampler):
    """Plays back ``script`` (used bytes per read, one device) and then repeats its last reading.

    ``rmm`` gives RMM peaks alongside (same length as ``script``); ``devices`` lists more devices,
    each read as the script's value times ``index + 1``.  ``interrupt_after`` raises
    :class:`KeyboardInterrupt` on that read (Ctrl-C during ``--watch``).  ``no_device`` makes
    :meth:`open` refuse, as on a machine without a GPU.
    """

    def __init__(self, script: Sequence[int], total: int, *, rmm: Sequence[int | None] | None = None,
                 devices: Sequence[DeviceRef] = (DeviceRef(0, "Scripted GPU"),),
                 interrupt_after: int | None = None, no_device: str | None = None) -> None:
        self.script = list(script)
        self.total = total
        self.rmm = list(rmm) if rmm is not None else None
        self._devices = list(devices)
        self.interrupt_after = interrupt_after
        self.no_device = no_device
        self.reads = 0
        self.position = -1
        self.opened = self.closed = 0
        self.lock = threading.Lock()

    def open(self) -> str | None:
        self.opened += 1
        return self.no_device

    def devices(self) -> list[DeviceRef]:
        return list(self._devices)

    def read(self, index: int) -> MemoryReading | None:
        with self.lock:
            self.reads += 1
            if self.interrupt_after is not None and self.reads > self.interrupt_after:
                raise KeyboardInterrupt
            if index == self._devices[0].index:
                self.position = min(self.position + 1, len(self.script) - 1)
            return MemoryReading(self.script[max(self.position, 0)] * (index + 1), self.total)

    def rmm_peak(self) -> int | None:
        if self.rmm is None:
            return None
        return self.rmm[max(self.position, 0)]

    @property
    def exhausted(self) -> bool:
        """Every scripted reading was handed out at least once."""
        return self.position >= len(self.script) - 1

    def close(self) -> None:
        self.closed += 1


_GPU_REASON = gpu_unavailable_reason(Config())
#: every engine one test body can run over (``gpu`` skipped with the reason where none is usable)
ENGINES = ["cpu", "gpu-host",
           pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(_GPU_REASON is not None,
                                                                          reason=f"no usable GPU: {_GPU_REASON}")])]


def make_engine(name: str, cfg: Config | None = None) -> ConversionEngine:
    """An engine of :data:`ENGINES` (``gpu-host``: the GPU engine over the stand-in reader)."""
    cfg = cfg or Config()
    if name == "cpu":
        return CpuEngine(threads=cfg.convert.threads)
    if name == "gpu-host":
        return GpuEngine(cfg, reader=ArrowRangeReader(), range_bytes=64 * 1024)
    return GpuEngine(cfg)


class StandInGpuEngine(GpuEngine):
    """The GPU engine over :class:`ArrowRangeReader`, created the way ``select_engine`` creates it."""

    def __init__(self, cfg: Config, *, cpu_fallback: bool = False) -> None:
        super().__init__(cfg, cpu_fallback=cpu_fallback, reader=ArrowRangeReader(), range_bytes=256 * 1024)


def engine_option(name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``--engine`` value that runs engine ``name`` of :data:`ENGINES` through ``run_convert``/the CLI
    (for ``gpu-host``: detection says yes and the stand-in GPU engine is created)."""
    if name != "gpu-host":
        return name
    from mktpred.convert import gpu_engine

    monkeypatch.setattr(gpu_engine, "gpu_unavailable_reason", lambda cfg: None)
    monkeypatch.setattr(gpu_engine, "GpuEngine", StandInGpuEngine)
    return "gpu"
