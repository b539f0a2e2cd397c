"""GPU detection and device information.

Nothing here needs a GPU, CUDA or cuDF: on a CPU-only machine every function answers (``usable``
is false and ``reason`` says why).

Detection (:func:`detect_gpu`) follows what was measured about the cuDF stack:

* NVML (``pynvml`` from ``nvidia-ml-py``) answers in milliseconds without creating a CUDA context
  and raises ``NVMLError_LibraryNotFound`` when there is no driver, so it is asked first;
* cuDF must be installed (``importlib.util.find_spec``; it is never imported in this process);
* with no driver ``import cudf`` succeeds and only the first operation fails, so a tiny cuDF
  operation is run in a subprocess with a timeout: a broken CUDA library can neither hang nor
  crash the caller.

``MKTPRED_FORCE_CPU=1`` or ``gpu.enabled = false`` opt out.  NVML ignores ``CUDA_VISIBLE_DEVICES``;
devices hidden by it are listed with ``visible = false`` and never chosen.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from mktpred.config import Config
from mktpred.gpu.nvml import (
    REASON_NO_DEVICE,
    REASON_NO_DRIVER,
    device_uuid,
    driver_unusable,
    gib,
    init,
    optional,
    shutdown,
    text,
    visible_indices,
)

FORCE_CPU_ENV = "MKTPRED_FORCE_CPU"
#: a cold first ``import cudf`` loads several hundred MB of libraries; 60 s is generous
PROBE_TIMEOUT_S = 60.0
_PROBE_MARK = "MKTPRED_PROBE "

#: the software stack gpu-info reports: import name -> display name
STACK: dict[str, str] = {
    "cudf": "cuDF",
    "cupy": "CuPy",
    "rmm": "RMM",
    "pynvml": "nvidia-ml-py",
    "dask": "Dask",
    "distributed": "distributed",
    "dask_cuda": "dask-cuda",
}

REASON_NO_CUDF = "cuDF not installed"
REASON_CUDF_UNUSABLE = "cuDF installed but unusable"
REASON_FORCED = f"disabled by {FORCE_CPU_ENV}=1"
REASON_CONFIG = "disabled by configuration (gpu.enabled = false)"


@dataclass(frozen=True)
class DeviceInfo:
    """One NVIDIA GPU as NVML sees it (memory in bytes; :meth:`to_dict` gives GiB)."""

    index: int
    name: str
    uuid: str
    compute_capability: str | None
    memory_total: int
    memory_used: int
    memory_free: int
    utilization_pct: int | None
    temperature_c: int | None
    #: false when ``CUDA_VISIBLE_DEVICES`` hides it from CUDA (and so from cuDF)
    visible: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "compute_capability": self.compute_capability,
            "memory_total_gib": gib(self.memory_total),
            "memory_used_gib": gib(self.memory_used),
            "memory_free_gib": gib(self.memory_free),
            "utilization_pct": self.utilization_pct,
            "temperature_c": self.temperature_c,
            "visible": self.visible,
        }


@dataclass(frozen=True)
class NvmlReport:
    """What NVML said: the driver, the CUDA version it supports and the devices, or why not."""

    available: bool
    error: str | None = None
    #: "bindings" (pynvml missing), "library" (no driver), "driver" (any other NVML failure)
    error_kind: str | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    devices: tuple[DeviceInfo, ...] = ()


@dataclass(frozen=True)
class PackageInfo:
    """One package of the GPU/Dask stack: installed?  imports?  which version?"""

    name: str
    installed: bool
    importable: bool
    version: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProbeResult:
    """The subprocess that imports the stack and runs one tiny cuDF operation."""

    ok: bool | None  # None: the cuDF operation was not attempted
    error: str | None = None
    packages: Mapping[str, PackageInfo] = field(default_factory=dict)
    duration_s: float = 0.0


@dataclass(frozen=True)
class GpuStatus:
    """The answer to "can the GPU engine run here?", with everything gpu-info shows."""

    usable: bool
    reason: str
    devices: tuple[DeviceInfo, ...] = ()
    driver_version: str | None = None
    cuda_version: str | None = None
    stack: Mapping[str, PackageInfo] = field(default_factory=dict)
    forced_cpu: bool = False

    @property
    def engine_auto(self) -> str:
        """The engine ``convert --engine auto`` picks."""
        return "gpu" if self.usable else "cpu"

    @property
    def device(self) -> DeviceInfo | None:
        """The device the GPU engine uses (the first visible one)."""
        return next((d for d in self.devices if d.visible), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "usable": self.usable,
            "reason": self.reason,
            "engine_auto": self.engine_auto,
            "forced_cpu": self.forced_cpu,
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "devices": [d.to_dict() for d in self.devices],
            "stack": {k: v.to_dict() for k, v in self.stack.items()},
        }


# -- NVML -------------------------------------------------------------------------------------------

def _cuda_version(v: int | None) -> str | None:
    return None if not v else f"{v // 1000}.{(v % 1000) // 10}"


def query_nvml(environ: Mapping[str, str] | None = None) -> NvmlReport:
    """Ask NVML for the driver and every device.  Never raises; no CUDA context is created."""
    env = os.environ if environ is None else environ
    pynvml, reason, kind = init()
    if pynvml is None:
        return NvmlReport(False, reason, kind)
    try:
        driver_raw = optional(pynvml.nvmlSystemGetDriverVersion)
        driver = None if driver_raw is None else text(driver_raw)
        cuda = _cuda_version(optional(pynvml.nvmlSystemGetCudaDriverVersion))
        count = pynvml.nvmlDeviceGetCount()
        raw: list[dict[str, Any]] = []
        for i in range(count):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            cc = optional(pynvml.nvmlDeviceGetCudaComputeCapability, h)
            rates = optional(pynvml.nvmlDeviceGetUtilizationRates, h)
            util = None if rates is None else rates.gpu
            temp = optional(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU)
            raw.append(dict(
                index=i, name=text(pynvml.nvmlDeviceGetName(h)), uuid=device_uuid(h),
                compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
                memory_total=int(mem.total), memory_used=int(mem.used), memory_free=int(mem.free),
                utilization_pct=None if util is None else int(util),
                temperature_c=None if temp is None else int(temp)))
        visible = set(visible_indices(count, [r["uuid"] for r in raw], env))
        devices = tuple(DeviceInfo(**r, visible=r["index"] in visible) for r in raw)
        return NvmlReport(True, driver_version=driver, cuda_version=cuda, devices=devices)
    except pynvml.NVMLError as exc:
        return NvmlReport(False, driver_unusable(exc), "driver")
    finally:
        shutdown()


# -- the cuDF probe ---------------------------------------------------------------------------------

_PROBE_SCRIPT = r"""
import importlib, json, sys
modules, do_op = json.loads(sys.argv[1]), sys.argv[2] == "1"
def err(e):
    lines = [l for l in str(e).strip().splitlines() if l.strip()]
    return (type(e).__name__ + (": " + lines[0].strip() if lines else ""))[:300]
