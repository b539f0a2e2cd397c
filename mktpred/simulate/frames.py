"""Outgoing frames: sequence-number templates, RFC 6455 framing and the fast text formatters.

A :class:`Frame` is the text of one outgoing message split around its ``sequence_num`` value, so
the server can number it per connection without re-serialising (``head + b"42" + tail``).  Frames
without a ``sequence_num`` (errors, recorded garbage) have ``tail=None`` and go out verbatim.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from mktpred.coinbase import format_rfc3339_ns

SEQ_KEY = b'"sequence_num":'


@dataclass(slots=True)
class Frame:
    """One outgoing text frame, numbered at send time."""

    head: bytes
    tail: bytes | None = None
    #: the frame's ``channel`` (``l2_data``, ``subscriptions``...), or ``""`` when it has none
    channel: str = ""

    def render(self, seq: int) -> bytes:
        """The payload with ``sequence_num`` set to ``seq`` (verbatim when the frame has none)."""
        if self.tail is None:
            return self.head
        return b"%b%d%b" % (self.head, seq, self.tail)

    @property
    def numbered(self) -> bool:
        return self.tail is not None


def frame_from_text(text: bytes, channel: str = "") -> Frame:
    """Split recorded frame text at its top-level ``sequence_num`` digits (the first occurrence)."""
    i = text.find(SEQ_KEY)
    if i < 0:
        return Frame(text, None, channel)
    j = i + len(SEQ_KEY)
    k = j
    n = len(text)
    while k < n and text[k] in b" \t":
        k += 1
    start = k
    if k < n and text[k] == 0x2D:  # '-'
        k += 1
    while k < n and 0x30 <= text[k] <= 0x39:
        k += 1
    if k == start:
        return Frame(text, None, channel)
    return Frame(text[:start], text[k:], channel)


def data_frame(channel: str, ts: str, events: str) -> Frame:
    """A data frame ``{"channel","timestamp","sequence_num","events"}``; ``events`` is JSON text."""
    head = f'{{"channel":"{channel}","timestamp":"{ts}","sequence_num":'.encode()
    return Frame(head, f',"events":{events}}}'.encode(), channel)


def ack_frame(subscriptions: dict[str, list[str]], at_ns: int | None = None) -> Frame:
    """The ``subscriptions`` frame listing every current subscription (stamped now by default)."""
    import json

    events = json.dumps([{"subscriptions": {k: list(v) for k, v in sorted(subscriptions.items())}}],
                        separators=(",", ":"))
    return data_frame("subscriptions", ts_now(at_ns), events)


def error_frame(message: str) -> Frame:
    """``{"type":"error","message":...}``: carries no sequence number."""
    import json

    return Frame(json.dumps({"type": "error", "message": message}, separators=(",", ":")).encode())


def ws_header(length: int, opcode: int = 0x1) -> bytes:
    """The RFC 6455 header of one unmasked, final server frame (text by default)."""
    if length < 126:
        return bytes((0x80 | opcode, length))
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, 127, length)


def scaled(units: int, decimals: int) -> str:
    """``units * 10**-decimals`` as a Coinbase decimal string (same output as ``format_decimal``)."""
    if decimals == 0:
        return str(units)
    neg = units < 0
    q, r = divmod(-units if neg else units, 10**decimals)
    text = str(q) if r == 0 else f"{q}.{r:0{decimals}d}".rstrip("0")
    return "-" + text if neg and text != "0" else text


_second_cache: list[object] = [-1, ""]


def _fast_rfc3339(ns: int) -> str:
    """``format_rfc3339_ns`` with the whole-second prefix cached (it changes once a second)."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    cache = _second_cache
    if cache[0] != seconds:
        cache[1] = format_rfc3339_ns(seconds * 1_000_000_000)[:-1]
        cache[0] = seconds
    if nanos == 0:
        return f"{cache[1]}Z"
    return f"{cache[1]}.{nanos:09d}".rstrip("0") + "Z"


def ts_now(ns: int | None = None) -> str:
    """The frame ``timestamp`` (nanoseconds, trailing zeros trimmed)."""
    return _fast_rfc3339(time.time_ns() if ns is None else ns)


def ts_us(ns: int) -> str:
    """``event_time`` / trade ``time``: microsecond resolution, trailing zeros trimmed."""
    return _fast_rfc3339(ns - ns % 1000)


def go_time(ns: int, monotonic_s: float) -> str:
    """Go's ``time.Time.String()``: ``2026-08-09 21:05:48.854840045 +0000 UTC m=+41691.260485341``."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
    frac = f".{nanos:09d}".rstrip("0").rstrip(".")
    return f"{base}{frac} +0000 UTC m=+{monotonic_s:.9f}"
