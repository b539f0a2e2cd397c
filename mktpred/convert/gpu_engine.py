"""The cuDF conversion engine (``convert --engine gpu``).

The expensive step of a conversion -- parsing the nested JSON -- runs on the GPU:
``cudf.read_json(path, lines=True, engine="cudf", byte_range=(offset, size), dtype=<the full
nested schema>, prune_columns=True)`` over contiguous byte ranges of the file, so every range has
the same columns whatever it contains.  cuDF reads each line whose start falls in a range exactly
once across a tiling of contiguous ranges, so the ranges need no alignment.  The range size comes
from free GPU memory (the reader needs about 8-16x the bytes it reads; 12x is assumed) and is
halved and retried when the GPU runs out of memory.

The parsed columns come to the host as Arrow (``DataFrame.to_arrow``), are conformed to the same
frame columns the CPU engine's DuckDB query yields, and the events / updates / tickers / trades
lists are exploded and flattened by the CPU engine's Arrow code.  That step is zero-copy list
flattening plus the string -> float64 / timestamp casts, and doing it with the same Arrow kernels
is what makes the two engines' tables identical to the last bit (cuDF's own string -> float
conversion is not guaranteed to round like Arrow's).

Failures.  A range too big for free GPU memory is halved and retried down to ``min_range_bytes``.
Input cuDF rejects (a parse error: the data, not the GPU) raises :class:`EngineRejected`, so the
caller isolates and quarantines the bad lines and converts the rest on the GPU.  A failure of the
GPU itself (a CUDA error, out of memory at the smallest range; see :func:`is_device_failure`) is
where the two modes differ:

* ``cpu_fallback=False`` (``--engine gpu``): :class:`~mktpred.errors.EngineFailed` -- that segment
  fails with the reason; nothing is ever converted on the CPU behind the user's back;
* ``cpu_fallback=True`` (``--engine auto``): the file is converted by the CPU engine (same output,
  same rejections) if nothing was yielded from it yet, else :class:`EngineRejected` so the caller
  redoes the segment in chunks.  Either way :meth:`GpuEngine.take_usage` reports it, and the segment's
  result, the run summary, ``--json`` and the manifest name the engine that actually ran.

cuDF, CuPy and RMM are imported only when a :class:`GpuEngine` is created.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mktpred.coinbase.protocol import FRAME_FIELDS
from mktpred.config import Config
from mktpred.convert.engine import EVENT, ConversionEngine, EngineBatch, EngineRejected, EngineUsage
from mktpred.convert.records import RAW_REASON, TABLE_LISTS
from mktpred.errors import EngineFailed, GPUUnavailable
from mktpred.gpu import detect_gpu

GIB = 2**30
MIB = 2**20
#: device bytes the cuDF JSON reader needs per input byte (measured 8-16x; the middle is assumed)
READER_FACTOR = 12
#: bounds of one byte range: the ceiling also bounds host memory for the Arrow copy
MAX_RANGE_BYTES = 512 * MIB
MIN_RANGE_BYTES = 8 * MIB
#: frames per host-side batch (bounds the memory of the flattened tables)
SLICE_FRAMES = 262_144

#: a reader returns the nested columns of the lines starting in ``[offset, offset + size)``
RangeReader = Callable[[Path, int, int], pa.Table]

_S = pa.string()


def _as_read(kind: str | dict[str, Any]) -> pa.DataType:
    """Every value as its text (a dict: a list of structs); see ``coinbase.protocol.FRAME_FIELDS``."""
    return _S if isinstance(kind, str) else pa.list_(pa.struct([(k, _as_read(v)) for k, v in kind.items()]))


_FRAME_FIELDS = [(k, _as_read(v)) for k, v in FRAME_FIELDS.items()]
#: every key the engine reads, as read (numbers as their text: Arrow casts them strictly later)
RAW_SCHEMA = pa.schema([("recv_ns", _S), ("conn", _S), ("event", _S), ("raw", _S),
                        ("msg", pa.struct(_FRAME_FIELDS)), *_FRAME_FIELDS])
_DATA_CHANNELS = pa.array(list(TABLE_LISTS))


def gpu_unavailable_reason(cfg: Config) -> str | None:
    """Why the GPU engine cannot run here (``None`` when it can); never raises on a CPU machine."""
    status = detect_gpu(cfg)
    return None if status.usable else status.reason


# -- cuDF ---------------------------------------------------------------------------------------------

def _cudf_dtype(cudf: Any, t: pa.DataType) -> Any:
    """The cuDF dtype for an Arrow type of :data:`RAW_SCHEMA`."""
    if pa.types.is_struct(t):
        return cudf.StructDtype({t.field(i).name: _cudf_dtype(cudf, t.field(i).type) for i in range(t.num_fields)})
    if pa.types.is_list(t):
        return cudf.ListDtype(_cudf_dtype(cudf, t.value_type))
    return cudf.dtype(str)


class CudfRangeReader:
    """``cudf.read_json`` of one byte range with the full nested dtype, returned as host Arrow."""

    def __init__(self) -> None:
        try:
            import cudf
        except ImportError as exc:
            raise GPUUnavailable(f"GPU engine unavailable: cuDF does not import ({exc})") from None
        self.cudf = cudf
        try:  # let the GPU memory monitor show RMM's exact peak for this process (cheap counters)
            import rmm.statistics

            rmm.statistics.enable_statistics()
        except Exception:
            pass
        self.dtype = {f.name: _cudf_dtype(cudf, f.type) for f in RAW_SCHEMA}

    def __call__(self, path: Path, offset: int, size: int) -> pa.Table:
        df = self.cudf.read_json(str(path), lines=True, engine="cudf", dtype=self.dtype, prune_columns=True,
                                 byte_range=[offset, size], compression=None)
        try:
            table: pa.Table = df.to_arrow()
        finally:
            del df
        return table


def free_device_bytes() -> int | None:
    """Free memory of the current GPU (RMM where loaded, else NVML), ``None`` if unknown."""
    try:
        import rmm

        free, _total = rmm.mr.available_device_memory()
        return int(free)
    except Exception:
        pass
    status = detect_gpu()
    dev = status.device
    return dev.memory_free if dev is not None else None


def range_bytes_for(free: int | None, memory_fraction: float) -> int:
    """Bytes of input per range: a share of free device memory divided by the reader's appetite."""
    if not free:
        return 64 * MIB
    return max(MIN_RANGE_BYTES, min(MAX_RANGE_BYTES, int(free * memory_fraction / READER_FACTOR)))


