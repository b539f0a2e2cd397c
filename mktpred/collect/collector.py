"""The recorder: settings, the supervisor that runs the writer and the connection readers, and the
status snapshots and run result it hands to the CLI."""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mktpred.coinbase import SUBSCRIBABLE_CHANNELS, format_rfc3339_ns
from mktpred.collect.buffer import RecordBuffer, Tap
from mktpred.collect.clock import Clock, SystemClock
from mktpred.collect.connection import ConnectionPlan, ConnectionWorker
from mktpred.collect.records import conn_id, new_run_id
from mktpred.collect.segments import DirectoryLock, SegmentWriter, repair_leftovers
from mktpred.collect.status import (
    ChannelStatus,
    CollectResult,
    CollectStatus,
    ConnectionStats,
    ConnectionStatus,
    ConnectionSummary,
    Notices,
    redact_url,
)
from mktpred.collect.writer import WriterThread
from mktpred.config import Config
from mktpred.errors import ConfigError, MktpredError, NoDataReceived, OutputNotWritable

HEARTBEATS = "heartbeats"
#: after a stop, the supervisor waits this long for the readers before sealing without them (a
#: reader stuck in a TCP connect or DNS lookup must not hold SIGTERM up)
READER_JOIN_S = 2.0
StatusCallback = Callable[[CollectStatus], None]


@dataclass(frozen=True)
class CollectSettings:
    """Everything one recorder run needs (built from ``[collect]`` and ``[paths]``)."""

    url: str
    products: tuple[str, ...]
    channels: tuple[str, ...]
    raw_dir: Path
    connections: int = 1
    flush_interval_s: float = 1.0
    stall_timeout_s: float = 10.0
    max_reconnects: int = 0
    buffer_bytes: int = 256 * 2**20
    duration_s: float | None = None
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_reset_after_s: float = 30.0
    max_frame_bytes: int = 16 * 2**20

    @classmethod
    def from_config(cls, cfg: Config, duration_s: float | None = None) -> CollectSettings:
        c = cfg.collect
        return cls(url=c.url, products=tuple(c.products), channels=tuple(c.channels), raw_dir=cfg.paths.raw_dir,
                   connections=c.connections, flush_interval_s=c.flush_interval_s,
                   stall_timeout_s=c.stall_timeout_s, max_reconnects=c.max_reconnects,
                   buffer_bytes=c.buffer_mb * 2**20, duration_s=duration_s,
                   backoff_initial_s=c.backoff.initial_s, backoff_max_s=c.backoff.max_s,
                   backoff_reset_after_s=c.backoff.reset_after_s, max_frame_bytes=c.max_frame_mb * 2**20)

    def subscribed_channels(self) -> tuple[str, ...]:
        """The configured channels plus ``heartbeats`` (always), in order, without repeats."""
        return tuple(dict.fromkeys([*self.channels, HEARTBEATS]))

    def check(self) -> None:
        """Raise :class:`ConfigError` for settings no run could use."""
        if not self.url.startswith(("ws://", "wss://")):
            raise ConfigError(f"collect.url must be a ws:// or wss:// URL, got {redact_url(self.url)!r}")
        if not self.products or any(not p.strip() for p in self.products):
            raise ConfigError("collect.products must be a non-empty list of product ids")
        unknown = [c for c in self.channels if c not in SUBSCRIBABLE_CHANNELS]
        if unknown:
            raise ConfigError(f"collect.channels: unknown channel {unknown[0]!r} "
                              f"(known: {', '.join(SUBSCRIBABLE_CHANNELS)})")
        if self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ConfigError(f"--duration must be > 0 (a finite number of seconds), got {self.duration_s}")

    def plans(self) -> list[ConnectionPlan]:
        """Products dealt round-robin over ``connections`` slots (never more slots than products)."""
        n = min(self.connections, len(self.products))
        return [ConnectionPlan(slot=i + 1, url=self.url, products=tuple(self.products[i::n]),
                               channels=self.subscribed_channels(), stall_timeout_s=self.stall_timeout_s,
                               max_reconnects=self.max_reconnects, backoff_initial_s=self.backoff_initial_s,
                               backoff_max_s=self.backoff_max_s, backoff_reset_after_s=self.backoff_reset_after_s,
                               max_frame_bytes=self.max_frame_bytes)
                for i in range(n)]


