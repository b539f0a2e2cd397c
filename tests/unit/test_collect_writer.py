"""The writer thread and the buffer: midnight rotation with an injected clock, back-pressure without loss."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mktpred.collect.buffer import BufferAborted, RecordBuffer
from mktpred.collect.clock import NS_PER_DAY, NS_PER_S, OffsetClock
from mktpred.collect.segments import SegmentWriter
from mktpred.collect.writer import WriterThread
from mktpred.errors import MktpredError


def _line(ns: int, i: int) -> bytes:
    return b'{"recv_ns":%d,"conn":"c","msg":{"i":%d}}\n' % (ns, i)


def _start(tmp_path: Path, clock: OffsetClock, capacity: int = 1 << 20) -> tuple[RecordBuffer, WriterThread,
                                                                                list[MktpredError]]:
    errors: list[MktpredError] = []
    buf = RecordBuffer(capacity)
    segments = SegmentWriter(tmp_path)
    segments.open(clock.now_ns())  # as the collector does before starting the writer
    w = WriterThread(buf, segments, clock, 0.05, errors.append)
    w.start()
    return buf, w, errors


def test_records_past_midnight_go_to_a_new_segment(tmp_path: Path) -> None:
    """Records stamped before midnight stay in the first segment, the rest open T000000Z; none lost or split."""
    clock = OffsetClock.before_midnight(3600)  # the writer opens its first segment an hour before midnight
    buf, w, errors = _start(tmp_path, clock)
    midnight = (clock.now_ns() // NS_PER_DAY + 1) * NS_PER_DAY
    stamps = [midnight - 3 * NS_PER_S + k * NS_PER_S // 2 for k in range(12)]  # -3 s .. +2.5 s
    for i, ns in enumerate(stamps):
        buf.put(ns, _line(ns, i))
    buf.close()
    w.join(30)
    assert not w.is_alive() and errors == []
    segs = sorted(tmp_path.glob("coinbase_*.jsonl"))
    assert len(segs) == 2 and segs[1].name.endswith("T000000Z.jsonl")
    first, second = (p.read_bytes().splitlines() for p in segs)
    assert first == [_line(ns, i).rstrip() for i, ns in enumerate(stamps) if ns < midnight]
    assert second == [_line(ns, i).rstrip() for i, ns in enumerate(stamps) if ns >= midnight]
    assert w.stats.rotations == 1 and not list(tmp_path.glob("*.part"))


def test_idle_writer_rotates_when_the_clock_passes_midnight(tmp_path: Path) -> None:
    """With no records arriving, the segment is still sealed at midnight by the clock alone."""
    clock = OffsetClock.before_midnight(0.3)
    buf, w, errors = _start(tmp_path, clock)
    ns = clock.now_ns()
    buf.put(ns, _line(ns, 0))
    deadline = time.monotonic() + 30
    while not any(not p.name.endswith(".part") for p in tmp_path.glob("coinbase_*")):
        assert time.monotonic() < deadline, "no segment was sealed at midnight"
        time.sleep(0.02)
    buf.close()
    w.join(30)
    assert errors == [] and w.stats.rotations == 1
    assert len(list(tmp_path.glob("coinbase_*.jsonl"))) == 1  # the new, empty segment is removed at shutdown


def test_full_buffer_blocks_the_producer_and_loses_nothing(tmp_path: Path) -> None:
    """A buffer far smaller than the burst makes the reader wait (counted), never drop."""
    buf = RecordBuffer(4096)
    got: list[bytes] = []
    n = 3000

    def producer() -> None:
        for i in range(n):
            buf.put(i, b"%06d" % i + b"x" * 200 + b"\n")
        buf.close()

    t = threading.Thread(target=producer)
    t.start()
    while True:
        items = buf.take(0.01)
        got.extend(line for _, line in items)
        if not items and buf.closed and buf.nbytes == 0:
            break
    t.join(30)
    assert [int(x[:6]) for x in got] == list(range(n))
    assert buf.full_events > 0 and buf.peak_bytes <= 4096 + 300


def test_writer_failure_is_reported_and_wakes_blocked_readers(tmp_path: Path) -> None:
    """If the directory disappears, the writer reports OutputNotWritable and puts stop blocking."""
    raw = tmp_path / "raw"
    raw.mkdir()
    clock = OffsetClock.before_midnight(0.5)
    buf, w, errors = _start(raw, clock, capacity=100)
    for p in raw.iterdir():
        p.unlink()
    raw.rmdir()  # the .part is gone with its directory: rotation at midnight cannot create the next one
    w.join(30)
    assert not w.is_alive() and len(errors) == 1 and "cannot" in errors[0].message
    with pytest.raises(BufferAborted):
        buf.put(0, b"x" * 1000)
