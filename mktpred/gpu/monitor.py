"""The GPU memory monitor: device memory before, at peak and after a block of work, sampled live.

Where the figures come from sits behind one small interface, :class:`MemorySampler`: NVML is the
real source (:class:`NvmlSampler`); tests drive the monitor, the live panel and ``gpu-info --watch``
with a scripted sampler on machines without a GPU.  Where the sampler finds no device the monitor
is a no-op: no thread is started and its report says "no GPU".
"""

from __future__ import annotations

import os
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from mktpred.config import Config
from mktpred.gpu.nvml import (
    REASON_NO_DEVICE,
    device_uuid,
    driver_unusable,
    gib,
    init,
    shutdown,
    text,
    visible_indices,
)

#: at most this many (t, used) points of a run go into the ``--json`` report (evenly thinned)
TIMELINE_POINTS = 100


@dataclass(frozen=True)
class MemoryReading:
    """What a sampler reads for one device at one moment (bytes)."""

    used: int
    total: int


@dataclass(frozen=True)
class DeviceRef:
    """A device a sampler can read: NVML index and name."""

    index: int
    name: str


class MemorySampler(ABC):
    """A source of device memory figures (NVML for real; scripted in tests).

    The caller opens it once, reads as often as it likes, and closes it.  All methods but
    :meth:`open` are only called after :meth:`open` returned ``None``.
    """

    @abstractmethod
    def open(self) -> str | None:
        """Get ready: ``None`` when at least one device can be read, else why not."""

    @abstractmethod
    def devices(self) -> list[DeviceRef]:
        """The devices CUDA sees, in CUDA's order (the first is the one the GPU engine uses)."""

    @abstractmethod
    def read(self, index: int) -> MemoryReading | None:
        """Memory of device ``index`` now (``None`` when this read failed)."""

    def rmm_peak(self) -> int | None:
        """RMM's peak of this process's device allocations so far, where RMM counts them."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the source."""


class NvmlSampler(MemorySampler):
    """NVML device memory, plus RMM's statistics where cuDF (so RMM) is loaded in this process.

    NVML answers in milliseconds without creating a CUDA context.  RMM statistics are switched on
    when :meth:`open` finds RMM already imported; the GPU engine switches them on itself when it
    imports cuDF, and :meth:`rmm_peak` reads them whenever they are on.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, *, rmm: bool = True) -> None:
        self._env = os.environ if environ is None else environ
        self._want_rmm = rmm
        self._pynvml: Any = None
        self._handles: dict[int, Any] = {}
        self._devices: list[DeviceRef] = []
        self._rmm_pushed = False
        self._rmm_prior: Any = None

    def open(self) -> str | None:
        pynvml, reason, _ = init()
        if pynvml is None:
            return reason or REASON_NO_DEVICE
        self._pynvml = pynvml
        try:
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            visible = visible_indices(count, [device_uuid(h) for h in handles], self._env)
            if not visible:
                self.close()
                return REASON_NO_DEVICE
            self._handles = {i: handles[i] for i in visible}
            self._devices = [DeviceRef(i, text(pynvml.nvmlDeviceGetName(handles[i]))) for i in visible]
        except pynvml.NVMLError as exc:
            self.close()
            return driver_unusable(exc)
        if self._want_rmm:
            self._rmm_begin()
        return None

    def devices(self) -> list[DeviceRef]:
        return list(self._devices)

    def read(self, index: int) -> MemoryReading | None:
        pynvml = self._pynvml
        handle = self._handles.get(index)
        if pynvml is None or handle is None:
            return None
        try:
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        except pynvml.NVMLError:
            return None
        return MemoryReading(int(mem.used), int(mem.total))

    def rmm_peak(self) -> int | None:
        if "rmm" not in sys.modules:
            return None
        try:
            import rmm.statistics

            stats = rmm.statistics.get_statistics()  # None while statistics are off
            return None if stats is None else int(stats.peak_bytes)
        except Exception:  # an RMM without statistics: NVML figures only
            return None

    def _rmm_begin(self) -> None:
        """Count this block's RMM allocations where cuDF (so RMM) is already loaded in this process."""
        if "rmm" not in sys.modules:
            return
        try:
            import rmm.mr
            import rmm.statistics

            if rmm.statistics.push_statistics() is None:  # statistics were off: wrap the resource
                self._rmm_prior = rmm.mr.get_current_device_resource()
                rmm.statistics.enable_statistics()
            else:
                self._rmm_pushed = True
        except Exception:
            self._rmm_prior = None
            self._rmm_pushed = False

    def _rmm_end(self) -> None:
        try:
            import rmm.mr
            import rmm.statistics

            if self._rmm_prior is not None:
                rmm.mr.set_current_device_resource(self._rmm_prior)
            elif self._rmm_pushed:
                rmm.statistics.pop_statistics()
        except Exception:
            pass
        finally:
            self._rmm_prior = None
            self._rmm_pushed = False

    def close(self) -> None:
        if self._rmm_prior is not None or self._rmm_pushed:
            self._rmm_end()
        if self._pynvml is not None:
            shutdown()
            self._pynvml = None


