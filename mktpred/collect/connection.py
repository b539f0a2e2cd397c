"""One connection slot: connect, subscribe, read frames into the buffer, check sequence numbers,
watch for stalls, and reconnect forever (or until ``max_reconnects``)."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import websocket

from mktpred.coinbase import subscribe_message
from mktpred.collect.backoff import Backoff
from mktpred.collect.buffer import BufferAborted, RecordBuffer
from mktpred.collect.clock import Clock
from mktpred.collect.records import event_record, frame_record, line_prefix
from mktpred.collect.sequence import SequenceChecker, Verdict
from mktpred.collect.status import ConnectionStats, Notices, redact_url
from mktpred.errors import CollectorGaveUp, MktpredError, SubscriptionRefused

#: how often a silent reader wakes up to check the stop flag and the stall watchdog
TICK_S = 0.25
#: a level2 resubscription not answered by a snapshot within this long may be repeated
RESUBSCRIBE_RETRY_S = 10.0
#: the TCP connect + TLS + HTTP upgrade never take longer than this (a server that trickles header
#: lines forever would otherwise hold the connection, past --duration and past SIGTERM)
MIN_HANDSHAKE_TIMEOUT_S = 1.0
#: how often the handshake watchdog looks at the stop flag
HANDSHAKE_TICK_S = 0.1
#: a server error frame with these words means it refused what was asked for (Coinbase says
#: "failure to subscribe", the older Exchange feed "Failed to subscribe"; an unknown channel is
#: answered "authentication failure")
_REFUSAL = re.compile(r"subscri|product|authentic", re.IGNORECASE)


@dataclass(frozen=True)
class ConnectionPlan:
    """What one slot connects to and subscribes."""

    slot: int
    url: str
    products: tuple[str, ...]
    channels: tuple[str, ...]  # heartbeats included
    stall_timeout_s: float
    max_reconnects: int  # 0 = forever
    backoff_initial_s: float
    backoff_max_s: float
    backoff_reset_after_s: float
    max_frame_bytes: int = 16 * 2**20

    @property
    def handshake_timeout_s(self) -> float:
        """The deadline of connect + TLS + HTTP upgrade, as a whole."""
        return max(self.stall_timeout_s, MIN_HANDSHAKE_TIMEOUT_S)


class _Ended(Exception):
    """The current connection is over (the message says why)."""


class _HandshakeWatchdog(threading.Thread):
    """Shuts the socket of a connection attempt down when ``stop`` is set or the handshake deadline
    passes; the blocked ``connect`` then fails at once instead of waiting on a trickling server."""

    def __init__(self, ws: websocket.WebSocket, stop: threading.Event, timeout_s: float) -> None:
        super().__init__(name="mktpred-collect-handshake", daemon=True)
        self.ws = ws
        self.stop = stop
        self.timeout_s = timeout_s
        self.done = threading.Event()
        self.fired: str | None = None  # "stop" or "deadline" when it cut the attempt short

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not self.done.wait(HANDSHAKE_TICK_S):
            if self.stop.is_set() or time.monotonic() >= deadline:
                self.fired = "stop" if self.stop.is_set() else "deadline"
                break
        while not self.done.is_set():
            # The socket exists only once the TCP connect returned: keep trying until it does (or
            # the attempt ends on its own per-operation timeout).
            sock = self.ws.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv, unlike close()
                except OSError:
                    pass
            self.done.wait(HANDSHAKE_TICK_S)


class ConnectionWorker(threading.Thread):
    """The reader thread of one slot."""

    def __init__(self, plan: ConnectionPlan, *, buffer: RecordBuffer, clock: Clock, stop: threading.Event,
                 next_conn_id: Callable[[], str], stats: ConnectionStats, notices: Notices,
                 on_error: Callable[[MktpredError], None]) -> None:
        super().__init__(name=f"mktpred-collect-conn{plan.slot}", daemon=True)
        self.plan = plan
        self.buffer = buffer
        self.clock = clock
        self.stop = stop
        self.next_conn_id = next_conn_id
        self.stats = stats
        self.notices = notices
        self.on_error = on_error
        self.backoff = Backoff(plan.backoff_initial_s, plan.backoff_max_s)

    # -- the reconnect loop ------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except BufferAborted:
            pass  # the writer failed and has reported why
        except BaseException as exc:  # a bug: stop the run rather than record nothing silently
            self.on_error(MktpredError(f"connection {self.plan.slot} failed: {type(exc).__name__}: {exc}"))
        finally:
            if self.stats.state != "gave up":
                self.stats.state = "stopped"

    def _run(self) -> None:
        plan, st = self.plan, self.stats
        tries = 0  # reconnects since the last healthy connection
        while not self.stop.is_set():
            healthy_s = self._session(self.next_conn_id())
            if self.stop.is_set():
                return
            if healthy_s is not None and healthy_s >= plan.backoff_reset_after_s:
                self.backoff.reset()
                tries = 0
            if plan.max_reconnects and tries >= plan.max_reconnects:
                st.state = "gave up"
                self.on_error(CollectorGaveUp(
                    f"gave up after {tries} reconnect{'s' if tries != 1 else ''} "
                    f"(last: {st.last_error or 'no data'})", f"connection {plan.slot}"))
                return
            tries += 1
            st.reconnects += 1
            delay = self.backoff.next_delay()
            st.state = "backoff"
            self.notices.add("warn", f"conn {plan.slot}: {st.last_error}; reconnecting in {delay:.1f} s")
            if self.stop.wait(delay):
                return

    # -- one connection ----------------------------------------------------------------------------
    def _put_event(self, conn: str, event: str, **details: object) -> None:
        ns = self.clock.now_ns()
        self.buffer.put(ns, event_record(ns, conn, event, **details))
        self.stats.events += 1

    def _session(self, conn: str) -> float | None:
        """Run one connection to its end; returns how long it delivered data (seconds), or
        ``None`` when no frame arrived at all."""
        plan, st, clock = self.plan, self.stats, self.clock
        st.conn = conn
        st.state = "connecting"
        ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=True)
        watchdog = _HandshakeWatchdog(ws, self.stop, plan.handshake_timeout_s)
        watchdog.start()
        try:
            ws.connect(plan.url, timeout=plan.handshake_timeout_s)
        except Exception as exc:  # network, TLS, HTTP status: all retried
            watchdog.done.set()
            watchdog.join()
            if watchdog.fired == "deadline":
                st.last_error = f"connect failed: no WebSocket handshake within {plan.handshake_timeout_s:g} s"
            elif watchdog.fired is None:
                st.last_error = f"connect failed: {_describe(exc)}"
            # (cut short by a stop: the previous attempt's reason is the one worth keeping)
            _close_quietly(ws, False)
            return None
        watchdog.done.set()
        watchdog.join()
        if watchdog.fired is not None:  # the deadline passed just as the handshake completed
            _close_quietly(ws, False)
            if watchdog.fired == "deadline":
                st.last_error = f"connect failed: no WebSocket handshake within {plan.handshake_timeout_s:g} s"
            return None
        st.conns.append(conn)
        st.state = "open"
        started = [clock.monotonic(), 0.0]  # [last data frame (or the open), first data frame]
        reason = "shutdown"
        try:
            self._put_event(conn, "open", url=redact_url(plan.url), products=list(plan.products),
                            channels=list(plan.channels))
            for ch in plan.channels:
                ws.send(subscribe_message(ch, list(plan.products)))
            self._put_event(conn, "subscribed", channels=list(plan.channels), products=list(plan.products))
            ws.settimeout(min(TICK_S, plan.stall_timeout_s / 4))
            self._read(ws, conn, started)
        except _Ended as end:
            reason = str(end)
        except BufferAborted:
            _close_quietly(ws, False)
            raise
        except Exception as exc:  # the link broke (reset, EOF, protocol error, TLS): reconnect
            reason = f"connection lost: {_describe(exc)}"
        st.last_error = reason
        _close_quietly(ws, reason == "shutdown")
        self._put_event(conn, "close", reason=reason)
        return clock.monotonic() - started[1] if started[1] else None

    def _stalled(self, conn: str, silent: float) -> _Ended:
        self.stats.stalls += 1
        stall = self.plan.stall_timeout_s
        self._put_event(conn, "stall", silent_s=round(silent, 3), stall_timeout_s=stall)
        self.notices.add("warn", f"conn {self.plan.slot}: no data for {silent:.1f} s (stall)")
        return _Ended("stall")

    def _too_large(self, conn: str, size: int) -> _Ended:
        limit = self.plan.max_frame_bytes
        self._put_event(conn, "frame_too_large", bytes=size, max_frame_bytes=limit)
        self.notices.add("warn", f"conn {self.plan.slot}: a frame of {size:,} bytes is over the "
                                 f"{limit / 2**20:g} MiB limit (collect.max_frame_mb); reconnecting")
        return _Ended(f"frame too large ({size:,} bytes > {limit:,})")

    def _read(self, ws: websocket.WebSocket, conn: str, times: list[float]) -> None:
        """The hot loop, until stop (returns) or the end of the connection (raises :class:`_Ended`).
        ``times[0]`` is when the last whole data frame arrived, ``times[1]`` when the first did."""
        plan, st, buffer, stop = self.plan, self.stats, self.buffer, self.stop
        now_ns, mono = self.clock.now_ns, self.clock.monotonic
        stall = plan.stall_timeout_s
        max_frame = plan.max_frame_bytes

        # Liveness is a whole data frame, not bytes: pings, or a huge frame trickling in a byte at a
        # time, must not keep a dead feed "alive".  websocket-client answers pings and assembles
        # frames inside recv_data() without returning, so the stop flag, the stall watchdog and the
        # frame-size limit are checked in the socket read it calls for every chunk.
        fb = ws.frame_buffer
        raw_recv = fb.recv
        raw_recv_length = fb.recv_length
        pending = [0]  # bytes announced by the frame headers of the message being assembled

        def recv_guarded(n: int) -> bytes:
            if stop.is_set():
                raise _Ended("shutdown")
            silent = mono() - times[0]
            if silent >= stall:
                raise self._stalled(conn, silent)
            return raw_recv(n)

        def recv_length_checked() -> None:
            raw_recv_length()
            pending[0] += fb.length or 0
            if pending[0] > max_frame:
                raise self._too_large(conn, pending[0])

        fb.recv = recv_guarded
        fb.recv_length = recv_length_checked  # type: ignore[method-assign]  # the one hook before the payload
        prefix = line_prefix(conn)
        checker = SequenceChecker()
        channels = st.channels
        first_session = len(st.conns) == 1
        resub_at: float | None = None  # when level2 was last resubscribed, until a snapshot comes
        resubscribe = False  # a gap asked for a level2 resubscribe once the frame is buffered
        while not stop.is_set():
            try:
                opcode, payload = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                silent = mono() - times[0]
                if silent >= stall:
                    raise self._stalled(conn, silent) from None
                continue
            pending[0] = 0
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise _Ended(f"server closed ({_close_reason(payload)})")
            recv_ns = now_ns()
            t = mono()
            times[0] = t
            st.last_frame_mono = t
            if not times[1]:
                times[1] = t
            st.bytes_received += len(payload)
            frame = frame_record(recv_ns, prefix, payload)
            del payload  # the record line holds the frame now: do not keep two copies alive
            st.frames += 1
            if not frame.valid:
                st.raw_frames += 1
            if frame.error is not None:
                st.server_errors += 1
                st.last_server_error = frame.error[:300]
                if first_session and _REFUSAL.search(frame.error):
                    # On the first connection a refusal is a mistake in what was asked for (an
                    # unknown product): retrying would record heartbeats only, for ever.
                    buffer.put(recv_ns, frame.line)
                    self.on_error(SubscriptionRefused(
                        f"the server refused the subscription: {frame.error[:300]}", f"conn {plan.slot}"))
                    raise _Ended("subscription refused")
                self.notices.add("warn", f"conn {plan.slot}: the server says: {frame.error[:300]}")
            ch = frame.channel or "?"
            if frame.valid or frame.channel is not None:
                c = channels.get(ch)
                if c is None:
                    c = channels[ch] = [0, 0]
                c[0] += 1
                c[1] += frame.rows
            st.rows += frame.rows
            if frame.l2_snapshot:
                resub_at = None
            seq = frame.seq
            if seq is None:
                pass
            elif seq == checker.expected:
                checker.expected = seq + 1
            else:
                expected = checker.expected
                verdict = checker.check(seq)
                if verdict is Verdict.GAP:
                    st.gaps += 1
                    st.missing += seq - expected
                    action = "none"
                    if "level2" in plan.channels and (resub_at is None or t - resub_at > RESUBSCRIBE_RETRY_S):
                        action = "resubscribe level2"
                    self._put_event(conn, "gap", expected=expected, got=seq, missing=seq - expected,
                                    channel=ch, action=action)
                    self.notices.add("warn", f"conn {plan.slot}: sequence gap, expected {expected} got {seq}"
                                     + (f" ({action})" if action != "none" else ""))
                    resubscribe = action != "none"
                else:
                    if verdict is Verdict.DUPLICATE:
                        st.duplicates += 1
                    else:
                        st.out_of_order += 1
                    self._put_event(conn, verdict.value, expected=expected, got=seq, channel=ch)
            # Buffer the frame before any send: a send on a dead socket raises, and the frame that
            # revealed the gap must not be lost with it.
            buffer.put(recv_ns, frame.line)
            if resubscribe:
                resubscribe = False
                # Unsubscribe + subscribe: the server answers with a fresh level2 snapshot.
                products = list(plan.products)
                ws.send(subscribe_message("level2", products, unsubscribe=True))
                ws.send(subscribe_message("level2", products))
                resub_at = t
                st.resubscribes += 1


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _close_reason(payload: bytes) -> str:
    if len(payload) >= 2:
        (code,) = struct.unpack("!H", payload[:2])
        text = payload[2:].decode("utf-8", "replace")
        return f"code {code}" + (f": {text}" if text else "")
    return "no code"


def _close_quietly(ws: websocket.WebSocket, polite: bool) -> None:
    try:
        if polite:
            ws.send_close()
    except Exception:
        pass
    try:
        ws.shutdown()
    except Exception:
        pass
