"""``mktpred simulate --to-raw``: hours of simulated market written as sealed raw segments at full
speed, without a socket, plus the honesty oracle (``oracle.json``) beside them.

The segments are what ``mktpred collect`` would have recorded from ``mktpred simulate --start T``
(the same :class:`~mktpred.simulate.stream.ModelStream`): one connection, the collector's ``open``
and ``subscribed`` event records, one subscribe per channel (level2, ticker, market_trades, then
heartbeats) answered by snapshots and a ``subscriptions`` ack, ``sequence_num`` from 0, a ``close``
record at the end.  Records are built with the collector's own functions
(:mod:`mktpred.collect.records`) and written with its :class:`~mktpred.collect.segments.SegmentWriter`,
rotating at UTC midnight like its writer.  ``recv_ns`` is the frame's model time plus a fixed
latency (:data:`LATENCY_NS`), so receive times strictly increase.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mktpred.coinbase import format_rfc3339_ns
from mktpred.collect.clock import NS_PER_DAY, next_midnight_ns, utc_stamp
from mktpred.collect.records import conn_id, event_record, frame_record, line_prefix
from mktpred.collect.segments import DirectoryLock, SegmentWriter
from mktpred.errors import OutputNotWritable, UsageError
from mktpred.progress import Progress
from mktpred.simulate.model import SIGNAL_SLOPE
from mktpred.simulate.oracle import NS_PER_S, OracleTracker
from mktpred.simulate.stream import CONNECT_NS, ModelStream

#: what the collector subscribes to by default, in its order (heartbeats last, always)
DEFAULT_CHANNELS = ("level2", "ticker", "market_trades", "heartbeats")
#: receive time minus the frame's exchange time
LATENCY_NS = 1_000_000
ORACLE_FILE = "oracle.json"
URL = "mktpred-simulate:to-raw"
WRITE_BYTES = 4 << 20
PLANTED_RULE = (f"P(up) = 1 / (1 + exp(-beta * imb_1)), beta = {SIGNAL_SLOPE:g} * signal, "
                "imb_1 = (qb - qa) / (qb + qa)")


@dataclass
class ToRawResult:
    """What one ``--to-raw`` run wrote."""

    raw_dir: Path
    segments: list[str]
    conn: str
    start_ns: int
    end_ns: int
    products: list[str]
    seed: int
    rate: float
    signal: float
    frames: int
    lines: int
    bytes: int
    elapsed_s: float
    oracle_path: Path
    oracle: dict[str, Any] = field(default_factory=dict)

    @property
    def span_s(self) -> float:
        return (self.end_ns - self.start_ns) / NS_PER_S

    def to_json(self) -> dict[str, Any]:
        return {"raw_dir": str(self.raw_dir), "segments": self.segments, "conn": self.conn,
                "start": format_rfc3339_ns(self.start_ns), "end": format_rfc3339_ns(self.end_ns),
                "span_s": self.span_s, "products": self.products, "seed": self.seed, "rate": self.rate,
                "signal": self.signal, "frames": self.frames, "lines": self.lines, "bytes": self.bytes,
                "elapsed_s": round(self.elapsed_s, 3),
                "simulated_hours_per_minute": round(self.span_s / 3600 / max(self.elapsed_s, 1e-9) * 60, 2),
                "oracle_path": str(self.oracle_path), "oracle": self.oracle}


def run_id_for(start_ns: int, seed: int) -> str:
    """The run id a ``--to-raw`` run records under: the collector's shape (UTC start second and a
    4-hex tag), the tag drawn from the seed so that the same run writes the same bytes."""
    return f"{utc_stamp(start_ns)}-{random.Random(f'{seed}:run').getrandbits(16):04x}"


def write_raw(raw_dir: Path, *, products: list[str], span_ns: int, start_ns: int, seed: int = 1,
              depth: int = 2000, rate: float = 50.0, signal: float = 0.0,
              channels: tuple[str, ...] = DEFAULT_CHANNELS, interval_ns: int = NS_PER_S,
              horizons_ns: tuple[int, ...] = (NS_PER_S, 10 * NS_PER_S, 60 * NS_PER_S),
              progress: Callable[[Progress], None] | None = None) -> ToRawResult:
    """Write ``span_ns`` of the simulated market from ``start_ns`` into ``raw_dir`` as sealed segments,
    and ``raw_dir/oracle.json``."""
    if not products:
        raise UsageError("no products to simulate", where="--products")
    if not (rate > 0 and math.isfinite(rate)):
        raise UsageError(f"--to-raw needs a rate > 0 (frames per simulated second), got {rate:g}", where="--rate")
    if span_ns <= 0:
        raise UsageError("the span must be > 0", where="--span")
    if signal < 0 or not math.isfinite(signal):
        raise UsageError(f"signal must be a number >= 0, got {signal}", where="--signal")
    if depth < 1:
        raise UsageError(f"depth must be >= 1, got {depth}", where="--depth")
    try:
        raw_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputNotWritable(f"cannot create the raw directory: {exc.strerror or exc}", str(raw_dir)) from None
    began = time.monotonic()
    lock = DirectoryLock(raw_dir)
    lock.acquire()
    try:
        result = _write(raw_dir, products, span_ns, start_ns, seed, depth, rate, signal, channels, interval_ns,
                        horizons_ns, progress)
    finally:
        lock.release()
    result.elapsed_s = time.monotonic() - began
    return result


def _write(raw_dir: Path, products: list[str], span_ns: int, start_ns: int, seed: int, depth: int, rate: float,
           signal: float, channels: tuple[str, ...], interval_ns: int, horizons_ns: tuple[int, ...],
           progress: Callable[[Progress], None] | None) -> ToRawResult:
    oracle = OracleTracker(interval_ns, horizons_ns)
    open_ns = start_ns
    stream = ModelStream(products, seed=seed, depth=depth, rate=rate, signal=signal, start_ns=start_ns + CONNECT_NS,
                         oracle=oracle)
    end_ns = start_ns + span_ns
    conn = conn_id(run_id_for(open_ns, seed), 1)
    prefix = line_prefix(conn)
    segments = SegmentWriter(raw_dir)
    segments.open(open_ns)
    boundary = next_midnight_ns(open_ns)
    pending: list[bytes] = []
    pending_bytes = 0
    lines = 0
    frames = 0
    seq = 0
    last_recv = open_ns

    def flush() -> None:
        nonlocal pending, pending_bytes
        if pending:
            segments.write(b"".join(pending), len(pending))
            pending, pending_bytes = [], 0

    def put(recv_ns: int, line: bytes) -> None:
        nonlocal boundary, pending_bytes, lines, last_recv
        if recv_ns >= boundary:  # rotate as the collector's writer does: named after the midnight
            flush()
            segments.seal()
            name_ns = boundary if recv_ns < boundary + NS_PER_DAY else recv_ns
            segments.open(name_ns)
            boundary = next_midnight_ns(name_ns)
        pending.append(line)
        pending_bytes += len(line)
        lines += 1
        last_recv = recv_ns
        if pending_bytes >= WRITE_BYTES:
            flush()

    def send(t_ns: int, fr: Any) -> None:
        nonlocal seq, frames
        payload = fr.render(seq)
        if fr.numbered:
            seq += 1
        frames += 1
        put(t_ns + LATENCY_NS, frame_record(t_ns + LATENCY_NS, prefix, payload).line)

    try:
        chans = list(channels)
        put(open_ns, event_record(open_ns, conn, "open", url=URL, products=list(products), channels=chans))
        put(open_ns + CONNECT_NS // 2, event_record(open_ns + CONNECT_NS // 2, conn, "subscribed", channels=chans,
                                                    products=list(products)))
        subs: dict[str, list[str]] = {}
        for ch in chans:
            new = ["heartbeats"] if ch == "heartbeats" else [p for p in products if p not in subs.get(ch, [])]
            subs[ch] = subs.get(ch, []) + new
            for out in stream.answer(ch, new):
                send(out.time_ns, out.frame)
            ack = stream.ack(subs)
            send(ack.time_ns, ack.frame)
        report_every = 64 << 20
        next_report = report_every
        while stream.peek_ns() < end_ns:
            for out in stream.next_batch():
                if out.wanted(subs):
                    send(out.time_ns, out.frame)
            if progress is not None and segments.bytes_total + pending_bytes >= next_report:
                next_report += report_every
                progress(Progress("to-raw", bytes_done=segments.bytes_total + pending_bytes, rows=frames))
        close_ns = max(end_ns, last_recv + 1)
        put(close_ns, event_record(close_ns, conn, "close", reason="shutdown"))
        flush()
        segments.seal()
    except BaseException:
        segments.abort()
        raise
    oracle.finish(end_ns)
    summary = {"signal": signal, "beta": SIGNAL_SLOPE * signal, "rule": PLANTED_RULE, "seed": seed, "rate": rate,
               "products": list(products), "conn": conn, "start": format_rfc3339_ns(start_ns),
               "end": format_rfc3339_ns(end_ns), **oracle.result()}
    oracle_path = raw_dir / ORACLE_FILE
    tmp = oracle_path.with_name(oracle_path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, oracle_path)
    except OSError as exc:
        raise OutputNotWritable(f"cannot write the oracle: {exc.strerror or exc}", str(oracle_path)) from None
    if progress is not None:
        progress(Progress("to-raw", files_done=len(segments.sealed), files_total=len(segments.sealed),
                          bytes_done=segments.bytes_total, rows=frames))
    return ToRawResult(raw_dir=raw_dir, segments=[str(p) for p in segments.sealed], conn=conn, start_ns=start_ns,
                       end_ns=end_ns, products=list(products), seed=seed, rate=rate, signal=signal, frames=frames,
                       lines=lines, bytes=segments.bytes_total, elapsed_s=0.0, oracle_path=oracle_path,
                       oracle=summary)
