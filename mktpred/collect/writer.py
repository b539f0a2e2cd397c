"""The writer thread: drains the buffer into the current segment, fsyncs every flush interval,
rotates at UTC midnight and seals on shutdown."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from mktpred.collect.buffer import RecordBuffer
from mktpred.collect.clock import NS_PER_DAY, NS_PER_S, Clock, next_midnight_ns
from mktpred.collect.segments import SegmentWriter
from mktpred.errors import MktpredError

#: longest the writer sleeps between looks at the buffer (bounds the page-cache latency)
MAX_WAIT_S = 0.05


@dataclass
class WriterStats:
    syncs: int = 0
    rotations: int = 0


class WriterThread(threading.Thread):
    """Owns the :class:`SegmentWriter`; stops after the buffer is closed and drained."""

    def __init__(self, buffer: RecordBuffer, segments: SegmentWriter, clock: Clock,
                 flush_interval_s: float, on_error: Callable[[MktpredError], None]) -> None:
        super().__init__(name="mktpred-collect-writer", daemon=True)
        self.buffer = buffer
        self.segments = segments
        self.clock = clock
        self.flush_interval_s = flush_interval_s
        self.on_error = on_error
        self.stats = WriterStats()
        self.error: MktpredError | None = None

    def run(self) -> None:
        try:
            self._loop()
        except MktpredError as exc:
            self.error = exc
            self.buffer.abort()
            self.segments.abort()
            self.on_error(exc)
        except BaseException as exc:  # a bug: still leave whole lines on disk, then report it
            self.buffer.abort()
            self.segments.abort()
            err = MktpredError(f"writer failed: {type(exc).__name__}: {exc}")
            self.error = err
            self.on_error(err)

    def _loop(self) -> None:
        seg = self.segments
        mono = self.clock.monotonic
        if seg.path is None:
            seg.open(self.clock.now_ns())
        boundary = next_midnight_ns(seg.opened_ns)
        next_sync = mono() + self.flush_interval_s
        while True:
            wait = min(MAX_WAIT_S, max(0.0, next_sync - mono()),
                       max(0.0, (boundary - self.clock.now_ns()) / NS_PER_S))
            closed = self.buffer.closed
            items = self.buffer.take(wait)
            if items:
                boundary = self._write(items, boundary)
            if self.clock.now_ns() >= boundary:
                boundary = self._rotate(boundary, self.clock.now_ns())
            if mono() >= next_sync:
                seg.sync()
                self.stats.syncs += 1
                next_sync = mono() + self.flush_interval_s
            if closed and not items and self.buffer.nbytes == 0:
                break
        seg.seal()

    def _write(self, items: list[tuple[int, bytes]], boundary: int) -> int:
        """Write items in arrival order, starting a new segment at the first ``recv_ns`` past
        midnight (a later item a hair older, read on another connection, stays in the new one)."""
        start = 0
        for i, (ns, _) in enumerate(items):
            if ns >= boundary:
                if i > start:
                    self.segments.write(b"".join([line for _, line in items[start:i]]), i - start)
                boundary = self._rotate(boundary, ns)
                start = i
        if start < len(items):
            self.segments.write(b"".join([line for _, line in items[start:]]), len(items) - start)
        return boundary

    def _rotate(self, boundary: int, ns: int) -> int:
        """Seal the current segment and open the next one; returns the next midnight."""
        self.segments.seal()
        # Named after the midnight it starts at, unless the clock jumped more than a day ahead.
        name_ns = boundary if ns < boundary + NS_PER_DAY else ns
        self.segments.open(name_ns)
        self.stats.rotations += 1
        return next_midnight_ns(name_ns)