@dataclass(frozen=True)
class GpuMemorySample:
    """Device memory at one moment (bytes), with the peak seen so far: what a live panel shows."""

    t: float  # seconds since the monitor started
    used: int
    total: int
    peak: int = 0  #: highest ``used`` so far, this sample included
    rmm_peak: int | None = None  #: RMM's peak of this process's allocations so far (where counted)
    device_index: int | None = None
    device_name: str | None = None


@dataclass(frozen=True)
class GpuMemoryReport:
    """Device memory before, at peak and after a block of work; ``available`` false on CPU machines."""

    label: str
    available: bool
    reason: str = ""
    device_index: int | None = None
    device_name: str | None = None
    total: int | None = None
    before: int | None = None
    peak: int | None = None
    after: int | None = None
    samples: int = 0
    duration_s: float = 0.0
    #: RMM's exact peak of this process's allocations inside the block (when cuDF/RMM was active)
    rmm_peak: int | None = None
    #: ``(seconds, used bytes)`` of the samples, thinned to at most :data:`TIMELINE_POINTS`
    timeline: tuple[tuple[float, int], ...] = ()

    def summary(self) -> str:
        """One human line (GiB)."""
        if not self.available:
            return f"{self.label}: no GPU ({self.reason})" if self.reason else f"{self.label}: no GPU"
        line = (f"{self.label}: GPU {self.device_index} ({self.device_name}) memory "
                f"before {gib(self.before):.2f} GiB, peak {gib(self.peak):.2f} GiB, "
                f"after {gib(self.after):.2f} GiB of {gib(self.total):.2f} GiB")
        if self.rmm_peak is not None:
            line += f"; RMM peak {gib(self.rmm_peak):.2f} GiB"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "available": self.available,
            "reason": self.reason,
            "device_index": self.device_index,
            "device_name": self.device_name,
            "total_gib": gib(self.total),
            "before_gib": gib(self.before),
            "peak_gib": gib(self.peak),
            "after_gib": gib(self.after),
            "rmm_peak_gib": gib(self.rmm_peak),
            "samples": self.samples,
            "duration_s": round(self.duration_s, 3),
            "timeline": [[round(t, 3), gib(used)] for t, used in self.timeline],
        }


def thin(points: list[tuple[float, int]], limit: int = TIMELINE_POINTS) -> tuple[tuple[float, int], ...]:
    """At most ``limit`` points, evenly spaced, first and last kept (the peak is in the report)."""
    if len(points) <= limit:
        return tuple(points)
    step = (len(points) - 1) / (limit - 1)
    return tuple(points[round(i * step)] for i in range(limit))


