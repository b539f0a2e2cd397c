"""Raw records: frames spliced verbatim, non-JSON kept, collector events, connection ids."""

from __future__ import annotations

import base64
import json

import pytest

from mktpred.collect.records import conn_id, event_record, frame_record, line_prefix, new_run_id

PREFIX = line_prefix("20251122T140301Z-ab12-1")
L2 = (b'{"channel":"l2_data","client_id":"","timestamp":"2026-08-09T21:05:48.228568804Z","sequence_num":7,'
      b'"events":[{"type":"snapshot","product_id":"BTC-USD","updates":[{"side":"bid","price_level":"1.50",'
      b'"new_quantity":"0.10000000"},{"side":"offer","price_level":"2","new_quantity":"3"}]}]}')


def test_valid_frame_is_spliced_byte_for_byte() -> None:
    """The `msg` value is the frame's exact bytes (trailing zeros, key order, spacing all kept)."""
    fr = frame_record(1763820181123456789, PREFIX, L2)
    assert fr.valid and fr.line.endswith(b"}\n") and fr.line.count(b"\n") == 1
    assert fr.line == b'{"recv_ns":1763820181123456789,"conn":"20251122T140301Z-ab12-1","msg":' + L2 + b"}\n"
    rec = json.loads(fr.line)
    assert rec["msg"]["events"][0]["updates"][0]["new_quantity"] == "0.10000000"
    assert (fr.channel, fr.seq, fr.rows, fr.l2_snapshot) == ("l2_data", 7, 2, True)


def test_multiline_json_frame_stays_one_line() -> None:
    """Line breaks between JSON tokens are blanked so the record is one line with the same document."""
    frame = b'{\n  "channel": "heartbeats",\r\n  "sequence_num": 3,\n  "events": []\n}'
    fr = frame_record(5, PREFIX, frame)
    assert fr.valid and fr.line.count(b"\n") == 1 and b"\r" not in fr.line
    assert json.loads(fr.line)["msg"] == json.loads(frame)
    assert fr.seq == 3 and fr.rows == 0 and not fr.l2_snapshot


def test_non_json_frame_is_kept_as_raw_text() -> None:
    """A torn frame becomes a `raw` record holding its text; nothing is dropped."""
    torn = L2[:57]
    fr = frame_record(9, PREFIX, torn)
    assert not fr.valid
    rec = json.loads(fr.line)
    assert rec == {"recv_ns": 9, "conn": "20251122T140301Z-ab12-1", "raw": torn.decode()}


def test_non_utf8_frame_is_kept_as_base64() -> None:
    """Bytes that are not even UTF-8 are kept losslessly, base64-encoded and marked so."""
    junk = b"\xff\xfe{\x00garbage"
    rec = json.loads(frame_record(1, PREFIX, junk).line)
    assert rec["raw_encoding"] == "base64" and base64.b64decode(rec["raw"]) == junk


def test_json_that_is_not_an_object_is_still_spliced() -> None:
    """A JSON array or number is valid JSON: spliced as `msg`, with no channel or sequence number."""
    fr = frame_record(1, PREFIX, b"[1,2,3]")
    assert fr.valid and json.loads(fr.line)["msg"] == [1, 2, 3] and fr.seq is None and fr.channel is None


def test_rows_are_counted_per_kind() -> None:
    """Rows are the level updates, trades, tickers or candles the frame carries."""
    trades = b'{"channel":"market_trades","sequence_num":1,"events":[{"type":"update","trades":[{},{},{}]}]}'
    ticker = b'{"channel":"ticker","sequence_num":2,"events":[{"type":"update","tickers":[{}]},{"tickers":[{}]}]}'
    assert frame_record(1, PREFIX, trades).rows == 3
    assert frame_record(1, PREFIX, ticker).rows == 2


def test_event_record_is_one_json_line() -> None:
    """Collector events carry recv_ns, conn, event and their details."""
    line = event_record(11, "c-1", "gap", expected=5, got=9)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"recv_ns": 11, "conn": "c-1", "event": "gap", "expected": 5, "got": 9}


def test_connection_ids_are_unique_across_runs_in_the_same_second() -> None:
    """Two runs started in the same second get different connection ids."""
    now = 1763820181123456789
    ids = {conn_id(new_run_id(now), 1) for _ in range(50)}
    assert len(ids) > 40
    assert all(i.startswith("20251122T140301Z-") and i.endswith("-1") for i in ids)


def _big(body: str) -> bytes:
    """A frame over the lean-parse threshold: ``body`` with a padding key in front."""
    from mktpred.collect.records import LEAN_PARSE_BYTES

    return ('{"pad":"' + "p" * LEAN_PARSE_BYTES + '",' + body[1:]).encode()


_LEVEL = '{"side":"bid","event_time":"2026-08-09T21:05:48Z","price_level":"1.5","new_quantity":"2"}'


@pytest.mark.parametrize("body", [
    '{"channel":"l2_data","sequence_num":7,"events":[{"type":"snapshot","updates":[' + ",".join([_LEVEL] * 3) + "]}]}",
    '{"channel":"market_trades","sequence_num":8,"events":[{"type":"update","trades":[{"trade_id":"1"},'
    '{"trade_id":"2"}]},{"type":"update","trades":[{"trade_id":"3"}]}]}',
    '{"channel":"ticker","sequence_num":9,"events":[{"type":"update","tickers":[{"type":"ticker","x":1}]}]}',
    '{"type":"error","message":"failure to subscribe","reason":"too big"}',
    '{"channel":"ticker","sequence_num":10,"x":NaN}',
    '{"channel":"ticker","sequence_num":11,"x":1e400}',
    '{"channel":"ticker","sequence_num":12,"x":"\\ud800"}',
    '{"channel":"ticker","sequence_num":13,"x":[1,]}',
    '{"channel":"ticker","sequence_num":14,"x":"caf\\u00e9"}\n',
], ids=["l2-snapshot", "trades", "tickers", "error", "nan", "overflow", "lone-surrogate", "trailing-comma",
        "escape-and-newline"])
def test_big_frames_get_the_same_verdict_as_orjson(body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames over LEAN_PARSE_BYTES are parsed to a skeleton; the record and every field the reader
    uses equal what the full orjson parse gives (valid or raw, channel, seq, rows, snapshot, error)."""
    import mktpred.collect.records as records

    payload = _big(body)
    prefix = line_prefix("c-1")
    lean = frame_record(5, prefix, payload)
    monkeypatch.setattr(records, "LEAN_PARSE_BYTES", 1 << 40)  # force the full orjson parse
    full = frame_record(5, prefix, payload)
    assert (lean.valid, lean.channel, lean.seq, lean.rows, lean.l2_snapshot, lean.error) == \
        (full.valid, full.channel, full.seq, full.rows, full.l2_snapshot, full.error)
    assert lean.line == full.line


def test_big_frame_counts_are_right() -> None:
    """The skeleton parse counts rows and reads the header of a big level2 snapshot correctly."""
    payload = _big('{"channel":"l2_data","sequence_num":7,"events":[{"type":"snapshot","updates":['
                   + ",".join([_LEVEL] * 5) + "]}]}")
    frame = frame_record(1, line_prefix("c-1"), payload)
    assert (frame.valid, frame.channel, frame.seq, frame.rows, frame.l2_snapshot) == (True, "l2_data", 7, 5, True)
