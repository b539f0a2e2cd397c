"""Raw records line by line, in Python: the validator behind the quarantine, and event rows.

Engines convert whole files at C speed; when one rejects a chunk (a line that is not JSON, a frame
of an unexpected shape, an unparsable number or timestamp), :func:`check_line` tells exactly
which lines are bad and why, so they can be quarantined and the rest converted.  It applies the
same rules as the engines (DESIGN.md "Raw records" and the table contracts).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from mktpred.coinbase.protocol import (
    EVENT_TYPES,
    FRAME_CHANNEL,
    FRAME_EVENTS,
    FRAME_SEQUENCE,
    FRAME_TIMESTAMP,
    FRAME_TYPE,
    L2_CHANNEL,
    L2_SIDES,
    TABLE_LISTS,
    TICKER_COLUMNS,
    TRADES_CHANNEL,
    is_product_id,
)
from mktpred.coinbase.timestamps import parse_rfc3339_ns

RAW_REASON = "the collector kept a frame that is not valid JSON"
_EVENT_COLUMNS = ("recv_ns", "conn", "event", "expected", "got")
_ZONE = re.compile(r"(Z|[+-]\d{2}:\d{2})\Z")


#: the earliest plausible ``recv_ns``: 2010-01-01T00:00:00Z (Coinbase did not exist before; a
#: smaller value is a broken clock or a corrupted record, not market data)
MIN_RECV_NS = 1_262_304_000 * 1_000_000_000
#: a frame received more than this after its own ``timestamp`` is converted but counted
#: (``recv_ahead``): a wrong clock -- or a feed replaying past times, as ``mktpred simulate`` does
#: with ``--start``, which is why it is not quarantined
MAX_RECV_AHEAD_NS = 86_400 * 1_000_000_000
RECV_REASON = "recv_ns out of range"


def check_recv(recv: int) -> None:
    """Raise :class:`BadRecord` for a ``recv_ns`` before 2010 (negative and zero included)."""
    if recv < MIN_RECV_NS:
        raise BadRecord(f"{RECV_REASON}: {recv} is before 2010-01-01")


class BadRecord(ValueError):
    """A line that cannot become table rows; the message is the quarantine reason."""


def _number(obj: dict[str, Any], key: str, *, required: bool) -> None:
    v = obj.get(key)
    if v is None:
        if required:
            raise BadRecord(f"missing {key}")
        return
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise BadRecord(f"{key} is not a number: {v!r}")
    if isinstance(v, str):
        # DuckDB's reader takes what float() takes, minus trailing blanks, "+" and digit separators.
        try:
            float(v)
        except ValueError:
            raise BadRecord(f"{key} is not a number: {v!r}") from None
        if "_" in v or v != v.rstrip() or v.lstrip().startswith("+"):
            raise BadRecord(f"{key} is not a number: {v!r}")


def _timestamp(value: Any, what: str, *, required: bool, zone_optional: bool = False) -> None:
    if value is None:
        if required:
            raise BadRecord(f"missing {what}")
        return
    if not isinstance(value, str):
        raise BadRecord(f"{what} is not a timestamp: {value!r}")
    if zone_optional and _ZONE.search(value) is None:
        value += "Z"  # DuckDB reads a time without an offset as UTC
    try:
        parse_rfc3339_ns(value)
    except ValueError:
        raise BadRecord(f"{what} is not an RFC 3339 timestamp: {value!r}") from None


def _string(obj: dict[str, Any], key: str, *, required: bool) -> None:
    v = obj.get(key)
    if v is None:
        if required:
            raise BadRecord(f"missing {key}")
        return
    if not isinstance(v, str):
        raise BadRecord(f"{key} is not a string: {v!r}")


def _product(obj: dict[str, Any]) -> None:
    _string(obj, "product_id", required=True)
    if not is_product_id(obj["product_id"]):
        raise BadRecord(f"product_id is not a Coinbase product id: {obj['product_id']!r}")


def _check_rows(channel: str, event: dict[str, Any]) -> None:
    _, list_key = TABLE_LISTS[channel]
    if event.get(FRAME_TYPE) not in EVENT_TYPES:
        raise BadRecord(f"event type is not snapshot or update: {event.get(FRAME_TYPE)!r}")
    rows = event.get(list_key)
    if not isinstance(rows, list):
        raise BadRecord(f"event has no {list_key} list")
    if channel == L2_CHANNEL:
        _product(event)
    for row in rows:
        if not isinstance(row, dict):
            raise BadRecord(f"an item of {list_key} is not an object")
        if channel == L2_CHANNEL:
            if row.get("side") not in L2_SIDES:
                raise BadRecord(f"level2 side is not bid or offer: {row.get('side')!r}")
            _number(row, "price_level", required=True)
            _number(row, "new_quantity", required=True)
            _timestamp(row.get("event_time"), "event_time", required=False, zone_optional=True)
        elif channel == TRADES_CHANNEL:
            _product(row)
            _string(row, "side", required=True)
            _string(row, "trade_id", required=False)
            _number(row, "price", required=True)
            _number(row, "size", required=True)
            _timestamp(row.get("time"), "trade time", required=False, zone_optional=True)
        else:
            _product(row)
            _number(row, "price", required=True)
            for key in TICKER_COLUMNS:
                if key != "price":
                    _number(row, key, required=False)


def _check_frame(frame: dict[str, Any], has_recv: bool) -> None:
    channel = frame.get(FRAME_CHANNEL)
    if channel is None:
        channel = frame.get(FRAME_TYPE)
    if not isinstance(channel, str):
        raise BadRecord("frame has no channel")
    ts = frame.get(FRAME_TIMESTAMP)
    data = channel in TABLE_LISTS
    _timestamp(ts, "timestamp", required=data or not has_recv)
    seq = frame.get(FRAME_SEQUENCE)
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
        raise BadRecord(f"sequence_num is not an integer: {seq!r}")
    events = frame.get(FRAME_EVENTS)
    if events is None:
        if data:
            raise BadRecord("data frame has no events")
        return
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise BadRecord("events is not a list of objects")
    if data:
        for event in events:
            _check_rows(channel, event)


def check_line(line: bytes) -> str | None:
    """``None`` when ``line`` is a convertible record (frame, bare frame or collector event),
    else the reason it is not."""
    if not line.strip():
        return "empty line"
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"invalid JSON: {exc}"
    if not isinstance(obj, dict):
        return "not a JSON object"
    try:
        if "event" in obj:
            _event_row(obj)
            return None
        if "raw" in obj:
            return RAW_REASON
        recv = obj.get("recv_ns")
        if recv is not None and (isinstance(recv, bool) or not isinstance(recv, int)):
            raise BadRecord(f"recv_ns is not an integer: {recv!r}")
        _string(obj, "conn", required=False)
        if "msg" in obj:
            frame = obj["msg"]
            if not isinstance(frame, dict):
                raise BadRecord("msg is not an object")
        else:
            frame = obj
        _check_frame(frame, recv is not None)
        if recv is not None:
            check_recv(recv)
    except BadRecord as exc:
        return str(exc)
    return None


def _event_row(obj: dict[str, Any]) -> dict[str, Any]:
    recv, conn, name = obj.get("recv_ns"), obj.get("conn"), obj.get("event")
    if isinstance(recv, bool) or not isinstance(recv, int):
        raise BadRecord("event record has no integer recv_ns")
    check_recv(recv)
    if not isinstance(conn, str) or not isinstance(name, str):
        raise BadRecord("event record has no conn or event name")
    expected, got = obj.get("expected"), obj.get("got")
    detail = {k: v for k, v in obj.items() if k not in _EVENT_COLUMNS}
    for key, val in (("expected", expected), ("got", got)):
        if val is not None and (isinstance(val, bool) or not isinstance(val, int)):
            detail[key] = val
    return {
        "recv_time": recv,
        "time": recv,
        "conn": conn,
        "event": name,
        "expected": expected if isinstance(expected, int) and not isinstance(expected, bool) else None,
        "got": got if isinstance(got, int) and not isinstance(got, bool) else None,
        "detail": orjson.dumps(detail).decode() if detail else None,
    }


def event_row(line: bytes) -> dict[str, Any]:
    """The ``events`` table row of a collector event record; :class:`BadRecord` if malformed."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadRecord(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict) or "event" not in obj:
        raise BadRecord("not an event record")
    return _event_row(obj)
