"""Reading a recording for replay: bare frames or mktpred raw records, plain, ``.zst`` or ``.gz``.

Each line becomes ``(time_ns, Frame)``.  A raw record's ``msg`` is cut out of the line as the exact
bytes that were recorded (never re-serialised); its time is ``recv_ns``.  A bare frame's time is
its ``timestamp``.  Collector event records are skipped; ``raw`` records (frames that were not
JSON) are replayed as recorded.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Generator
from pathlib import Path
from typing import IO

import orjson

from mktpred.coinbase import parse_rfc3339_ns
from mktpred.errors import UsageError
from mktpred.simulate.frames import Frame, frame_from_text

_TS = re.compile(rb'"timestamp"\s*:\s*"([^"]+)"')
_CHANNEL = re.compile(rb'"channel"\s*:\s*"([^"]*)"')
_MSG_KEY = re.compile(rb'"msg"\s*:\s*')


def open_text(path: Path) -> IO[bytes]:
    """A binary line reader over ``path``, decompressing ``.zst`` and ``.gz`` by suffix."""
    try:
        if path.suffix == ".gz":
            return gzip.open(path, "rb")  # type: ignore[return-value]
        raw = path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read replay file {path}: {exc.strerror}", where="--replay") from None
    if path.suffix == ".zst":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)
        return io.BufferedReader(reader, buffer_size=1 << 20)
    return raw


def check_replay_file(path: Path) -> None:
    """Fail early (:class:`UsageError`) when the file cannot be read."""
    if not path.is_file():
        raise UsageError(f"replay file not found: {path}", where="--replay")
    with open_text(path) as fh:
        fh.read(1)


def extract_msg(line: bytes, record: dict[str, object]) -> bytes | None:
    """The exact text of a raw record's ``msg`` value, or ``None`` when it cannot be located."""
    for m in _MSG_KEY.finditer(line):
        start = m.end()
        # Fast path: "msg" is the record's last key (as mktpred writes it): check that the part
        # before it is a JSON object on its own and that the rest is the value plus "}".
        end = line.rstrip().rfind(b"}")
        head = line[:m.start()].rstrip().rstrip(b",")
        candidate = line[start:end].rstrip()
        try:
            before = orjson.loads(head + b"}")
            orjson.loads(candidate)
            if isinstance(before, dict) and "msg" not in before:
                return candidate
        except orjson.JSONDecodeError:
            pass
        # General case: decode exactly one JSON value at this position.
        try:
            text = line.decode()
            char_start = len(line[:start].decode())
            value, char_end = json.JSONDecoder().raw_decode(text, char_start)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if value == record.get("msg"):
            return text[char_start:char_end].encode()
    return None


def _channel(text: bytes) -> str:
    m = _CHANNEL.search(text, 0, 200)
    return m.group(1).decode() if m else ""


def read_replay(path: Path) -> Generator[tuple[int, Frame], None, None]:
    """Every frame of a recording with its original time in nanoseconds (see the module doc)."""
    last_t = 0
    with open_text(path) as fh:
        for raw_line in fh:
            line = raw_line.rstrip(b"\r\n")
            if not line.strip():
                continue
            t: int | None = None
            text = line
            if line.lstrip().startswith(b'{"recv_ns"') or b'"msg"' in line[:200] or b'"raw"' in line[:200]:
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    obj = None
                if isinstance(obj, dict) and "recv_ns" in obj:
                    if "event" in obj:
                        continue  # the collector's own events are not frames
                    recv = obj.get("recv_ns")
                    t = recv if isinstance(recv, int) else None
                    if "msg" in obj:
                        cut = extract_msg(line, obj)
                        # pragma: no cover - a record whose msg cannot be cut out verbatim
                        text = cut if cut is not None else orjson.dumps(obj["msg"])
                    elif isinstance(obj.get("raw"), str):
                        text = obj["raw"].encode()
                    else:
                        continue
            if t is None:
                m = _TS.search(text, 0, 400)
                if m:
                    try:
                        t = parse_rfc3339_ns(m.group(1).decode())
                    except (ValueError, UnicodeDecodeError):
                        t = None
            if t is None:
                t = last_t
            last_t = t
            yield t, frame_from_text(text, _channel(text))
