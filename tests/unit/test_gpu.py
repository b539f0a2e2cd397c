"""GPU detection, the cuDF probe and the GPU memory monitor (mktpred.gpu).

On a machine without an NVIDIA driver (CI, the development machine) the real no-driver path runs
unmocked.  The device-present logic, which cannot run there, is driven through a small stand-in
for ``pynvml`` (``FakeNvml``) and tiny fake ``cudf`` packages run in real subprocesses.
"""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import json
import os
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mktpred import gpu
from mktpred.config import load_config


def nvidia_driver_present() -> bool:
    """An independent look for an NVIDIA driver (not through mktpred.gpu)."""
    return Path("/proc/driver/nvidia").exists() or ctypes.util.find_library("nvidia-ml") is not None


needs_no_driver = pytest.mark.skipif(nvidia_driver_present(), reason="an NVIDIA driver is present")


def wait_for(cond: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll ``cond`` until true (generous bound for a loaded machine)."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class FakeNvml(types.ModuleType):
    """A stand-in for ``pynvml`` with devices whose used memory a test controls."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    class NVMLError_LibraryNotFound(NVMLError):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    def __init__(self, count: int = 2, total: int = 80 * 2**30) -> None:
        super().__init__("pynvml")
        self.count = count
        self.total = total
        self.used = [2**30] * count
        self.inits = 0

    def nvmlInit(self) -> None:
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.inits -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "555.42.06"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12050

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return f"Fake GPU {h}".encode()

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-{h}{h}{h}{h}-fake"

    def nvmlDeviceGetCudaComputeCapability(self, h: int) -> tuple[int, int]:
        return (9, 0)

    def nvmlDeviceGetMemoryInfo(self, h: int) -> types.SimpleNamespace:
        used = self.used[h]
        return types.SimpleNamespace(total=self.total, used=used, free=self.total - used)

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        raise self.NVMLError_NotSupported("not supported")

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return 41


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    """Install the stand-in NVML as ``pynvml`` for this test."""
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def fake_cudf(root: Path, body: str) -> Path:
    """Write a package ``cudf`` with ``body`` as its __init__ under ``root``; returns ``root``."""
    (root / "cudf").mkdir(parents=True)
    (root / "cudf" / "__init__.py").write_text('__version__ = "0.0-fake"\n' + body)
    return root


BROKEN = ("class Series:\n    def __init__(self, data):\n"
          "        raise RuntimeError('CUDA driver library not found (fake DynamicLibNotFoundError)')\n")
WORKING = ("class Series:\n    def __init__(self, data):\n        self.data = data\n"
           "    def sum(self):\n        return sum(self.data)\n")
HANGING = "import time\nclass Series:\n    def __init__(self, data):\n        time.sleep(600)\n"
CRASHING = "import os\nos._exit(3)\n"


def run_in_subprocess(code: str, pythonpath: Path) -> Any:
    """Run ``code`` (which prints one JSON document) with ``pythonpath`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the real path on this machine ------------------------------------------------------------------

@needs_no_driver
def test_detection_without_driver_is_unusable_with_reason() -> None:
    """With no NVIDIA driver, detection answers (no exception): unusable, 'no NVIDIA driver', CPU."""
    status = gpu.detect_gpu(load_config())
    assert status.usable is False
    assert status.reason == "no NVIDIA driver (NVML library not found)"
    assert status.engine_auto == "cpu"
    assert status.devices == ()
    assert status.device is None
    assert status.to_dict()["engine_auto"] == "cpu"


@needs_no_driver
def test_query_nvml_reports_missing_library() -> None:
    """NVML itself reports the missing library, in well under a second, without raising."""
    start = time.monotonic()
    report = gpu.query_nvml()
    assert time.monotonic() - start < 5
    assert report.available is False
    assert report.error_kind == "library"


def test_force_cpu_environment_opts_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """MKTPRED_FORCE_CPU=1 makes detection unusable with that reason on any machine."""
    monkeypatch.setenv("MKTPRED_FORCE_CPU", "1")
    status = gpu.detect_gpu(load_config())
    assert (status.usable, status.reason, status.forced_cpu) == (False, "disabled by MKTPRED_FORCE_CPU=1", True)


def test_force_cpu_zero_does_not_opt_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """MKTPRED_FORCE_CPU=0 is the same as unset."""
    monkeypatch.setenv("MKTPRED_FORCE_CPU", "0")
    assert gpu.forced_cpu_reason(load_config()) is None
    assert gpu.detect_gpu(load_config()).forced_cpu is False


def test_config_gpu_disabled_opts_out() -> None:
    """gpu.enabled = false in the configuration opts out with its own reason."""
    cfg = load_config(overrides={"gpu.enabled": False})
    status = gpu.detect_gpu(cfg)
    assert (status.usable, status.reason) == (False, "disabled by configuration (gpu.enabled = false)")


def test_stack_reports_real_versions() -> None:
    """The stack lists every package; installed ones carry their real version and import."""
    status = gpu.detect_gpu(include_stack=True)
    assert list(status.stack) == list(gpu.STACK)
    dask = status.stack["dask"]
    assert (dask.installed, dask.importable) == (True, True)
    assert dask.version == importlib.metadata.version("dask")
    assert status.stack["distributed"].version == importlib.metadata.version("distributed")
    for name, info in status.stack.items():
        if not info.installed:
            assert (info.importable, info.version) == (False, None), name


@needs_no_driver
def test_monitor_without_gpu_is_a_no_op() -> None:
    """On a machine without a driver the monitor starts no thread and reports 'no GPU'."""
    before = threading.active_count()
    with gpu.GPUMemoryMonitor("convert", interval_s=0.01) as mon:
        assert threading.active_count() == before
        sum(range(1000))
    r = mon.report
    assert r.available is False
    assert r.reason == "no NVIDIA driver (NVML library not found)"
    assert r.summary() == "convert: no GPU (no NVIDIA driver (NVML library not found))"
    d = r.to_dict()
    assert d["available"] is False and d["peak_gib"] is None and d["samples"] == 0
    assert mon.latest is None


def test_monitor_rejects_non_positive_interval() -> None:
    """A zero sampling period is a programming error."""
    with pytest.raises(ValueError):
        gpu.GPUMemoryMonitor("x", interval_s=0)


# -- pure logic -------------------------------------------------------------------------------------

def test_visible_indices_follows_cuda_rules() -> None:
    """CUDA_VISIBLE_DEVICES: indices and UUID prefixes, CUDA's order, stop at the first bad entry."""
    uuids = ["GPU-aaa", "GPU-bbb", "GPU-ccc"]
    assert gpu.visible_indices(3, uuids, {}) == [0, 1, 2]
    assert gpu.visible_indices(3, uuids, {"CUDA_VISIBLE_DEVICES": "2,0"}) == [2, 0]
    assert gpu.visible_indices(3, uuids, {"CUDA_VISIBLE_DEVICES": "GPU-b"}) == [1]
    assert gpu.visible_indices(3, uuids, {"CUDA_VISIBLE_DEVICES": "1,7,0"}) == [1]
    assert gpu.visible_indices(3, uuids, {"CUDA_VISIBLE_DEVICES": ""}) == []
    assert gpu.visible_indices(3, uuids, {"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert gpu.visible_indices(3, uuids, {"CUDA_VISIBLE_DEVICES": "GPU-"}) == []


def _device(index: int = 0, visible: bool = True) -> gpu.DeviceInfo:
    return gpu.DeviceInfo(index, "Fake", "GPU-x", "9.0", 8 * 2**30, 2**30, 7 * 2**30, None, None, visible)


@pytest.mark.parametrize(("forced", "nvml", "installed", "probe", "usable", "reason"), [
    ("disabled by MKTPRED_FORCE_CPU=1", gpu.NvmlReport(True, devices=(_device(),)), True,
     gpu.ProbeResult(True), False, "disabled by MKTPRED_FORCE_CPU=1"),
    (None, gpu.NvmlReport(False, gpu.REASON_NO_DRIVER, "library"), True, None, False,
     "no NVIDIA driver (NVML library not found)"),
    (None, gpu.NvmlReport(True), True, None, False, "no GPU device"),
    (None, gpu.NvmlReport(True, devices=(_device(visible=False),)), True, None, False,
     "no GPU device visible to CUDA (CUDA_VISIBLE_DEVICES hides all 1)"),
    (None, gpu.NvmlReport(True, devices=(_device(),)), False, None, False, "cuDF not installed"),
    (None, gpu.NvmlReport(True, devices=(_device(),)), True, gpu.ProbeResult(False, "RuntimeError: boom"),
     False, "cuDF installed but unusable: RuntimeError: boom"),
    (None, gpu.NvmlReport(True, devices=(_device(3),)), True,
     gpu.ProbeResult(True, packages={"cudf": gpu.PackageInfo("cuDF", True, True, "26.02.00")}),
     True, "cuDF 26.02.00 on GPU 3 (Fake)"),
])
def test_verdict_names_the_most_fundamental_gap(forced: str | None, nvml: gpu.NvmlReport, installed: bool,
                                               probe: gpu.ProbeResult | None, usable: bool, reason: str) -> None:
    """Each missing piece gives its own plain reason, checked in driver → device → cuDF order."""
    assert gpu.verdict(forced, nvml, installed, probe) == (usable, reason)


# -- the cuDF probe, for real, against fake cudf packages ------------------------------------------

PROBE = ("import json; from mktpred.gpu import probe_stack; r = probe_stack(['cudf', 'dask'], cudf_op=True, "
         "timeout_s={timeout}); print(json.dumps({{'ok': r.ok, 'error': r.error, "
         "'cudf': r.packages['cudf'].to_dict(), 'dask': r.packages['dask'].to_dict()}}))")


def test_probe_reports_cudf_installed_but_unusable(tmp_path: Path) -> None:
    """cuDF that imports but whose first operation raises (the no-driver case) is 'unusable' with the error."""
    doc = run_in_subprocess(PROBE.format(timeout=60), fake_cudf(tmp_path, BROKEN))
    assert doc["ok"] is False
    assert doc["error"] == "RuntimeError: CUDA driver library not found (fake DynamicLibNotFoundError)"
    assert doc["cudf"]["importable"] is True and doc["cudf"]["version"] == "0.0-fake"
    assert doc["dask"]["importable"] is True


def test_probe_accepts_working_cudf(tmp_path: Path) -> None:
    """A cuDF whose Series([1, 2, 3]).sum() is 6 passes the probe."""
    doc = run_in_subprocess(PROBE.format(timeout=60), fake_cudf(tmp_path, WORKING))
    assert (doc["ok"], doc["error"]) == (True, None)


def test_probe_times_out_on_a_hanging_cudf(tmp_path: Path) -> None:
    """A cuDF operation that hangs is killed at the timeout and reported, not waited on."""
    start = time.monotonic()
    doc = run_in_subprocess(PROBE.format(timeout=3), fake_cudf(tmp_path, HANGING))
    assert time.monotonic() - start < 60
    assert (doc["ok"], doc["error"]) == (False, "probe timed out after 3 s")


def test_probe_survives_a_crashing_import(tmp_path: Path) -> None:
    """A cuDF import that kills its process is reported with the exit code."""
    doc = run_in_subprocess(PROBE.format(timeout=60), fake_cudf(tmp_path, CRASHING))
    assert doc["ok"] is False
    assert doc["error"].startswith("probe exited with code 3")
    assert doc["cudf"]["importable"] is False


@needs_no_driver
def test_detection_with_cudf_but_no_driver_blames_the_driver(tmp_path: Path) -> None:
    """cuDF installed on a driverless machine: the reason is the driver; the stack shows cuDF importing."""
    code = ("import json; from mktpred.gpu import detect_gpu; s = detect_gpu(include_stack=True); "
            "print(json.dumps(s.to_dict()))")
    doc = run_in_subprocess(code, fake_cudf(tmp_path, BROKEN))
    assert doc["usable"] is False
    assert doc["reason"] == "no NVIDIA driver (NVML library not found)"
    assert doc["stack"]["cudf"]["installed"] is True
    assert doc["stack"]["cudf"]["version"] == "0.0-fake"


# -- device-present logic through the stand-in NVML ------------------------------------------------

def test_devices_listed_from_nvml(fake_nvml: FakeNvml) -> None:
    """Every NVML device is listed with its figures; unsupported queries become None; NVML is closed."""
    fake_nvml.used[1] = 3 * 2**30
    report = gpu.query_nvml({"CUDA_VISIBLE_DEVICES": "1"})
    assert report.available and report.driver_version == "555.42.06" and report.cuda_version == "12.5"
    d0, d1 = report.devices
    assert (d1.index, d1.name, d1.compute_capability, d1.temperature_c, d1.utilization_pct) == (
        1, "Fake GPU 1", "9.0", 41, None)
    assert (d1.memory_used, d1.memory_free) == (3 * 2**30, 77 * 2**30)
    assert (d0.visible, d1.visible) == (False, True)
    assert d1.to_dict()["memory_total_gib"] == 80.0
    assert fake_nvml.inits == 0


def test_detection_with_device_but_no_cudf(fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    """A device and no cuDF: 'cuDF not installed', devices still reported."""
    monkeypatch.setattr(gpu.detect, "_installed", lambda mod: False)
    status = gpu.detect_gpu()
    assert (status.usable, status.reason) == (False, "cuDF not installed")
    assert [d.name for d in status.devices] == ["Fake GPU 0", "Fake GPU 1"]


def test_detection_with_device_and_broken_cudf(fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    """A device plus a cuDF whose first operation fails runs the real probe: 'installed but unusable'."""
    root = fake_cudf(tmp_path, BROKEN)
    monkeypatch.syspath_prepend(str(root))
    env = {**os.environ, "PYTHONPATH": str(root)}
    status = gpu.detect_gpu(environ=env)
    assert status.usable is False
    assert status.reason == ("cuDF installed but unusable: RuntimeError: CUDA driver library not found "
                             "(fake DynamicLibNotFoundError)")


def test_detection_with_device_and_working_cudf(fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """A device plus a cuDF that works: usable, and auto picks the GPU engine."""
    root = fake_cudf(tmp_path, WORKING)
    monkeypatch.syspath_prepend(str(root))
    status = gpu.detect_gpu(environ={**os.environ, "PYTHONPATH": str(root)})
    assert (status.usable, status.reason, status.engine_auto) == (True, "cuDF 0.0-fake on GPU 0 (Fake GPU 0)",
                                                                  "gpu")


def test_monitor_tracks_before_peak_after(fake_nvml: FakeNvml) -> None:
    """The sampling thread catches a transient peak; before/after are the edges; live samples flow."""
    seen: list[gpu.GpuMemorySample] = []
    with gpu.GPUMemoryMonitor("convert", interval_s=0.005, on_sample=seen.append) as mon:
        fake_nvml.used[0] = 9 * 2**30
        wait_for(lambda: mon.latest is not None and mon.latest.used == 9 * 2**30)
        fake_nvml.used[0] = 2 * 2**30
        wait_for(lambda: mon.latest is not None and mon.latest.used == 2 * 2**30)
    r = mon.report
    assert (r.available, r.device_index, r.device_name) == (True, 0, "Fake GPU 0")
    assert (r.before, r.peak, r.after, r.total) == (2**30, 9 * 2**30, 2 * 2**30, 80 * 2**30)
    assert r.samples >= 3 and len(seen) == r.samples
    assert r.summary() == ("convert: GPU 0 (Fake GPU 0) memory before 1.00 GiB, peak 9.00 GiB, "
                           "after 2.00 GiB of 80.00 GiB")
    assert fake_nvml.inits == 0


def test_monitor_picks_first_visible_device(fake_nvml: FakeNvml) -> None:
    """Without an explicit device the monitor watches the first device CUDA sees."""
    with gpu.GPUMemoryMonitor("x", environ={"CUDA_VISIBLE_DEVICES": "1,0"}) as mon:
        pass
    assert mon.report.device_index == 1


def test_gpu_memory_uses_configured_interval(fake_nvml: FakeNvml) -> None:
    """gpu_memory(label, cfg) samples at gpu.monitor_interval_s."""
    cfg = load_config(overrides={"gpu.monitor_interval_s": 0.5})
    with gpu.gpu_memory("convert", cfg) as mon:
        assert mon.interval_s == 0.5
    assert mon.report.available is True
