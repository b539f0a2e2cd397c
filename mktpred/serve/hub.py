"""The fan-out: the latest message per product, and one bounded queue per streaming client.

:meth:`Hub.publish` is called by the pipeline thread and never waits on a client: it hands the
messages to the HTTP server's event loop (``call_soon_threadsafe``), where each client's queue
takes them without waiting.  A client whose queue is full (it stopped reading, or reads slower than
predictions come) is dropped: its connection is aborted and it is counted in
``clients_dropped``.  Nothing upstream ever slows down for a client.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass

#: messages a client may fall behind before it is dropped
CLIENT_QUEUE = 1024


@dataclass(eq=False)
class Subscriber:
    """One streaming client (``sse`` or ``ws``)."""

    kind: str
    queue: asyncio.Queue[bytes | None]
    task: asyncio.Task[object] | None
    client: tuple[str, int] | None = None  #: the peer address (to abort its connection)
    sent: int = 0
    dropped: bool = False


class Hub:
    """See the module docstring."""

    def __init__(self, client_queue: int = CLIENT_QUEUE) -> None:
        self.client_queue = max(1, client_queue)
        self._lock = threading.Lock()
        self._latest: dict[str, bytes] = {}
        self._subs: set[Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.messages = 0
        self.clients_total = 0
        self.clients_dropped = 0
        self.closed = False
        #: set by the HTTP server: abort the connection of a peer address at once (its unsent bytes
        #: would otherwise wait for a reader that never comes)
        self.abort_client: Callable[[tuple[str, int]], None] | None = None

    # -- pipeline side (any thread) ---------------------------------------------------------------
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the clients live on (set once the HTTP server runs)."""
        self._loop = loop

    def publish(self, messages: list[tuple[str, bytes]]) -> None:
        """``(product_id, message JSON)`` pairs of one grid point; returns at once."""
        with self._lock:
            for product, payload in messages:
                self._latest[product] = payload
            self.messages += len(messages)
            loop = self._loop if self._subs else None
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._fanout, [p for _, p in messages])
            except RuntimeError:  # the loop closed meanwhile (shutdown)
                pass

    def latest(self) -> list[bytes]:
        with self._lock:
            return list(self._latest.values())

    @property
    def clients(self) -> int:
        return len(self._subs)

    # -- event-loop side --------------------------------------------------------------------------
    def subscribe(self, kind: str, client: tuple[str, int] | None = None) -> Subscriber:
        """A new client on the running loop (its task is cancelled if it is dropped)."""
        sub = Subscriber(kind, asyncio.Queue(self.client_queue), asyncio.current_task(), client)
        if self.closed:
            sub.queue.put_nowait(None)
        with self._lock:
            self._subs.add(sub)
            self.clients_total += 1
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs.discard(sub)

    def _fanout(self, payloads: list[bytes]) -> None:
        for sub in list(self._subs):
            q = sub.queue
            for p in payloads:
                try:
                    q.put_nowait(p)
                except asyncio.QueueFull:
                    self._drop(sub)
                    break

    def _drop(self, sub: Subscriber) -> None:
        sub.dropped = True
        with self._lock:
            self._subs.discard(sub)
            self.clients_dropped += 1
        if sub.task is not None:
            sub.task.cancel()  # it may be blocked writing to a client that does not read
        if sub.client is not None and self.abort_client is not None:
            self.abort_client(sub.client)

    def close_all(self) -> None:
        """On the loop: tell every client the stream is over (shutdown)."""
        self.closed = True
        for sub in list(self._subs):
            try:
                sub.queue.put_nowait(None)
            except asyncio.QueueFull:
                self._drop(sub)
