"""The GPU memory monitor: device memory before, at peak and after a block of work.

On a machine without a usable NVIDIA driver it is a no-op whose report says "no GPU".
"""

from __future__ import annotations

import os
import sys
import threading
import time
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


@dataclass(frozen=True)
class GpuMemorySample:
    """Device memory at one moment (bytes)."""

    t: float  # seconds since the monitor started
    used: int
    total: int


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
        }


class GPUMemoryMonitor:
    """Record device memory before, after and at peak of a ``with`` block.

    A background thread samples NVML every ``interval_s``; where RMM is already imported (cuDF is
    active in this process) RMM's statistics give the exact peak of this process's allocations.
    On a machine without a usable NVIDIA driver it is a no-op whose report says "no GPU".
    ``on_sample`` (called from the sampling thread) feeds a live display; :attr:`latest` too.

    >>> with GPUMemoryMonitor("convert") as mon:
    ...     pass
    >>> mon.report.available in (True, False)
    True
    """

    def __init__(self, label: str = "gpu", interval_s: float = 0.25, *, device_index: int | None = None,
                 on_sample: Callable[[GpuMemorySample], None] | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.label = label
        self.interval_s = interval_s
        self.device_index = device_index
        self.on_sample = on_sample
        self._env = os.environ if environ is None else environ
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._handle: Any = None
        self._nvml_open = False
        self._rmm_active = False
        self._rmm_prior: Any = None
        self._start = 0.0
        self._before: GpuMemorySample | None = None
        self._peak = 0
        self._count = 0
        self._name: str | None = None
        self._reason = ""
        self.latest: GpuMemorySample | None = None
        self.report = GpuMemoryReport(label, False, "not started")

    # the sampling -------------------------------------------------------------------------------
    def _sample(self) -> GpuMemorySample | None:
        import pynvml

        try:
            mem = pynvml.nvmlDeviceGetMemoryInfo(self._handle)
        except pynvml.NVMLError:
            return None
        s = GpuMemorySample(time.monotonic() - self._start, int(mem.used), int(mem.total))
        with self._lock:
            self._peak = max(self._peak, s.used)
            self._count += 1
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

    def _open(self) -> bool:
        pynvml, reason, _ = init()
        if pynvml is None:
            self._reason = reason or ""
            return False
        self._nvml_open = True
        try:
            count = pynvml.nvmlDeviceGetCount()
            if self.device_index is None:
                uuids = [device_uuid(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
                vis = visible_indices(count, uuids, self._env)
                if not vis:
                    self._reason = REASON_NO_DEVICE
                    return False
                self.device_index = vis[0]
            if not 0 <= self.device_index < count:
                self._reason = f"no GPU device {self.device_index}"
                return False
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.device_index)
            self._name = text(pynvml.nvmlDeviceGetName(self._handle))
        except pynvml.NVMLError as exc:
            self._reason = driver_unusable(exc)
            return False
        return True

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
            self._rmm_active = True
        except Exception:  # an RMM without statistics: NVML figures only
            self._rmm_active = False

    def _rmm_end(self) -> int | None:
        if not self._rmm_active:
            return None
        try:
            import rmm.mr
            import rmm.statistics

            if self._rmm_prior is not None:
                stats = rmm.statistics.get_statistics()
                rmm.mr.set_current_device_resource(self._rmm_prior)
            else:
                stats = rmm.statistics.pop_statistics()
            return None if stats is None else int(stats.peak_bytes)
        except Exception:
            return None
        finally:
            self._rmm_active = False
            self._rmm_prior = None

    # the context manager ------------------------------------------------------------------------
    def __enter__(self) -> GPUMemoryMonitor:
        self._start = time.monotonic()
        if not self._open():
            self._close_nvml()
            self.report = GpuMemoryReport(self.label, False, self._reason)
            return self
        self._before = self._sample()
        self._rmm_begin()
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
        rmm_peak = self._rmm_end()
        self._close_nvml()
        last = after or self._before
        total = last.total if last is not None else None
        self.report = GpuMemoryReport(
            self.label, True, "", self.device_index, self._name, total,
            self._before.used if self._before else None, self._peak if self._count else None,
            after.used if after else None, self._count, time.monotonic() - self._start, rmm_peak)

    def _close_nvml(self) -> None:
        if self._nvml_open:
            shutdown()
            self._nvml_open = False


@contextmanager
def gpu_memory(label: str, cfg: Config | None = None) -> Iterator[GPUMemoryMonitor]:
    """``with gpu_memory("convert", cfg) as mon:`` — a monitor at the configured sampling period."""
    interval = cfg.gpu.monitor_interval_s if cfg is not None else 0.25
    with GPUMemoryMonitor(label, interval) as mon:
        yield mon
