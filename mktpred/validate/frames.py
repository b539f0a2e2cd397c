"""One pass over ``messages`` in record order, shared by the sequence and coverage checks.

Record order is the order the collector wrote the frames (segment after segment, then row after
row: :func:`record_order`), which is the order they were received whatever the wall clock did;
``recv_time`` is *not* an order, since the clock can step back (NTP, a VM resumed).  A single window
query (per connection, in record order) compares each frame with the one recorded before it and
keeps only the exceptions in a temporary table ``frame_exceptions`` (``fi`` is the frame's file, an
index into ``FrameScan.files``): the first frame of each connection, sequence steps other than +1
(gaps, duplicates, reversals), receive-time steps longer than ``max_silence`` and receive-time
steps backwards (clock steps, :attr:`FrameScan.clock_steps`).  A clean store keeps a handful of
rows, so what follows costs nothing; heartbeat frames get their own small window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from mktpred.validate.content import scan
from mktpred.validate.inventory import DataFile, Inventory

_RECV = "epoch_ns(coalesce(recv_time, time))"
HEARTBEAT_STEP_NS = 1_500_000_000


@dataclass
class ConnSummary:
    conn: str
    frames: int
    with_seq: int
    seq_min: int | None
    seq_max: int | None
    reversals: int = 0
    repeats: int = 0  #: a frame with the same seq as the one before it
    gaps: int = 0
    missing: int = 0  #: sequence numbers skipped between consecutive frames


@dataclass
class FrameScan:
    """What the messages pass found; ``files`` are the usable messages files it read."""

    files: list[str] = field(default_factory=list)
    conns: dict[str, ConnSummary] = field(default_factory=dict)
    unjudged: int = 0  #: frames without conn or seq
    silences: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  #: conn -> (last, next) recv
    heartbeats: dict[str, int] = field(default_factory=dict)
    heartbeat_gaps: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    #: conn -> (receive time before, receive time after, file index): the clock stepped back
    clock_steps: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)


def record_order(f: DataFile) -> tuple[str, str, str, int]:
    """Files of one table in the order their rows were recorded: by source segment (named by the
    UTC time it was opened; the CSV files of one ``convert --write-csv`` export share it, see
    :func:`mktpred.validate.manifest_checks.segment_key`), then date partition, then file, then
    part (``x.parquet`` before ``x-1.parquet``)."""
    name = f.path.name[: -len(".parquet")]
    part = name[len(f.stem) + 1:] if name != f.stem else ""
    return (Path(f.segment or f.stem).name, f.date, f.stem, int(part) if part.isdigit() else 0)


def scan_frames(con: duckdb.DuckDBPyConnection, inv: Inventory, max_silence_ns: int) -> FrameScan:
    """Run the messages pass; creates temporary table ``frame_exceptions`` on ``con``."""
    out = FrameScan(files=[str(f.path) for f in sorted(inv.usable("messages"), key=record_order)])
    if not out.files:
        return out
    for conn, n, n_seq, lo, hi in con.execute(
            f"SELECT conn, count(*), count(seq), min(seq), max(seq) FROM {scan()} GROUP BY conn",
            [out.files]).fetchall():
        if conn is None:
            out.unjudged += n
            continue
        out.conns[conn] = ConnSummary(conn, n, n_seq, lo, hi)
        out.unjudged += n - n_seq
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE frame_exceptions AS
            SELECT * FROM (
                SELECT conn, seq, t, fi, ri,
                       lag(seq) OVER w AS ps, lag(t) OVER w AS pt
                FROM (SELECT conn, seq, {_RECV} AS t, file_index AS fi, file_row_number AS ri
                      FROM {scan('file_row_number')} WHERE conn IS NOT NULL AND seq IS NOT NULL)
                WINDOW w AS (PARTITION BY conn ORDER BY fi, ri))
            WHERE ps IS NULL OR seq <> ps + 1 OR t - pt > {int(max_silence_ns)} OR t < pt""", [out.files])
    for conn, rev, rep, gaps, missing in con.execute(
            """SELECT conn, count(*) FILTER (WHERE seq < ps), count(*) FILTER (WHERE seq = ps),
                      count(*) FILTER (WHERE seq > ps + 1), coalesce(sum(seq - ps - 1) FILTER (WHERE seq > ps + 1), 0)
               FROM frame_exceptions GROUP BY conn""").fetchall():
        s = out.conns[conn]
        s.reversals, s.repeats, s.gaps, s.missing = rev, rep, gaps, int(missing)
    for conn, pt, t in con.execute(
            f"SELECT conn, pt, t FROM frame_exceptions WHERE t - pt > {int(max_silence_ns)} "
            "ORDER BY conn, pt").fetchall():
        out.silences.setdefault(conn, []).append((pt, t))
    for conn, pt, t, fi in con.execute(
            "SELECT conn, pt, t, fi FROM frame_exceptions WHERE t < pt ORDER BY conn, fi, ri").fetchall():
        out.clock_steps.setdefault(conn, []).append((pt, t, fi))
    for conn, n in con.execute(
            f"SELECT conn, count(*) FROM {scan()} WHERE channel = 'heartbeats' AND conn IS NOT NULL "
            "GROUP BY conn", [out.files]).fetchall():
        out.heartbeats[conn] = n
    for conn, pt, t in con.execute(
            f"""SELECT conn, pt, t FROM (
                    SELECT conn, t, lag(t) OVER (PARTITION BY conn ORDER BY t) AS pt
                    FROM (SELECT conn, {_RECV} AS t FROM {scan()}
                          WHERE channel = 'heartbeats' AND conn IS NOT NULL))
                WHERE t - pt > {HEARTBEAT_STEP_NS} ORDER BY conn, pt""", [out.files]).fetchall():
        out.heartbeat_gaps.setdefault(conn, []).append((pt, t))
    return out