def _size(n: int) -> str:
    return f"{n / MIB:,.0f} MiB" if n >= MIB else f"{n // 1024:,} KiB"


def is_out_of_memory(exc: BaseException) -> bool:
    """RMM raises MemoryError; some CUDA paths raise RuntimeError mentioning out of memory."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out_of_memory" in text or "out of memory" in text


#: words in an exception's type name that mark a failure of the GPU stack (CuPy's CUDARuntimeError,
#: cuda-python's CUDA errors, a missing CUDA library)
_DEVICE_TYPES = ("cuda", "dynamiclib", "nvrtc", "nvml")
#: phrases in a message that mark one (cuDF's own parse errors name ``..._gpu.cu`` source files, so
#: bare "gpu" or ".cu" would misclassify them)
_DEVICE_TEXT = ("cuda error", "cudaerror", "cuda_error", "cuda driver", "cuda runtime", "libcuda", "no cuda",
                "cuda-capable", "illegal memory access", "device-side assert")


def is_device_failure(exc: BaseException) -> bool:
    """The GPU or its libraries failed (as opposed to cuDF rejecting the input it was given)."""
    if is_out_of_memory(exc):
        return True
    name = type(exc).__name__.lower()
    text = str(exc).lower()
    return any(k in name for k in _DEVICE_TYPES) or any(k in text for k in _DEVICE_TEXT)


# -- host side: cuDF's columns -> the CPU engine's frame batch ---------------------------------------

def conform(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """``arr`` rebuilt with exactly the fields and types of ``target`` (missing fields are nulls)."""
    if pa.types.is_struct(target):
        if not pa.types.is_struct(arr.type):
            raise EngineRejected(f"expected an object, got {arr.type}")
        have = {arr.type.field(i).name for i in range(arr.type.num_fields)}
        children = [conform(pc.struct_field(arr, f.name), f.type) if f.name in have else pa.nulls(len(arr), f.type)
                    for f in target]
        return pa.StructArray.from_arrays(children, fields=list(target), mask=arr.is_null())
    if pa.types.is_list(target):
        if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
            raise EngineRejected(f"expected a list, got {arr.type}")
        lengths = pc.fill_null(pc.list_value_length(arr), 0).cast(pa.int64())
        offsets = pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum(lengths)]).cast(pa.int32())
        values = conform(arr.flatten(), target.value_type)
        return pa.ListArray.from_arrays(offsets, values, type=target, mask=arr.is_null())
    return arr if arr.type == target else pc.cast(arr, target)


def frames_batch(table: pa.Table) -> pa.RecordBatch:
    """The frame columns the CPU engine's query yields (``recv_ns, conn, channel, ts, seq, events,
    special``) from the nested columns of raw records, wrapped or bare."""
    n = table.num_rows
    cols: dict[str, pa.Array] = {}
    for f in RAW_SCHEMA:
        if f.name in table.column_names:
            cols[f.name] = conform(table.column(f.name).combine_chunks(), f.type)
        else:
            cols[f.name] = pa.nulls(n, f.type)
    msg = cols["msg"]

    def m(name: str) -> pa.Array:
        return pc.struct_field(msg, name)

    channel = pc.coalesce(m("channel"), m("type"), cols["channel"], cols["type"])
    ts = pc.coalesce(m("timestamp"), cols["timestamp"])
    events = pc.coalesce(m("events"), cols["events"])
    try:
        recv = pc.cast(cols["recv_ns"], pa.int64())
        seq = pc.cast(pc.coalesce(m("sequence_num"), cols["sequence_num"]), pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise EngineRejected(str(exc).splitlines()[0]) from None
    data = pc.fill_null(pc.is_in(channel, _DATA_CHANNELS), False)
    # The same CASE as the CPU engine's query, first match wins.
    cases = [
        (cols["event"].is_valid(), EVENT),
        (cols["raw"].is_valid(), RAW_REASON),
        (channel.is_null(), "frame has no channel"),
        (pc.and_(ts.is_null(), pc.or_(recv.is_null(), data)), "missing timestamp"),
        (pc.and_(events.is_null(), data), "data frame has no events"),
    ]
    special = pa.nulls(n, _S)
    for cond, label in reversed(cases):
        special = pc.if_else(cond, pa.scalar(label, _S), special)
    return pa.RecordBatch.from_arrays([recv, cols["conn"], channel, ts, seq, events, special],
                                      names=["recv_ns", "conn", "channel", "ts", "seq", "events", "special"])


# -- the engine ---------------------------------------------------------------------------------------

class GpuEngine(ConversionEngine):
    """cuDF parses, Arrow flattens (see the module docstring).

    ``reader``, ``range_bytes`` and ``min_range_bytes`` exist for tests: a stand-in reader lets the
    whole host side run on a machine without a GPU.
    """

    name = "gpu"
    reads_compressed = False  # byte ranges need the plain file; the caller decompresses

    def __init__(self, cfg: Config, *, cpu_fallback: bool = False, reader: RangeReader | None = None,
                 range_bytes: int | None = None, min_range_bytes: int = MIN_RANGE_BYTES) -> None:
        from mktpred.convert.cpu_engine import CpuEngine

        self.cfg = cfg
        #: whether a file the GPU cannot convert may be converted on the CPU (``auto``)
        self.cpu_fallback = cpu_fallback
        self.min_range_bytes = min_range_bytes
        self.reader: RangeReader = reader if reader is not None else CudfRangeReader()
        self._fixed_range = range_bytes
        #: what happened that a user should hear of (out-of-memory retries, files done on the CPU)
        self.notes: list[str] = []
        self._notes_taken = 0
        #: engines that converted something since the last :meth:`take_usage`
        self._used: set[str] = set()
        # The CPU engine's Arrow code builds the tables (identical output), and converts whole files
        # when cuDF cannot.
        self._cpu = CpuEngine(threads=cfg.convert.threads)

    def close(self) -> None:
        self._cpu.close()

    def _range_bytes(self) -> int:
        if self._fixed_range is not None:
            return self._fixed_range
        return range_bytes_for(free_device_bytes(), self.cfg.gpu.memory_fraction)

    def _note(self, message: str) -> None:
        self.notes.append(message)

    def take_usage(self) -> EngineUsage:
        """"gpu", "cpu" (every file fell back) or both since the last call, with the notes made."""
        engines = tuple(e for e in ("gpu", "cpu") if e in self._used) or ("gpu",)
        notes = tuple(self.notes[self._notes_taken:])
        self._used.clear()
        self._notes_taken = len(self.notes)
        return EngineUsage(engines, notes)

    def convert_file(self, path: Path) -> Iterator[EngineBatch]:
        size = os.path.getsize(path)
        step = self._range_bytes()
        offset = 0
        yielded = False
        while offset < size:
            length = min(step, size - offset)
            try:
                table = self.reader(path, offset, length)
                frames = frames_batch(table)
                del table
            except Exception as exc:
                if is_out_of_memory(exc) and step // 2 >= self.min_range_bytes:
                    step //= 2
                    self._note(f"GPU out of memory reading {path.name} at byte {offset:,}: "
                               f"range halved to {_size(step)}, retrying")
                    continue
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if not is_device_failure(exc):
                    # cuDF rejected the input: the data, not the GPU; the caller isolates the lines
                    raise EngineRejected(f"GPU engine rejected the input at byte {offset:,}: {why}") from None
                if not self.cpu_fallback:
                    raise EngineFailed(f"the GPU engine cannot convert {path.name} (at byte {offset:,}): "
                                       f"{type(exc).__name__}: {why}") from None
                if yielded:
                    raise EngineRejected(f"GPU engine failed at byte {offset:,}: {why}") from None
                self._note(f"{path.name}: converted on the CPU ({type(exc).__name__}: {why})")
                self._used.add("cpu")
                yield from self._cpu.convert_file(path)
                return
            self._used.add("gpu")
            for start in range(0, frames.num_rows, SLICE_FRAMES):
                # Rejections here are about the data, never the GPU: the caller isolates the lines.
                yield self._cpu.convert_frames(frames.slice(start, SLICE_FRAMES))
                yielded = True
            offset += length