class GPUMemoryMonitor:
    """Record device memory before, after and at peak of a ``with`` block.

    A background thread reads the sampler (NVML unless another :class:`MemorySampler` is given)
    every ``interval_s``; the sampler's RMM peak, where it has one, is carried along.  Where the
    sampler finds no device (or ``enabled`` is false) nothing is started and the report says
    "no GPU".  ``on_sample`` (called from the sampling thread) and :attr:`latest` feed a live
    display.

    >>> with GPUMemoryMonitor("convert") as mon:
    ...     pass
    >>> mon.report.available in (True, False)
    True
    """

    def __init__(self, label: str = "gpu", interval_s: float = 0.25, *, device_index: int | None = None,
                 on_sample: Callable[[GpuMemorySample], None] | None = None,
                 environ: Mapping[str, str] | None = None, sampler: MemorySampler | None = None,
                 enabled: bool = True) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.label = label
        self.interval_s = interval_s
        self.device_index = device_index
        self.on_sample = on_sample
        self.enabled = enabled
        self.sampler: MemorySampler = sampler if sampler is not None else NvmlSampler(environ)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._open = False
        self._start = 0.0
        self._before: GpuMemorySample | None = None
        self._peak = 0
        self._rmm_peak: int | None = None
        self._count = 0
        self._points: list[tuple[float, int]] = []
        self._name: str | None = None
        self._reason = ""
        self.latest: GpuMemorySample | None = None
        self.report = GpuMemoryReport(label, False, "not started")

    @property
    def active(self) -> bool:
        """Whether a device is being sampled (false on machines without a GPU)."""
        return self._thread is not None

    # the sampling -------------------------------------------------------------------------------
    def _sample(self) -> GpuMemorySample | None:
        assert self.device_index is not None
        reading = self.sampler.read(self.device_index)
        if reading is None:
            return None
        rmm = self.sampler.rmm_peak()
        t = time.monotonic() - self._start
        with self._lock:
            self._peak = max(self._peak, reading.used)
            if rmm is not None:
                self._rmm_peak = max(self._rmm_peak or 0, rmm)
            self._count += 1
            self._points.append((t, reading.used))
            s = GpuMemorySample(t, reading.used, reading.total, self._peak, self._rmm_peak,
                                self.device_index, self._name)
            self.latest = s
        if self.on_sample is not None:
            try:
                self.on_sample(s)
            except Exception:  # a display failing must not end the measurement
                self.on_sample = None
        return s

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _open_sampler(self) -> bool:
        if not self.enabled:
            self._reason = "not monitored"
            return False
        reason = self.sampler.open()
        if reason is not None:
            self._reason = reason
            return False
        self._open = True
        devices = self.sampler.devices()
        if self.device_index is None:
            self.device_index = devices[0].index
        names = {d.index: d.name for d in devices}
        if self.device_index not in names:
            self._reason = f"no GPU device {self.device_index}"
            return False
        self._name = names[self.device_index]
        return True

    # the context manager ------------------------------------------------------------------------
    def __enter__(self) -> GPUMemoryMonitor:
        self._start = time.monotonic()
        if not self._open_sampler():
            self._close_sampler()
            self.report = GpuMemoryReport(self.label, False, self._reason)
            return self
        self._before = self._sample()
        self._thread = threading.Thread(target=self._run, name=f"gpu-monitor-{self.label}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._thread is None:
            self.report = GpuMemoryReport(self.label, False, self._reason,
                                          duration_s=time.monotonic() - self._start)
            return
        self._stop.set()
        self._thread.join()
        after = self._sample()
        self._close_sampler()
        last = after or self.latest or self._before
        total = last.total if last is not None else None
        self.report = GpuMemoryReport(
            self.label, True, "", self.device_index, self._name, total,
            self._before.used if self._before else None, self._peak if self._count else None,
            after.used if after else None, self._count, time.monotonic() - self._start, self._rmm_peak,
            thin(self._points))

    def _close_sampler(self) -> None:
        if self._open:
            self.sampler.close()
            self._open = False


@contextmanager
def gpu_memory(label: str, cfg: Config | None = None, *, enabled: bool = True,
               sampler: MemorySampler | None = None) -> Iterator[GPUMemoryMonitor]:
    """``with gpu_memory("convert", cfg) as mon:`` — a monitor at the configured sampling period."""
    interval = cfg.gpu.monitor_interval_s if cfg is not None else 0.25
    with GPUMemoryMonitor(label, interval, sampler=sampler, enabled=enabled) as mon:
        yield mon


@dataclass(frozen=True)
class DeviceMemory:
    """One device's memory at one refresh of ``gpu-info --watch``."""

    index: int
    name: str
    used: int
    total: int


def watch_memory(sampler: MemorySampler, interval_s: float,
                 on_refresh: Callable[[list[DeviceMemory]], None], *, refreshes: int | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> int:
    """Read every device every ``interval_s`` and hand the figures to ``on_refresh``.

    Runs until ``refreshes`` refreshes were made (forever when ``None``; Ctrl-C then raises
    :class:`KeyboardInterrupt` to the caller).  Returns the number of refreshes; 0 when the sampler
    finds no device (nothing is called then).  The sampler is opened and closed here.
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be > 0")
    if sampler.open() is not None:
        return 0
    done = 0
    try:
        devices = sampler.devices()
        while refreshes is None or done < refreshes:
            figures = []
            for d in devices:
                r = sampler.read(d.index)
                if r is not None:
                    figures.append(DeviceMemory(d.index, d.name, r.used, r.total))
            on_refresh(figures)
            done += 1
            if refreshes is None or done < refreshes:
                sleep(interval_s)
    finally:
        sampler.close()
    return done
