"""The cuDF conversion engine (``convert --engine gpu``).

cuDF, CuPy and RMM are imported only inside this engine's methods, so importing this module costs
nothing on a CPU-only machine.
"""

from __future__ import annotations

from mktpred.config import Config
from mktpred.gpu import detect_gpu


def gpu_unavailable_reason(cfg: Config) -> str | None:
    """Why the GPU engine cannot run here (``None`` when it can); never raises on a CPU machine."""
    status = detect_gpu(cfg)
    return None if status.usable else status.reason
