"""Fault injection: the spec language (``drop:after=100``), its parsed form and the fired-fault log.

Spec strings, for ``--fault SPEC`` and :func:`parse_fault`:

=====================================  ==========================================================
``drop:after=N``                       abrupt TCP close (no close frame) after N frames
``drop:every=T``                       the same, T seconds after each connection opens
``close:code=C[,after=N]``             a WebSocket close frame with code C after N frames (0)
``stall:seconds=T[,after=N]``          keep the socket open and send nothing for T seconds
``gap:every=N[,size=K]``               skip K sequence numbers (1) every N numbered frames
``malformed:after=N``                  one non-JSON frame (a torn prefix of the next frame)
``duplicate:after=N``                  send frame N twice, same ``sequence_num``
``oversized:mb=M``                     pad the level2 snapshot with deep levels to >= M MiB
``slow:delay_ms=X``                    sleep X ms between frames
=====================================  ==========================================================

``after=`` faults fire once in total across the server (on the first connection that sends N
frames) unless ``times=K`` is given (``times=0``: on every connection).  ``every=`` faults repeat;
``oversized`` and ``slow`` apply to every connection unless ``times=K`` limits them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mktpred.errors import UsageError

#: kind -> (required keys, optional keys); exactly one of after/every for drop
_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "drop": ((), ("after", "every", "times")),
    "close": (("code",), ("after", "times")),
    "stall": (("seconds",), ("after", "times")),
    "gap": (("every",), ("size",)),
    "malformed": (("after",), ("times",)),
    "duplicate": (("after",), ("times",)),
    "oversized": (("mb",), ("times",)),
    "slow": (("delay_ms",), ()),
}
FAULT_KINDS = tuple(_KEYS)


def spec_syntax(kind: str) -> str:
    """How a ``kind`` spec is written, for help texts: ``close:code= (after=, times=)`` (the keys in
    parentheses are optional; ``drop`` takes one of after/every)."""
    required, optional = _KEYS[kind]
    if kind == "drop":
        required, optional = ("after", "every"), tuple(k for k in optional if k not in ("after", "every"))
        head = "|".join(f"{k}=" for k in required)
    else:
        head = ",".join(f"{k}=" for k in required)
    tail = f" ({', '.join(f'{k}=' for k in optional)})" if optional else ""
    return f"{kind}:{head}{tail}"
_INT_KEYS = ("after", "code", "size", "times")


@dataclass(frozen=True)
class FaultSpec:
    """One parsed fault; build it with :func:`parse_fault`."""

    kind: str
    after: int | None = None
    every: float | None = None  # seconds for drop, frames for gap
    code: int | None = None
    seconds: float | None = None
    size: int = 1
    mb: float | None = None
    delay_ms: float | None = None
    times: int | None = None
    text: str = ""

    @property
    def budget(self) -> int | None:
        """How many times it may fire across the server (``None``: no limit)."""
        if self.times is not None:
            return None if self.times == 0 else self.times
        if self.kind in ("oversized", "slow", "gap") or self.every is not None:
            return None
        return 1

    def __str__(self) -> str:
        return self.text or self.kind


@dataclass(frozen=True)
class FaultEvent:
    """A fault that fired: on which connection, what, after how many frames sent there."""

    conn_index: int
    kind: str
    at_frame: int
    detail: str


def _bad(spec: str, why: str) -> UsageError:
    return UsageError(f"bad fault spec {spec!r}: {why}", where="--fault")


def parse_fault(spec: str) -> FaultSpec:
    """Parse ``kind:key=value[,key=value...]``; :class:`~mktpred.errors.UsageError` when invalid."""
    kind, _, rest = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in _KEYS:
        raise _bad(spec, f"unknown kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
    required, optional = _KEYS[kind]
    values: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq:
            raise _bad(spec, f"expected key=value, got {item!r}")
        if key not in required + optional:
            raise _bad(spec, f"{kind} takes {', '.join(required + optional)}, not {key!r}")
        try:
            value = float(raw)
        except ValueError:
            raise _bad(spec, f"{key} must be a number, got {raw.strip()!r}") from None
        if not math.isfinite(value) or value < 0:
            raise _bad(spec, f"{key} must be a finite number >= 0, got {raw.strip()!r}")
        if key in _INT_KEYS and value != int(value):
            raise _bad(spec, f"{key} must be an integer, got {raw.strip()!r}")
        values[key] = value
    missing = [k for k in required if k not in values]
    if missing:
        raise _bad(spec, f"{kind} needs {', '.join(k + '=' for k in missing)}")
    if kind == "drop" and ("after" in values) == ("every" in values):
        raise _bad(spec, "drop needs exactly one of after=N or every=T")
    if "every" in values and values["every"] <= 0:
        raise _bad(spec, "every must be > 0")
    if kind == "gap" and values["every"] != int(values["every"]):
        raise _bad(spec, "gap every= counts frames: an integer")
    if kind == "gap" and values.get("size", 1) < 1:
        raise _bad(spec, "size must be >= 1")
    if kind == "close":
        code = int(values["code"])
        if not (code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011) or 3000 <= code <= 4999):
            raise _bad(spec, f"code {code} cannot be sent in a close frame (1000-1003, 1007-1011, 3000-4999)")
    if kind == "oversized" and values["mb"] <= 0:
        raise _bad(spec, "mb must be > 0")

    def as_int(key: str) -> int | None:
        return int(values[key]) if key in values else None

    return FaultSpec(
        kind=kind,
        after=as_int("after") if kind not in ("close", "stall") else int(values.get("after", 0)),
        every=values.get("every"),
        code=as_int("code"),
        seconds=values.get("seconds"),
        size=int(values.get("size", 1)),
        mb=values.get("mb"),
        delay_ms=values.get("delay_ms"),
        times=as_int("times"),
        text=spec.strip(),
    )
