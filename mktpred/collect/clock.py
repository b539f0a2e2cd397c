"""The clock the recorder reads: wall time for ``recv_ns`` and segment names, monotonic time for
timeouts.  Injected, so tests can put UTC midnight two seconds away instead of waiting for it."""

from __future__ import annotations

import time
from typing import Protocol

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S


class Clock(Protocol):
    """Where the recorder gets the time."""

    def now_ns(self) -> int:
        """Wall-clock time: nanoseconds since the Unix epoch, UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for timeouts and rates)."""
        ...


class SystemClock:
    """The real clock."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()


class OffsetClock:
    """The real clock shifted by a fixed offset: time flows normally, but the wall clock reads
    ``offset_ns`` later (put midnight a moment away in tests and demos)."""

    def __init__(self, offset_ns: int) -> None:
        self.offset_ns = offset_ns

    @classmethod
    def before_midnight(cls, seconds: float) -> OffsetClock:
        """A clock whose next UTC midnight is ``seconds`` from now."""
        now = time.time_ns()
        next_midnight = (now // NS_PER_DAY + 1) * NS_PER_DAY
        return cls(next_midnight - int(seconds * NS_PER_S) - now)

    def now_ns(self) -> int:
        return time.time_ns() + self.offset_ns

    def monotonic(self) -> float:
        return time.monotonic()


def next_midnight_ns(ns: int) -> int:
    """The first UTC midnight strictly after ``ns``."""
    return (ns // NS_PER_DAY + 1) * NS_PER_DAY


def utc_stamp(ns: int) -> str:
    """``20251122T140301Z``: the compact UTC second of ``ns`` (segment names, connection ids)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ns // NS_PER_S))