class Collector:
    """One recorder run.  ``run()`` blocks until ``stop`` is set, ``duration_s`` has passed or a
    fatal error (output not writable, reconnects exhausted, subscription refused) occurs; it always
    drains the buffer and seals the segment before returning or raising.  A ``duration`` run that
    received no frame at all raises :class:`NoDataReceived`.  After a run that got as far as
    recording, :attr:`result` holds its summary (with ``error`` set when it raised)."""

    def __init__(self, settings: CollectSettings, *, stop: threading.Event | None = None,
                 clock: Clock | None = None, tap: Tap | None = None) -> None:
        """``tap`` (optional, must not block) sees every record line as it is buffered for writing."""
        settings.check()
        self.settings = settings
        self.stop = stop or threading.Event()
        self.clock = clock or SystemClock()
        self.run_id = new_run_id(self.clock.now_ns())
        self.notices = Notices()
        self.buffer = RecordBuffer(settings.buffer_bytes, tap)
        self.segments = SegmentWriter(settings.raw_dir)
        self.plans = settings.plans()
        self.stats = [ConnectionStats(slot=p.slot, products=p.products) for p in self.plans]
        self._counter = itertools.count(1)
        self._counter_lock = threading.Lock()
        self._errors: list[MktpredError] = []
        self._errors_lock = threading.Lock()
        self._start_mono = self.clock.monotonic()
        self._prev: tuple[float, dict[tuple[int, str], tuple[int, int]]] | None = None
        self._warned_full = 0
        self.result: CollectResult | None = None

    # -- helpers for the threads -------------------------------------------------------------------
    def _next_conn_id(self) -> str:
        with self._counter_lock:
            return conn_id(self.run_id, next(self._counter))

    def _fail(self, exc: MktpredError) -> None:
        with self._errors_lock:
            self._errors.append(exc)
        self.stop.set()

    # -- the run -----------------------------------------------------------------------------------
    def run(self, on_status: StatusCallback | None = None, status_every_s: float = 1.0) -> CollectResult:
        s = self.settings
        started_ns = self.clock.now_ns()
        try:
            s.raw_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputNotWritable(f"cannot create the raw directory: {exc.strerror or exc}",
                                    str(s.raw_dir)) from None
        if not s.raw_dir.is_dir():
            raise OutputNotWritable("the raw directory is not a directory", str(s.raw_dir))
        lock = DirectoryLock(s.raw_dir)
        lock.acquire()
        try:
            repaired = repair_leftovers(s.raw_dir)
            self.segments.open(self.clock.now_ns())
            stopped_by = self._supervise(on_status, status_every_s)
        finally:
            lock.release()
        error: MktpredError | None = self._errors[0] if self._errors else None
        if error is None and stopped_by == "duration" and not any(st.frames for st in self.stats):
            why = "; ".join(f"conn {st.slot}: {_why_silent(st)}" for st in self.stats)
            error = NoDataReceived(f"no frame received in {s.duration_s:g} s ({why})")
        self.result = self._result(started_ns, stopped_by, tuple(repaired), str(error) if error else None)
        if error is not None:
            raise error
        return self.result

    def _supervise(self, on_status: StatusCallback | None, status_every_s: float) -> str:
        s = self.settings
        writer = WriterThread(self.buffer, self.segments, self.clock, s.flush_interval_s, self._fail)
        workers = [ConnectionWorker(p, buffer=self.buffer, clock=self.clock, stop=self.stop,
                                    next_conn_id=self._next_conn_id, stats=st, notices=self.notices,
                                    on_error=self._fail)
                   for p, st in zip(self.plans, self.stats, strict=True)]
        writer.start()
        for w in workers:
            w.start()
        stopped_by = "stop"
        deadline = None if s.duration_s is None else self._start_mono + s.duration_s
        try:
            next_status = self.clock.monotonic() + status_every_s if on_status else math.inf
            while not self.stop.is_set():
                now = self.clock.monotonic()
                if deadline is not None and now >= deadline:
                    stopped_by = "duration"
                    break
                wake = next_status if deadline is None else min(next_status, deadline)
                if self.stop.wait(max(0.0, min(wake - now, 0.5))):
                    break
                if on_status is not None and self.clock.monotonic() >= next_status:
                    on_status(self.snapshot())
                    next_status = self.clock.monotonic() + status_every_s
        finally:
            self.stop.set()
            join_until = self.clock.monotonic() + READER_JOIN_S
            for w in workers:
                w.join(max(0.0, join_until - self.clock.monotonic()))
            self.buffer.close()
            writer.join()
        if on_status is not None:
            on_status(self.snapshot())
        return stopped_by

    # -- status ------------------------------------------------------------------------------------
    def snapshot(self) -> CollectStatus:
        """Counters now, with rates over the time since the previous snapshot."""
        now = self.clock.monotonic()
        prev_t, prev = self._prev if self._prev else (self._start_mono, {})
        dt = max(now - prev_t, 1e-9)
        current: dict[tuple[int, str], tuple[int, int]] = {}
        conns = []
        for st in self.stats:
            chans = []
            for name, (frames, rows) in sorted(dict(st.channels).items()):
                pf, pr = prev.get((st.slot, name), (0, 0))
                current[(st.slot, name)] = (frames, rows)
                chans.append(ChannelStatus(name, frames, rows, (frames - pf) / dt, (rows - pr) / dt))
            pf, pr = prev.get((st.slot, ""), (0, 0))
            current[(st.slot, "")] = (st.frames, st.rows)
            age = None if st.last_frame_mono is None else max(0.0, now - st.last_frame_mono)
            conns.append(ConnectionStatus(
                slot=st.slot, conn=st.conn, products=st.products, state=st.state, frames=st.frames,
                raw_frames=st.raw_frames, rows=st.rows, bytes_received=st.bytes_received,
                frames_per_s=(st.frames - pf) / dt, rows_per_s=(st.rows - pr) / dt, reconnects=st.reconnects,
                gaps=st.gaps, missing=st.missing, duplicates=st.duplicates, out_of_order=st.out_of_order,
                stalls=st.stalls, last_frame_age_s=age, last_error=st.last_error, channels=tuple(chans)))
        self._prev = (now, current)
        buf = self.buffer
        if buf.full_events > self._warned_full:
            self._warned_full = buf.full_events
            self.notices.add("warn", f"the writer cannot keep up: buffer full ({buf.capacity / 2**20:.0f} MiB), "
                                     f"readers blocked {buf.blocked_s:.1f} s so far; nothing was dropped")
        seg = self.segments.path
        return CollectStatus(
            elapsed_s=now - self._start_mono, connections=tuple(conns), segment=str(seg) if seg else None,
            bytes_written=self.segments.bytes_total, lines_written=self.segments.lines_total,
            segments_sealed=len(self.segments.sealed), buffer_bytes=buf.nbytes, buffer_capacity=buf.capacity,
            buffer_peak_bytes=buf.peak_bytes, buffer_full_events=buf.full_events,
            reader_blocked_s=buf.blocked_s, notices=self.notices.drain())

    def _result(self, started_ns: int, stopped_by: str, repaired: tuple, error: str | None) -> CollectResult:
        s = self.settings
        summaries = tuple(ConnectionSummary(
            slot=st.slot, products=st.products, conns=tuple(st.conns), frames=st.frames,
            raw_frames=st.raw_frames, rows=st.rows, bytes_received=st.bytes_received,
            reconnects=st.reconnects, gaps=st.gaps, missing=st.missing, duplicates=st.duplicates,
            out_of_order=st.out_of_order, stalls=st.stalls, resubscribes=st.resubscribes,
            server_errors=st.server_errors) for st in self.stats)
        return CollectResult(
            run_id=self.run_id, url=redact_url(s.url), raw_dir=str(s.raw_dir), products=s.products,
            channels=s.subscribed_channels(), started=format_rfc3339_ns(started_ns),
            duration_s=round(self.clock.monotonic() - self._start_mono, 3), stopped_by=stopped_by,
            frames=sum(x.frames for x in summaries), raw_frames=sum(x.raw_frames for x in summaries),
            rows=sum(x.rows for x in summaries), events=sum(st.events for st in self.stats),
            bytes_received=sum(x.bytes_received for x in summaries),
            lines_written=self.segments.lines_total, bytes_written=self.segments.bytes_total,
            segments=tuple(str(p) for p in self.segments.sealed), repaired=repaired,
            trimmed_bytes=sum(r.trimmed_bytes for r in repaired),
            reconnects=sum(x.reconnects for x in summaries), gaps=sum(x.gaps for x in summaries),
            missing=sum(x.missing for x in summaries), duplicates=sum(x.duplicates for x in summaries),
            out_of_order=sum(x.out_of_order for x in summaries), stalls=sum(x.stalls for x in summaries),
            server_errors=sum(x.server_errors for x in summaries),
            last_server_error=next((st.last_server_error for st in self.stats if st.last_server_error), ""),
            error=error, buffer_peak_bytes=self.buffer.peak_bytes, buffer_full_events=self.buffer.full_events,
            reader_blocked_s=round(self.buffer.blocked_s, 3), connections=summaries)


def _why_silent(st: ConnectionStats) -> str:
    """Why a connection slot delivered no frame, for the error line."""
    if st.last_error and st.last_error != "shutdown":
        return f"last: {st.last_error}"
    return "connected, but the server sent nothing" if st.conns else "never connected"


def run_collect(settings: CollectSettings, *, stop: threading.Event | None = None, clock: Clock | None = None,
                on_status: StatusCallback | None = None, status_every_s: float = 1.0) -> CollectResult:
    """Record until ``stop`` is set or ``settings.duration_s`` passes; see :class:`Collector`."""
    return Collector(settings, stop=stop, clock=clock).run(on_status, status_every_s)
