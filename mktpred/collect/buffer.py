"""The bounded hand-over between the socket readers and the writer.

Readers never wait for the disk: they append lines here and go back to the socket.  Memory is
bounded by ``capacity`` bytes; when the writer falls that far behind, :meth:`RecordBuffer.put`
blocks the reader (TCP then pushes back on the sender) and the time spent blocked is counted and
reported.  Nothing is ever dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

#: called with every ``(recv_ns, line)`` as it is accepted, in file order (``serve`` feeds its
#: feature engine from here); it must not block
Tap = Callable[[int, bytes], None]

#: the writer is woken early once this much is waiting (otherwise it wakes on its own timer)
WAKE_BYTES = 256 * 1024


class BufferAborted(Exception):
    """The writer is gone; nothing more can be accepted."""


class RecordBuffer:
    """A byte-bounded FIFO of ``(recv_ns, line)`` items, many producers, one consumer."""

    def __init__(self, capacity: int, tap: Tap | None = None) -> None:
        self.capacity = max(1, capacity)
        self._tap = tap
        self._items: deque[tuple[int, bytes]] = deque()
        self._bytes = 0
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._aborted = False
        self._consumer_waiting = False
        self.peak_bytes = 0
        self.full_events = 0  # how many times a reader found the buffer full
        self.blocked_s = 0.0  # total time readers spent waiting for room
        self.blocked_now = 0  # readers waiting for room right now

    @property
    def nbytes(self) -> int:
        return self._bytes

    def put(self, recv_ns: int, line: bytes) -> None:
        """Append one line; blocks while the buffer is full (never drops)."""
        n = len(line)
        with self._cond:
            if self._bytes + n > self.capacity and self._bytes:
                self._wait_for_room(n)
            if self._aborted:
                raise BufferAborted()
            self._items.append((recv_ns, line))
            self._bytes += n
            if self._tap is not None:  # under the lock: the tap sees lines in the order they are written
                self._tap(recv_ns, line)
            if self._bytes > self.peak_bytes:
                self.peak_bytes = self._bytes
            if self._consumer_waiting and self._bytes >= WAKE_BYTES:
                self._cond.notify_all()

    def _wait_for_room(self, n: int) -> None:
        self.full_events += 1
        self.blocked_now += 1
        start = time.monotonic()
        self._cond.notify_all()  # make sure the writer is awake
        try:
            while self._bytes + n > self.capacity and self._bytes and not self._aborted:
                self._cond.wait(0.5)
        finally:
            self.blocked_now -= 1
            self.blocked_s += time.monotonic() - start

    def take(self, timeout: float) -> list[tuple[int, bytes]]:
        """Everything waiting; waits up to ``timeout`` s for ``WAKE_BYTES`` (or close) first."""
        with self._cond:
            if self._bytes < WAKE_BYTES and not self._closed and not self.blocked_now and timeout > 0:
                self._consumer_waiting = True
                self._cond.wait(timeout)
                self._consumer_waiting = False
            if not self._items:
                return []
            items = list(self._items)
            self._items.clear()
            self._bytes = 0
            self._cond.notify_all()  # wake readers waiting for room
            return items

    def close(self) -> None:
        """No more puts will come; wakes the consumer so it can drain and finish."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def abort(self) -> None:
        """The consumer failed: wake blocked producers and refuse further puts."""
        with self._cond:
            self._aborted = True
            self._cond.notify_all()
