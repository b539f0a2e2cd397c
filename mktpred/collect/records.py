"""Raw records: one JSON line per frame, with the frame spliced verbatim (DESIGN.md, "Raw records").

The hot path builds each line by byte concatenation; the frame is parsed once (orjson) only to
validate it and to read ``channel`` and ``sequence_num``, never re-serialised.
"""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from mktpred.collect.clock import utc_stamp

#: keys whose list values are the rows of a frame's events (level2 updates, trades, tickers, candles)
_ROW_KEYS = ("updates", "trades", "tickers", "candles")
#: frames at least this big are parsed without building their rows: orjson turns a level2 snapshot
#: into about 4x its size of Python objects (and yyjson's own document besides), where the reader
#: only needs the channel, the sequence number and how many rows there are
LEAN_PARSE_BYTES = 1 << 20
#: the objects the lean parse keeps (a frame, its events, an error); rows become ``None``
_HEADER_KEYS = frozenset({"channel", "sequence_num", "events", "type", "message", "reason", *_ROW_KEYS})
#: a ``\uD800``..``\uDFFF`` escape: the standard library and orjson disagree on lone surrogates
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def new_run_id(now_ns: int) -> str:
    """``20251122T140301Z-3f2a``: the UTC start second plus a random tag, so that connection ids
    stay unique across runs, restarts within one second and machines writing into one store."""
    return f"{utc_stamp(now_ns)}-{secrets.token_hex(2)}"


def conn_id(run_id: str, n: int) -> str:
    """The id of the ``n``-th connection (1-based) of a run: ``20251122T140301Z-3f2a-1``."""
    return f"{run_id}-{n}"


def line_prefix(conn: str) -> bytes:
    """The bytes between ``recv_ns`` and the spliced frame, computed once per connection."""
    return b',"conn":' + orjson.dumps(conn) + b',"msg":'


@dataclass(slots=True)
class Frame:
    """What the reader learnt from one frame."""

    line: bytes  # the whole record line, ``\n``-terminated
    valid: bool  # the frame was JSON (``msg`` record) rather than kept as ``raw``
    channel: str | None = None
    seq: int | None = None
    rows: int = 0
    l2_snapshot: bool = False
    error: str | None = None  # the text of a server ``{"type": "error", ...}`` frame


def frame_record(recv_ns: int, prefix: bytes, payload: bytes) -> Frame:
    """The raw record for one frame: ``msg`` spliced verbatim when it is valid JSON, else ``raw``."""
    try:
        doc = orjson.loads(payload) if len(payload) < LEAN_PARSE_BYTES else _lean_parse(payload)
    except (ValueError, RecursionError):  # orjson.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return _raw_frame(recv_ns, prefix, payload)
    info = _read_frame(doc)
    del doc  # a big snapshot parses to several times its size: free it before building the line
    if b"\n" in payload or b"\r" in payload:
        # Valid JSON can only hold line breaks as whitespace between tokens: blank them so the
        # record stays one line; the document is unchanged.
        payload = payload.replace(b"\n", b" ").replace(b"\r", b" ")
    info.line = b'{"recv_ns":%d%s%s}\n' % (recv_ns, prefix, payload)
    return info


def _keep_header(obj: dict[str, Any]) -> dict[str, Any] | None:
    return obj if not _HEADER_KEYS.isdisjoint(obj) else None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # orjson refuses NaN and Infinity too


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} overflows a double")  # orjson refuses 1e400 too
    return value


def _lean_parse(payload: bytes, *, strict: bool = True) -> Any:
    """A big frame parsed to its skeleton: the same verdict as :func:`orjson.loads` (valid or not),
    at about twice the frame's size in memory instead of five or more."""
    if strict and _SURROGATE_ESCAPE.search(payload):
        return orjson.loads(payload)  # rare: keep orjson's exact verdict on surrogate escapes
    if not strict:
        return json.loads(payload.decode("utf-8"), object_hook=_keep_header)
    return json.loads(payload.decode("utf-8"), object_hook=_keep_header, parse_constant=_refuse_constant,
                      parse_float=_finite_float)


def _read_frame(doc: Any) -> Frame:
    """What the reader needs from a parsed frame (the line is filled in by the caller)."""
    if type(doc) is not dict:
        return Frame(b"", True)
    channel = doc.get("channel")
    if channel is None and doc.get("type") == "error":
        text = " ".join(str(doc[k]) for k in ("message", "reason") if doc.get(k))
        return Frame(b"", True, error=text or "error")
    seq = doc.get("sequence_num")
    rows = 0
    snapshot = False
    events = doc.get("events")
    if type(events) is list:
        for ev in events:
            if type(ev) is dict:
                for key in _ROW_KEYS:
                    v = ev.get(key)
                    if type(v) is list:
                        rows += len(v)
                        break
                if channel == "l2_data" and ev.get("type") == "snapshot":
                    snapshot = True
    return Frame(b"", True, channel if type(channel) is str else None,
                 seq if type(seq) is int else None, rows, snapshot)


def _raw_frame(recv_ns: int, prefix: bytes, payload: bytes) -> Frame:
    """A frame orjson refuses is kept as ``raw``.  When Python's own parser still reads it (a lone
    surrogate escape such as ``"\\ud800"`` is legal to it, not to orjson), its ``channel`` and
    ``sequence_num`` still count, so the next frame is not taken for a sequence gap."""
    channel: str | None = None
    seq: int | None = None
    if payload[:1] == b"{":
        try:
            doc = json.loads(payload) if len(payload) < LEAN_PARSE_BYTES else _lean_parse(payload, strict=False)
        except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            doc = None
        if type(doc) is dict:
            ch, sq = doc.get("channel"), doc.get("sequence_num")
            channel = ch if type(ch) is str else None
            seq = sq if type(sq) is int else None
        del doc
    return Frame(raw_record(recv_ns, prefix, payload), False, channel, seq)


def raw_record(recv_ns: int, prefix: bytes, payload: bytes) -> bytes:
    """A frame that is not JSON, kept as text (or base64 when it is not even UTF-8)."""
    head = b'{"recv_ns":%d%s' % (recv_ns, prefix[: -len(b'"msg":')])
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        body = b'"raw":' + orjson.dumps(base64.b64encode(payload).decode("ascii")) + b',"raw_encoding":"base64"'
    else:
        body = b'"raw":' + orjson.dumps(text)
    return head + body + b"}\n"


def event_record(recv_ns: int, conn: str, event: str, **details: Any) -> bytes:
    """One of the collector's own event records (``open``, ``subscribed``, ``close``, ``gap``, ...)."""
    return orjson.dumps({"recv_ns": recv_ns, "conn": conn, "event": event, **details}) + b"\n"
