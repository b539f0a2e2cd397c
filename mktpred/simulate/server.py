"""The simulated exchange: a WebSocket server on localhost speaking the Advanced Trade protocol.

:class:`SimulatedExchange` runs an asyncio ``websockets`` server in a background thread.  Each
accepted connection gets its own :class:`_Connection`: a reader task that queues the client's
(un)subscribe messages, and a sender loop that owns the connection's one ``sequence_num`` counter,
asks its source (the market model or a replay) for due frames, applies the faults and writes.

``websockets`` does the handshake, reading, ping/pong and closing.  Outgoing data frames are framed
here (server frames are unmasked: a 2-10 byte header) and written to the connection's transport in
batches, then ``drain()`` applies back-pressure: per frame this costs a few microseconds instead of
the tens that ``send()`` costs, which is what lets one process send tens of thousands of frames/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from mktpred.coinbase import CHANNEL_OF_SUBSCRIPTION
from mktpred.errors import RuntimeFailure, UsageError
from mktpred.simulate.faults import FaultEvent, FaultSpec
from mktpred.simulate.frames import Frame, error_frame, ws_header
from mktpred.simulate.sources import LoadSource, ModelSource, ReplaySource, Source, StreamSource

logger = logging.getLogger("mktpred.simulate")

BATCH = 512  # frames asked of a source per turn
FLUSH_BYTES = 1 << 20
WRITE_LIMIT = 1 << 21  # transport high-water mark before drain() waits
DEFAULT_PRODUCTS = ("BTC-USD", "ETH-USD")
AFTER_KINDS = ("drop", "close", "stall", "malformed", "duplicate")


@dataclass
class ConnectionLog:
    """What the server did on one accepted connection (live: updated while it runs)."""

    index: int
    peer: str = ""
    frames_sent: int = 0
    bytes_sent: int = 0
    last_seq: int = -1
    subscriptions: dict[str, list[str]] = field(default_factory=dict)
    #: the exact text of every frame sent, in order (only with ``record_sent=True``)
    sent: list[str] = field(default_factory=list)
    faults: list[FaultEvent] = field(default_factory=list)
    closed: bool = False
    close_reason: str = ""


class _Stop(Exception):
    """The connection ended (dropped, closed or gone): leave the sender loop."""


class _Connection:
    def __init__(self, sim: SimulatedExchange, ws: ServerConnection, log: ConnectionLog) -> None:
        self.sim = sim
        self.ws = ws
        self.log = log
        self.subs: dict[str, list[str]] = {}
        self.source: Source = sim._new_source(self.subs)
        self.ctrl: asyncio.Queue[Any] = asyncio.Queue()
        self.wake = asyncio.Event()
        self.gone = False
        self.seq = 0
        self.numbered = 0
        self.opened = time.monotonic()
        self.subscribed = False
        self.pending_after = [f for f in sim.faults if f.kind in AFTER_KINDS and f.after is not None]
        self.check_at = self._next_check()
        self.gap = next((f for f in sim.faults if f.kind == "gap"), None)
        self.slow = next((f for f in sim.faults if f.kind == "slow"), None)
        self.slow_logged = False
        self.drop_every = next((f for f in sim.faults if f.kind == "drop" and f.every is not None), None)
        self.next_drop = self.opened + self.drop_every.every if self.drop_every and self.drop_every.every else math.inf
        self.oversized = next((f for f in sim.faults if f.kind == "oversized"), None)
        self.buf: list[bytes] = []
        self.buf_bytes = 0

    def _next_check(self) -> float:
        return min((f.after for f in self.pending_after if f.after is not None), default=math.inf)

    def fault(self, kind: str, detail: str) -> None:
        self.sim._record_fault(self.log, kind, detail)

    # -- reading ----------------------------------------------------------------------------------
    async def reader(self) -> None:
        try:
            async for message in self.ws:
                self.ctrl.put_nowait(message)
                self.wake.set()
        except ConnectionClosed:
            pass
        finally:
            self.gone = True
            self.wake.set()

    # -- writing ----------------------------------------------------------------------------------
    def _alive(self) -> bool:
        return not self.gone and self.ws.state is State.OPEN and not self.ws.transport.is_closing()

    async def flush(self) -> None:
        if self.buf:
            if not self._alive():
                raise _Stop
            self.ws.transport.writelines(self.buf)
            self.buf = []
            self.buf_bytes = 0
        try:
            await self.ws.drain()
        except Exception:  # the transport went away while we waited
            raise _Stop from None

    def _put(self, payload: bytes) -> None:
        self.buf.append(ws_header(len(payload)))
        self.buf.append(payload)
        self.buf_bytes += len(payload)
        log = self.log
        log.frames_sent += 1
        log.bytes_sent += len(payload)
        if self.sim.record_sent:
            log.sent.append(payload.decode("utf-8", "replace"))

    async def send(self, frames: list[Frame]) -> None:
        """Number, fault and write ``frames``; :class:`_Stop` when the connection ends."""
        log = self.log
        for fr in frames:
            duplicate = False
            if log.frames_sent >= self.check_at:
                duplicate = await self._after_faults(fr)
            if fr.tail is not None:
                gap = self.gap
                if gap is not None and self.numbered and self.numbered % int(gap.every or 1) == 0:
                    self.fault("gap", f"skipped sequence_num {self.seq}..{self.seq + gap.size - 1}")
                    self.seq += gap.size
                payload = fr.render(self.seq)
                log.last_seq = self.seq
                self.seq += 1
                self.numbered += 1
            else:
                payload = fr.head
            self._put(payload)
            if duplicate:
                self._put(payload)
            if self.slow is not None:
                if not self.slow_logged:
                    self.slow_logged = True
                    self.fault("slow", f"{self.slow.delay_ms:g} ms between frames")
                await self.flush()
                await self._sleep((self.slow.delay_ms or 0) / 1000)
            elif self.buf_bytes >= FLUSH_BYTES:
                await self.flush()
        await self.flush()

    async def _after_faults(self, fr: Frame) -> bool:
        """Fire the ``after=N`` faults now due; returns whether ``fr`` is to be duplicated."""
        duplicate = False
        n = self.log.frames_sent
        for spec in [f for f in self.pending_after if f.after is not None and n >= f.after]:
            self.pending_after.remove(spec)
            if not self.sim._take(spec):
                continue
            if spec.kind == "malformed":
                full = fr.render(self.seq)
                torn = full[: max(1, min(len(full) // 2, 200))]
                self.fault("malformed", f"sent {len(torn)} bytes of non-JSON text")
                self._put(torn)
            elif spec.kind == "duplicate":
                self.fault("duplicate", f"frame sent twice with sequence_num {self.seq}")
                duplicate = True
            elif spec.kind == "drop":
                await self.flush()
                await self._written()
                self.fault("drop", f"TCP connection aborted after {n} frames")
                self.abort("dropped by fault")
                raise _Stop
            elif spec.kind == "close":
                await self.flush()
                self.fault("close", f"close frame with code {spec.code}")
                self.log.close_reason = f"closed by fault (code {spec.code})"
                await self.ws.close(spec.code or 1000, "fault injected by mktpred simulate")
                raise _Stop
            elif spec.kind == "stall":
                await self.flush()
                self.fault("stall", f"sending nothing for {spec.seconds:g} s")
                await self._sleep(spec.seconds or 0)
                self.source.rebase(time.monotonic())
        self.check_at = self._next_check()
        return duplicate

    async def _written(self, limit_s: float = 5.0) -> None:
        """Wait (bounded) until the transport has handed every queued byte to the kernel, so a
        drop after N frames loses none of those N."""
        deadline = time.monotonic() + limit_s
        while self.ws.transport.get_write_buffer_size() and time.monotonic() < deadline and not self.gone:
            await asyncio.sleep(0.001)

    async def shutdown(self) -> None:
        """The server is stopping: a 1001 close frame if it can go out within a second, then abort."""
        self.gone = True
        self.wake.set()
        if not self.log.close_reason:
            self.log.close_reason = "server stopped"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(1001, "server stopping"), timeout=1.0)
        self.ws.transport.abort()

    def abort(self, reason: str) -> None:
        self.log.close_reason = reason
        self.gone = True
        self.ws.transport.abort()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but return early (raising :class:`_Stop`) if the connection or server ends."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(self.sim._stopping_event().wait(), timeout=min(left, 0.1))
            except TimeoutError:
                pass
            if self.gone or self.sim._stopping:
                raise _Stop

    # -- control messages -------------------------------------------------------------------------
    def _ack(self) -> Frame:
        return self.source.ack(self.subs)

    async def control(self, raw: str | bytes) -> None:
        try:
            msg = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            msg = None
        if not isinstance(msg, dict) or msg.get("type") not in ("subscribe", "unsubscribe"):
            await self.send([error_frame("failure to unmarshal message")])
            return
        channel = msg.get("channel")
        products = msg.get("product_ids") or []
        if not isinstance(channel, str) or channel not in CHANNEL_OF_SUBSCRIPTION:
            await self.send([error_frame("authentication failure")])
            return
        if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
            await self.send([error_frame("failure to unmarshal message")])
            return
        if channel == "heartbeats":
            products = ["heartbeats"]
        elif self.source.acks:
            unknown = [p for p in products if p not in self.sim.products]
            if unknown or not products:
                await self.send([error_frame(f"failure to subscribe: unknown product_ids {unknown or products}")])
                return
        current = self.subs.get(channel, [])
        frames: list[Frame] = []
        if msg["type"] == "subscribe":
            new = [p for p in products if p not in current]
            self.subs[channel] = current + new
            if not self.subscribed:
                self.subscribed = True
                self.source.start(time.monotonic())
            pad = 0
            if channel == "level2" and new and self.oversized is not None and self.sim._take(self.oversized):
                pad = int((self.oversized.mb or 0) * 2**20)
                self.fault("oversized", f"level2 snapshot padded to at least {self.oversized.mb:g} MiB")
            frames = self.source.on_subscribe(channel, new, pad)
        else:
            left = [p for p in current if p not in products]
            if left:
                self.subs[channel] = left
            else:
                self.subs.pop(channel, None)
        self.log.subscriptions = {k: list(v) for k, v in self.subs.items()}
        if self.source.acks:
            frames.append(self._ack())
        await self.send(frames)

    # -- the sender loop --------------------------------------------------------------------------
    async def run(self) -> None:
        deadline = self.opened + self.sim.subscribe_timeout_s
        source = self.source
        while True:
            if not self._alive() or self.sim._stopping:
                return
            while not self.ctrl.empty():
                await self.control(self.ctrl.get_nowait())
            now = time.monotonic()
            if now >= self.next_drop:
                await self._written()
                self.fault("drop", f"TCP connection aborted {self.drop_every.every if self.drop_every else 0:g} s after it opened")
                self.abort("dropped by fault")
                return
            if not self.subscribed:
                if now >= deadline:
                    self.log.close_reason = "no subscribe within the deadline"
                    logger.info("connection %d: no subscribe within %g s, closing", self.log.index,
                                self.sim.subscribe_timeout_s)
                    await self.ws.close(1008, f"subscribe within {self.sim.subscribe_timeout_s:g} s")
                    return
                wake_at = min(deadline, self.next_drop)
            else:
                frames = source.due(now, BATCH)
                if frames:
                    await self.send(frames)
                wake_at = min(source.next_due(), self.next_drop)
            delay = wake_at - time.monotonic()
            if delay > 0.0005:
                self.wake.clear()
                if self.ctrl.empty() and not self.gone:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), timeout=delay)
            else:
                await asyncio.sleep(0)  # let the reader and other connections run


class SimulatedExchange:
    """A Coinbase Advanced Trade-compatible market-data server on localhost.

    >>> with SimulatedExchange(products=["BTC-USD"], rate=200, port=0) as sim:  # doctest: +SKIP
    ...     ws = websocket.create_connection(sim.url)

    ``rate`` is model messages per second (0 = as fast as possible); ``replay`` serves a recording
    instead of the model, paced by its original timing divided by ``speed`` (0 = at once).
    """

    def __init__(
        self,
        products: list[str] | None = None,
        rate: float = 50.0,
        seed: int = 1,
        depth: int = 2000,
        faults: list[FaultSpec] | None = None,
        replay: Path | None = None,
        speed: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        record_sent: bool = False,
        subscribe_timeout_s: float = 5.0,
        signal: float = 0.0,
        start_ns: int | None = None,
    ) -> None:
        self.products = list(products) if products else list(DEFAULT_PRODUCTS)
        if rate < 0 or not math.isfinite(rate):
            raise UsageError(f"rate must be a number >= 0, got {rate}", where="--rate")
        if speed < 0 or not math.isfinite(speed):
            raise UsageError(f"speed must be a number >= 0, got {speed}", where="--speed")
        if depth < 1:
            raise UsageError(f"depth must be >= 1, got {depth}", where="--depth")
        if signal < 0 or not math.isfinite(signal):
            raise UsageError(f"signal must be a number >= 0, got {signal}", where="--signal")
        if start_ns is not None and rate <= 0:
            raise UsageError("a simulated clock (--start) needs a rate > 0", where="--rate")
        self.signal = signal
        self.start_ns = start_ns
        self.rate = rate
        self.seed = seed
        self.depth = depth
        self.faults = list(faults or [])
        self.replay = Path(replay) if replay is not None else None
        if self.replay is not None:
            from mktpred.simulate.replay import check_replay_file

            check_replay_file(self.replay)
        self.speed = speed
        self.host = host
        self.port = port
        self.record_sent = record_sent
        self.subscribe_timeout_s = subscribe_timeout_s
        self.fault_log: list[FaultEvent] = []
        self._conns: list[ConnectionLog] = []
        self._live: set[_Connection] = set()
        self._budget: dict[int, int | None] = {id(f): f.budget for f in self.faults}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping = False
        self._stop_ev: asyncio.Event | None = None
        self._started_at = time.monotonic()

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    def start(self) -> SimulatedExchange:
        """Start serving in a background thread; returns once the socket listens."""
        if self._thread is not None:
            return self
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="mktpred-simulate", daemon=True)
        self._thread.start()
        self._ready.wait(60)
        if self._start_error is not None:
            self._thread.join(5)
            self._thread = None
            err = self._start_error
            why = getattr(err, "strerror", None) or str(err)
            raise RuntimeFailure(f"cannot listen on {self.host}:{self.port}: {why}")
        return self

    def stop(self) -> None:
        """Close every connection and stop the server (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        self._stopping = True
        if self._stop_ev is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stop_ev.set)
        thread.join(30)
        self._thread = None

    def __enter__(self) -> SimulatedExchange:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observation ------------------------------------------------------------------------------
    def connections(self) -> list[ConnectionLog]:
        """One log per accepted connection, in accept order (live objects)."""
        return list(self._conns)

    def wait_for(self, predicate: Callable[[SimulatedExchange], bool], timeout: float = 30.0) -> bool:
        """Poll ``predicate(self)`` until it is true (``True``) or ``timeout`` seconds pass (``False``)."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    # -- internals --------------------------------------------------------------------------------
    def _stopping_event(self) -> asyncio.Event:
        assert self._stop_ev is not None
        return self._stop_ev

    def _take(self, spec: FaultSpec) -> bool:
        """Use one firing of ``spec`` from the server-wide budget (runs on the loop thread)."""
        left = self._budget.get(id(spec))
        if left is None:
            return True
        if left <= 0:
            return False
        self._budget[id(spec)] = left - 1
        return True

    def _record_fault(self, log: ConnectionLog, kind: str, detail: str) -> None:
        event = FaultEvent(log.index, kind, log.frames_sent, detail)
        log.faults.append(event)
        self.fault_log.append(event)
        logger.warning("fault %s on connection %d at frame %d: %s", kind, log.index, log.frames_sent, detail)

    def _new_source(self, subs: dict[str, list[str]]) -> Source:
        if self.replay is not None:
            return ReplaySource(self.replay, self.speed)
        if self.start_ns is not None:
            return StreamSource(self.products, self.seed, self.depth, self.rate, self.signal, self.start_ns,
                                self.speed, subs)
        cls = LoadSource if self.rate == 0 else ModelSource
        return cls(self.products, self.seed, self.depth, self.rate, subs, self._started_at, self.signal)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # pragma: no cover - surfaced through start()
            self._start_error = self._start_error or exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_ev = asyncio.Event()
        try:
            server: Server = await serve(
                self._handle, self.host, self.port, compression=None, max_size=None, max_queue=None,
                ping_interval=None, write_limit=WRITE_LIMIT, close_timeout=1.0,
            )
        except OSError as exc:
            self._start_error = exc
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        logger.info("listening on %s", self.url)
        self._ready.set()
        await self._stop_ev.wait()
        server.close(close_connections=False)
        await asyncio.gather(*(c.shutdown() for c in list(self._live)), return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout=10)

    async def _handle(self, ws: ServerConnection) -> None:
        log = ConnectionLog(index=len(self._conns))
        with contextlib.suppress(Exception):
            host, port = ws.remote_address[:2]
            log.peer = f"{host}:{port}"
        self._conns.append(log)
        logger.info("connection %d opened from %s", log.index, log.peer)
        conn = _Connection(self, ws, log)
        self._live.add(conn)
        reader = asyncio.create_task(conn.reader())
        try:
            await conn.run()
        except (_Stop, ConnectionClosed):
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            conn.source.close()
            self._live.discard(conn)
            log.closed = True
            logger.info("connection %d closed after %d frames%s", log.index, log.frames_sent,
                        f" ({log.close_reason})" if log.close_reason else "")
