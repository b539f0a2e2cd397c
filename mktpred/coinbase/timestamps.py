"""Exact nanosecond RFC 3339 timestamps.

Coinbase sends ``2026-08-09T21:05:48.228568804Z`` with 0-9 fractional digits (trailing zeros
trimmed).  ``datetime.fromisoformat`` truncates to microseconds, so this module parses the
fraction itself and keeps every digit.
"""

from __future__ import annotations

import calendar
import re
import time

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})\Z"
)
NS_PER_S = 1_000_000_000


def parse_rfc3339_ns(text: str) -> int:
    """Nanoseconds since the Unix epoch for an RFC 3339 timestamp; ``ValueError`` if malformed."""
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    seconds = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    if not (1 <= int(mo) <= 12 and 1 <= int(d) <= 31 and int(h) < 24 and int(mi) < 60 and int(s) < 61):
        raise ValueError(f"not a valid date/time: {text!r}")
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        seconds -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    nanos = int(frac.ljust(9, "0")) if frac else 0
    return seconds * NS_PER_S + nanos


def format_rfc3339_ns(ns: int) -> str:
    """Coinbase's format: UTC, ``Z``, fraction with trailing zeros trimmed (none when whole)."""
    seconds, nanos = divmod(ns, NS_PER_S)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if nanos == 0:
        return base + "Z"
    return f"{base}.{nanos:09d}".rstrip("0") + "Z"


def format_iso_ns(ns: int) -> str:
    """ISO 8601 UTC with all nine fractional digits, for CSV exports (``...48.228568804Z``)."""
    seconds, nanos = divmod(ns, NS_PER_S)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def utc_date(ns: int) -> str:
    """``YYYY-MM-DD`` of a nanosecond timestamp, in UTC (the store's partition key)."""
    return time.strftime("%Y-%m-%d", time.gmtime(ns // NS_PER_S))
