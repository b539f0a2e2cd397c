"""GPU detection, device information and the GPU memory monitor.

Nothing here needs a GPU, CUDA or cuDF: on a CPU-only machine every function answers (``usable``
is false and ``reason`` says why) and the monitor is a no-op that reports "no GPU".

* :mod:`mktpred.gpu.detect` — can the GPU engine run here? (:func:`detect_gpu`, the cuDF probe);
* :mod:`mktpred.gpu.monitor` — device memory before, at peak and after a block of work, sampled
  live through one small interface (:class:`MemorySampler`; NVML for real, scripted in tests);
* :mod:`mktpred.gpu.nvml` — the small NVML helpers both share.
"""

from __future__ import annotations

from mktpred.gpu.detect import (
    FORCE_CPU_ENV,
    PROBE_TIMEOUT_S,
    REASON_CONFIG,
    REASON_CUDF_UNUSABLE,
    REASON_FORCED,
    REASON_NO_CUDF,
    STACK,
    DeviceInfo,
    GpuStatus,
    NvmlReport,
    PackageInfo,
    ProbeResult,
    detect_gpu,
    forced_cpu_reason,
    probe_stack,
    query_nvml,
    verdict,
)
from mktpred.gpu.monitor import (
    DeviceMemory,
    DeviceRef,
    GPUMemoryMonitor,
    GpuMemoryReport,
    GpuMemorySample,
    MemoryReading,
    MemorySampler,
    NvmlSampler,
    gpu_memory,
    watch_memory,
)
from mktpred.gpu.nvml import GIB, REASON_NO_BINDINGS, REASON_NO_DEVICE, REASON_NO_DRIVER, visible_indices

__all__ = [
    "FORCE_CPU_ENV", "GIB", "PROBE_TIMEOUT_S", "REASON_CONFIG", "REASON_CUDF_UNUSABLE", "REASON_FORCED",
    "REASON_NO_BINDINGS", "REASON_NO_CUDF", "REASON_NO_DEVICE", "REASON_NO_DRIVER", "STACK", "DeviceInfo",
    "DeviceMemory", "DeviceRef", "GPUMemoryMonitor", "GpuMemoryReport", "GpuMemorySample", "GpuStatus",
    "MemoryReading", "MemorySampler", "NvmlReport", "NvmlSampler", "PackageInfo", "ProbeResult", "detect_gpu",
    "forced_cpu_reason", "gpu_memory", "probe_stack", "query_nvml", "verdict", "visible_indices",
    "watch_memory",
]