out = {"modules": {}, "op": None}
for name in modules:
    try:
        m = importlib.import_module(name)
        out["modules"][name] = {"importable": True, "version": str(getattr(m, "__version__", "") or "") or None, "error": None}
    except BaseException as e:
        out["modules"][name] = {"importable": False, "version": None, "error": err(e)}
if do_op:
    try:
        import cudf
        total = int(cudf.Series([1, 2, 3]).sum())
        if total != 6:
            raise RuntimeError("1 + 2 + 3 gave %r" % total)
        out["op"] = {"ok": True, "error": None, "version": str(getattr(cudf, "__version__", ""))}
    except BaseException as e:
        out["op"] = {"ok": False, "error": err(e)}
sys.stdout.write("\nMKTPRED_PROBE " + json.dumps(out) + "\n")
"""


def _dist_version(module: str) -> str | None:
    """The installed distribution version for an import name, without importing it."""
    dists = importlib.metadata.packages_distributions().get(module, [])
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def probe_stack(modules: Sequence[str] = (), *, cudf_op: bool = False, timeout_s: float = PROBE_TIMEOUT_S,
                environ: Mapping[str, str] | None = None) -> ProbeResult:
    """Import ``modules`` and (with ``cudf_op``) run ``cudf.Series([1, 2, 3]).sum()`` in a subprocess.

    Modules that are not installed are reported without starting anything; the subprocess is only
    started when there is something to import.  Never raises.
    """
    env = dict(os.environ if environ is None else environ)
    packages: dict[str, PackageInfo] = {}
    to_import = []
    for mod in modules:
        if _installed(mod):
            to_import.append(mod)
        else:
            packages[mod] = PackageInfo(STACK.get(mod, mod), installed=False, importable=False)
    if not to_import and not cudf_op:
        return ProbeResult(None, packages=packages)
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE_SCRIPT, json.dumps(to_import), "1" if cudf_op else "0"],
            capture_output=True, text=True, timeout=timeout_s, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        elapsed = time.monotonic() - start
        for mod in to_import:
            packages[mod] = PackageInfo(STACK.get(mod, mod), True, False, _dist_version(mod),
                                        f"probe timed out after {timeout_s:g} s")
        return ProbeResult(False if cudf_op else None, f"probe timed out after {timeout_s:g} s",
                           packages, elapsed)
    except OSError as exc:
        return ProbeResult(False if cudf_op else None, f"probe could not start: {exc}", packages)
    elapsed = time.monotonic() - start
    doc: dict[str, Any] | None = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_PROBE_MARK):
            doc = json.loads(line[len(_PROBE_MARK):])
            break
    if doc is None:
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        why = f"probe exited with code {proc.returncode}" + (f": {tail[-1].strip()[:300]}" if tail else "")
        for mod in to_import:
            packages[mod] = PackageInfo(STACK.get(mod, mod), True, False, _dist_version(mod), why)
        return ProbeResult(False if cudf_op else None, why, packages, elapsed)
    for mod, info in doc["modules"].items():
        packages[mod] = PackageInfo(STACK.get(mod, mod), True, bool(info["importable"]),
                                    info["version"] or _dist_version(mod), info["error"])
    op = doc.get("op")
    ok = None if op is None else bool(op["ok"])
    ordered = {m: packages[m] for m in modules if m in packages}
    return ProbeResult(ok, None if op is None else op.get("error"), ordered, elapsed)


# -- detection --------------------------------------------------------------------------------------

def forced_cpu_reason(cfg: Config | None, environ: Mapping[str, str] | None = None) -> str | None:
    """Why the GPU is switched off by the user (``MKTPRED_FORCE_CPU``, ``gpu.enabled``), or None."""
    env = os.environ if environ is None else environ
    if env.get(FORCE_CPU_ENV, "").strip().lower() not in ("", "0", "false", "no", "off"):
        return REASON_FORCED
    if cfg is not None and not cfg.gpu.enabled:
        return REASON_CONFIG
    return None


def verdict(forced: str | None, nvml: NvmlReport, cudf_installed: bool,
            probe: ProbeResult | None) -> tuple[bool, str]:
    """Combine the facts into ``(usable, reason)``; the most fundamental missing piece is named."""
    if forced:
        return False, forced
    if not nvml.available:
        return False, nvml.error or REASON_NO_DRIVER
    if not nvml.devices:
        return False, REASON_NO_DEVICE
    visible = [d for d in nvml.devices if d.visible]
    if not visible:
        return False, f"{REASON_NO_DEVICE} visible to CUDA (CUDA_VISIBLE_DEVICES hides all {len(nvml.devices)})"
    if not cudf_installed:
        return False, REASON_NO_CUDF
    if probe is None or probe.ok is None:
        return False, f"{REASON_CUDF_UNUSABLE}: not probed"
    if not probe.ok:
        return False, f"{REASON_CUDF_UNUSABLE}: {probe.error}"
    cudf = probe.packages.get("cudf")
    version = f" {cudf.version}" if cudf and cudf.version else ""
    return True, f"cuDF{version} on GPU {visible[0].index} ({visible[0].name})"


def detect_gpu(cfg: Config | None = None, *, include_stack: bool = False,
               environ: Mapping[str, str] | None = None,
               probe_timeout_s: float = PROBE_TIMEOUT_S) -> GpuStatus:
    """Can the GPU engine run here?  Never raises on a machine without a GPU.

    ``include_stack`` also imports every package of :data:`STACK` (in the same subprocess) so
    ``gpu-info`` can show versions; detection alone only starts a subprocess where a driver, a
    device and an installed cuDF make the answer depend on it.
    """
    env = os.environ if environ is None else environ
    forced = forced_cpu_reason(cfg, env)
    nvml = query_nvml(env)
    cudf_installed = _installed("cudf")
    want_op = (forced is None and nvml.available and any(d.visible for d in nvml.devices)
               and cudf_installed)
    modules = list(STACK) if include_stack else (["cudf"] if want_op else [])
    probe = probe_stack(modules, cudf_op=want_op, timeout_s=probe_timeout_s, environ=env) \
        if (modules or want_op) else None
    usable, reason = verdict(forced, nvml, cudf_installed, probe)
    stack = dict(probe.packages) if probe and include_stack else {}
    return GpuStatus(usable, reason, nvml.devices, nvml.driver_version, nvml.cuda_version, stack,
                     forced_cpu=forced is not None)

