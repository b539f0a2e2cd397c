"""Small NVML helpers shared by detection and the memory monitor.

``pynvml`` (from ``nvidia-ml-py``) is imported inside each function, never at module level, so
importing this module works on a machine without the bindings or a driver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

GIB = 2**30

REASON_NO_BINDINGS = "NVML bindings not installed (pip install nvidia-ml-py)"
REASON_NO_DRIVER = "no NVIDIA driver (NVML library not found)"
REASON_NO_DEVICE = "no GPU device"


def gib(n: int | None) -> float | None:
    """Bytes as GiB rounded to 3 places (None stays None)."""
    return None if n is None else round(n / GIB, 3)


def text(value: Any) -> str:
    """An NVML string (bytes in older bindings) as ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def optional(fn: Callable[..., Any], *args: Any) -> Any:
    """An NVML query that some devices do not support (returns None then)."""
    import pynvml

    try:
        return fn(*args)
    except pynvml.NVMLError:
        return None


def driver_unusable(exc: BaseException) -> str:
    """The reason given for an NVML failure other than a missing library."""
    return f"NVIDIA driver not usable ({exc})"


def init() -> tuple[Any, str | None, str | None]:
    """Import ``pynvml`` and call ``nvmlInit``: ``(pynvml, None, None)`` or ``(None, reason, kind)``.

    ``kind`` is "bindings" (pynvml missing), "library" (no driver) or "driver" (any other NVML
    failure).  On success the caller owns one ``nvmlShutdown`` (see :func:`shutdown`).
    """
    try:
        import pynvml
    except ImportError:
        return None, REASON_NO_BINDINGS, "bindings"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return None, REASON_NO_DRIVER, "library"
    except pynvml.NVMLError as exc:
        return None, driver_unusable(exc), "driver"
    return pynvml, None, None


def shutdown() -> None:
    """Balance one successful :func:`init`; an NVML error here is ignored."""
    import pynvml

    optional(pynvml.nvmlShutdown)


def device_uuid(handle: Any) -> str:
    """A device's UUID, or "" where NVML does not give one."""
    import pynvml

    return text(optional(pynvml.nvmlDeviceGetUUID, handle) or "")


def visible_indices(count: int, uuids: Sequence[str], environ: Mapping[str, str]) -> list[int]:
    """NVML indices CUDA will see, in CUDA's order, following ``CUDA_VISIBLE_DEVICES``.

    Entries are indices or (prefixes of) UUIDs; like CUDA, parsing stops at the first entry that
    names no device.  Unset means every device.
    """
    spec = environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return list(range(count))
    out: list[int] = []
    for raw in spec.split(","):
        entry = raw.strip()
        if entry.isdigit() and int(entry) < count:
            idx = int(entry)
        else:
            matches = [i for i, u in enumerate(uuids) if entry and u.startswith(entry)]
            if len(matches) != 1:
                break
            idx = matches[0]
        if idx in out:
            break
        out.append(idx)
    return out
