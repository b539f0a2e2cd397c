"""What the recorder reports: live counters, the status snapshots the CLI renders, the run result."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from mktpred.collect.segments import RepairedSegment
from mktpred.redact import redact_url as redact_url  # re-exported: collect's modules use it here


class Notices:
    """Human-readable notices (reconnects, gaps, a full buffer) handed from the threads to the CLI."""

    def __init__(self, maxlen: int = 1000) -> None:
        self._q: deque[tuple[str, str]] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def add(self, level: str, message: str) -> None:
        with self._lock:
            self._q.append((level, message))

    def drain(self) -> tuple[tuple[str, str], ...]:
        with self._lock:
            out = tuple(self._q)
            self._q.clear()
            return out


@dataclass
class ConnectionStats:
    """Counters of one connection slot (its products), across its reconnects.  Written by its
    reader thread only; read by snapshots."""

    slot: int
    products: tuple[str, ...]
    conn: str | None = None
    state: str = "starting"  # connecting | open | backoff | stopped | gave up
    conns: list[str] = field(default_factory=list)
    frames: int = 0
    raw_frames: int = 0
    rows: int = 0
    bytes_received: int = 0
    events: int = 0
    reconnects: int = 0
    gaps: int = 0
    missing: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    stalls: int = 0
    resubscribes: int = 0
    server_errors: int = 0
    last_frame_mono: float | None = None
    last_error: str = ""
    last_server_error: str = ""
    #: channel -> [frames, rows]
    channels: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class ChannelStatus:
    channel: str
    frames: int
    rows: int
    frames_per_s: float
    rows_per_s: float


@dataclass(frozen=True)
class ConnectionStatus:
    slot: int
    conn: str | None
    products: tuple[str, ...]
    state: str
    frames: int
    raw_frames: int
    rows: int
    bytes_received: int
    frames_per_s: float
    rows_per_s: float
    reconnects: int
    gaps: int
    missing: int
    duplicates: int
    out_of_order: int
    stalls: int
    last_frame_age_s: float | None
    last_error: str
    channels: tuple[ChannelStatus, ...]


@dataclass(frozen=True)
class CollectStatus:
    """One status snapshot: what the live panel and the summary lines show."""

    elapsed_s: float
    connections: tuple[ConnectionStatus, ...]
    segment: str | None
    bytes_written: int
    lines_written: int
    segments_sealed: int
    buffer_bytes: int
    buffer_capacity: int
    buffer_peak_bytes: int
    buffer_full_events: int
    reader_blocked_s: float
    #: ``(level, message)`` pairs since the previous snapshot; level is ``info`` or ``warn``
    notices: tuple[tuple[str, str], ...] = ()

    @property
    def buffer_fill(self) -> float:
        return self.buffer_bytes / self.buffer_capacity if self.buffer_capacity else 0.0

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.connections)

    @property
    def frames_per_s(self) -> float:
        return sum(c.frames_per_s for c in self.connections)

    @property
    def rows_per_s(self) -> float:
        return sum(c.rows_per_s for c in self.connections)

    @property
    def reconnects(self) -> int:
        return sum(c.reconnects for c in self.connections)

    @property
    def gaps(self) -> int:
        return sum(c.gaps for c in self.connections)


@dataclass(frozen=True)
class ConnectionSummary:
    slot: int
    products: tuple[str, ...]
    conns: tuple[str, ...]
    frames: int
    raw_frames: int
    rows: int
    bytes_received: int
    reconnects: int
    gaps: int
    missing: int
    duplicates: int
    out_of_order: int
    stalls: int
    resubscribes: int
    server_errors: int


@dataclass(frozen=True)
class CollectResult:
    """The run summary (``mktpred collect --json``)."""

    run_id: str
    url: str
    raw_dir: str
    products: tuple[str, ...]
    channels: tuple[str, ...]
    started: str
    duration_s: float
    stopped_by: str  # duration | stop
    frames: int
    raw_frames: int
    rows: int
    events: int
    bytes_received: int
    lines_written: int
    bytes_written: int
    segments: tuple[str, ...]
    repaired: tuple[RepairedSegment, ...]
    trimmed_bytes: int
    reconnects: int
    gaps: int
    missing: int
    duplicates: int
    out_of_order: int
    stalls: int
    server_errors: int
    last_server_error: str  # the text of the last server error frame ("" when none)
    error: str | None  # why the run failed (the error line), None when it succeeded
    buffer_peak_bytes: int
    buffer_full_events: int
    reader_blocked_s: float
    connections: tuple[ConnectionSummary, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["repaired"] = [r.to_dict() for r in self.repaired]
        return d
