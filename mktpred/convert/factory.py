"""Engine selection: ``auto``, ``cpu`` or ``gpu`` to a concrete :class:`ConversionEngine`."""

from __future__ import annotations

import importlib
from typing import Any

from mktpred.config import Config
from mktpred.convert.engine import ConversionEngine
from mktpred.errors import GPUUnavailable, UsageError

ENGINE_NAMES = ("auto", "cpu", "gpu")


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


