"""Sequence numbers in ``messages``: one counter per connection, so judged within each ``conn``.

* gaps: numbers missing between a connection's first and last frame, and before its first frame
  (Coinbase starts every connection at 0); each listed with its range, the time of the frames
  around it and the file holding the frame after it.  Gaps the collector recorded as ``gap`` events
  in ``events`` are *known*: a warning, not a failure.  Gaps whose every missing number is a frame
  ``convert`` quarantined are *lost in conversion* (the quarantined line is named): a warning here,
  since the ``quarantine`` check judges that loss, and not blamed on the network;
* duplicates: the same number twice on one connection;
* reversals: a number lower than the one recorded just before it (record order: the order the
  collector wrote the frames, see :mod:`mktpred.validate.frames`; never ``recv_time``, which steps
  back with the wall clock — those steps are the ``clock`` check's warnings).

Times are receive times (``recv_time``, else the frame's ``time``).  The shared messages pass
(:mod:`mktpred.validate.frames`) finds the connections with anything to list; only those are read
again, and a connection with reversals is judged on its sorted set of numbers instead.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import duckdb

from mktpred.coinbase.timestamps import format_iso_ns
from mktpred.validate.content import scan
from mktpred.validate.frames import FrameScan
from mktpred.validate.inventory import Inventory
from mktpred.validate.quarantine import QuarantinedLine
from mktpred.validate.report import MAX_LISTED, CheckResult, Finding, SequenceGap, Status

_T = "epoch_ns(coalesce(recv_time, time))"


@dataclass
class SequenceResult:
    check: CheckResult
    gaps: list[SequenceGap] = field(default_factory=list)
    gaps_total: int = 0


def _known_gaps(con: duckdb.DuckDBPyConnection, inv: Inventory) -> dict[str, list[tuple[int, int]]]:
    """``conn -> [(expected, got)]`` from the collector's ``gap`` events."""
    files = [str(f.path) for f in inv.usable("events")]
    if not files:
        return {}
    rows = con.execute(f"SELECT conn, expected, got FROM {scan()} WHERE event = 'gap' "
                       "AND expected IS NOT NULL AND got IS NOT NULL", [files]).fetchall()
    known: dict[str, list[tuple[int, int]]] = {}
    for conn, expected, got in rows:
        known.setdefault(conn, []).append((expected, got))
    return known


def _is_known(known: dict[str, list[tuple[int, int]]], conn: str, first: int, last: int) -> bool:
    return any(expected <= first and got >= last + 1 for expected, got in known.get(conn, ()))


class _Attribution:
    """Which missing sequence numbers are quarantined frames (lost in conversion)."""

    def __init__(self, known: dict[str, list[tuple[int, int]]],
                 lost: dict[str, dict[int, QuarantinedLine]] | None) -> None:
        self.known = known
        self.lost = lost or {}
        self.sorted = {conn: sorted(seqs) for conn, seqs in self.lost.items()}

    def gap(self, conn: str, first: int, last: int, before: int | None, after: int | None) -> SequenceGap:
        seqs = self.sorted.get(conn, [])
        inside = seqs[bisect.bisect_left(seqs, first):bisect.bisect_right(seqs, last)]
        note = ""
        if inside:
            lines = [self.lost[conn][s] for s in inside[:3]]
            note = "; ".join(f"line {q.line} of {q.source}: {q.short_reason}" for q in lines) + \
                (f" (+{len(inside) - 3} more)" if len(inside) > 3 else "")
        return SequenceGap(conn, first, last, before, after, _is_known(self.known, conn, first, last),
                           len(inside), note)


def _status(gap: SequenceGap) -> Status:
    return Status.WARN if gap.known or gap.lost_in_conversion else Status.FAIL


def check_sequence(con: duckdb.DuckDBPyConnection, inv: Inventory, frames: FrameScan,
                   lost: dict[str, dict[int, QuarantinedLine]] | None = None) -> SequenceResult:
    """Gaps, duplicates and reversals of ``messages.seq`` within each connection; ``lost`` (conn ->
    seq -> line) are the frames convert quarantined, to which gaps are attributed."""
    if not frames.files:
        return SequenceResult(CheckResult("sequence", Status.PASS, 0, "no messages table: nothing to check"))
    rel = {str(f.path): f.rel for f in inv.usable("messages")}
    conns = [c for c in frames.conns.values() if c.with_seq > 0]
    attribution = _Attribution(_known_gaps(con, inv), lost)
    gaps: list[tuple[SequenceGap, str]] = []
    findings: list[Finding] = []
    n_dups = 0

    # in receive order (no reversal) every exception is a gap, a repeat, or the first frame
    simple = [c.conn for c in conns if not c.reversals and (c.gaps or c.repeats or (c.seq_min or 0) > 0)]
    if simple:
        for conn, seq, ps, t, pt, fi in con.execute(
                "SELECT conn, seq, ps, t, pt, fi FROM frame_exceptions "
                "WHERE conn IN (SELECT unnest(?::VARCHAR[])) ORDER BY conn, seq", [simple]).fetchall():
            f = frames.files[fi]
            if ps is None and seq > 0:
                gaps.append((attribution.gap(conn, 0, seq - 1, None, t), f))
            elif ps is not None and seq > ps + 1:
                gaps.append((attribution.gap(conn, ps + 1, seq - 1, pt, t), f))
            elif ps is not None and seq == ps:
                n_dups += 1
                findings.append(Finding(rel.get(f, f),
                                        f"conn {conn}: seq {seq} received twice (at {_iso(t)})"))

    # with reversals, judge gaps on the sorted set and duplicates by counting
    tangled = [c.conn for c in conns if c.reversals]
    if tangled:
        for conn, first, last, pt, t, f in con.execute(
                f"""WITH s AS (SELECT conn, seq, min({_T}) AS t, any_value(filename) AS f
                               FROM {scan('filename')} WHERE conn IN (SELECT unnest(?::VARCHAR[]))
                               AND seq IS NOT NULL GROUP BY conn, seq),
                         w AS (SELECT conn, seq, t, f, lag(seq) OVER win AS ps, lag(t) OVER win AS pt
                               FROM s WINDOW win AS (PARTITION BY conn ORDER BY seq))
                    SELECT conn, coalesce(ps + 1, 0), seq - 1, pt, t, f FROM w
                    WHERE (ps IS NULL AND seq > 0) OR seq > ps + 1 ORDER BY conn, seq""",
                [frames.files, tangled]).fetchall():
            gaps.append((attribution.gap(conn, first, last, pt, t), f))
        for conn, seq, n, t, f in con.execute(
                f"SELECT conn, seq, count(*), min({_T}), any_value(filename) FROM {scan('filename')} "
                "WHERE conn IN (SELECT unnest(?::VARCHAR[])) AND seq IS NOT NULL "
                "GROUP BY conn, seq HAVING count(*) > 1 ORDER BY conn, seq", [frames.files, tangled]).fetchall():
            n_dups += n - 1
            findings.append(Finding(rel.get(f, f),
                                    f"conn {conn}: seq {seq} received {n} times (at {_iso(t)})", count=n - 1))
        for conn, seq, ps, t, fi in con.execute(
                "SELECT conn, seq, ps, t, fi FROM frame_exceptions WHERE seq < ps "
                "AND conn IN (SELECT unnest(?::VARCHAR[])) ORDER BY conn, fi, ri", [tangled]).fetchall():
            findings.append(Finding(rel[frames.files[fi]],
                                    f"conn {conn}: seq {seq} received after {ps} (reversal at {_iso(t)})"))

    n_rev = sum(c.reversals for c in conns)
    for gap, f in gaps:
        findings.append(Finding(rel.get(f, f), gap.text(), _status(gap), count=gap.missing))
    unknown = [g for g, _ in gaps if _status(g) is Status.FAIL]
    known = [g for g, _ in gaps if g.known]
    converted = [g for g, _ in gaps if g.lost_in_conversion and not g.known]
    parts = []
    if unknown:
        parts.append(f"{len(unknown)} gaps ({sum(g.missing for g in unknown):,} frames)")
    if known:
        parts.append(f"{len(known)} known gaps recorded by the collector "
                     f"({sum(g.missing for g in known):,} frames)")
    if converted:
        parts.append(f"{len(converted)} gaps lost in conversion (quarantined: "
                     f"{sum(g.missing for g in converted):,} frames)")
    if n_dups:
        parts.append(f"{n_dups} duplicate frames")
    if n_rev:
        parts.append(f"{n_rev} reversals")
    n_frames = sum(c.with_seq for c in conns)
    suffix = f"; {frames.unjudged:,} frames without conn/seq not judged" if frames.unjudged else ""
    summary_text = ", ".join(parts) + f" on {len(conns)} connections" + suffix if parts else None
    check = CheckResult.from_findings(
        "sequence", findings, checked=n_frames, summary=summary_text,
        passed=f"{n_frames:,} frames on {len(conns)} connections, no gaps, duplicates or reversals{suffix}")
    listed = sorted((g for g, _ in gaps), key=lambda g: (g.conn, g.first))
    return SequenceResult(check, listed[:MAX_LISTED], len(listed))


def check_clock(inv: Inventory, frames: FrameScan) -> CheckResult:
    """Receive-time steps backwards between consecutive frames of a connection (in record order):
    the local wall clock stepped back.  A warning about ``recv_time`` (latency and silences measured
    across the step are off by it); the sequence is judged by ``(conn, seq)`` and is unaffected."""
    if not frames.files:
        return CheckResult("clock", Status.PASS, 0, "no messages table: nothing to check")
    rel = {str(f.path): f.rel for f in inv.usable("messages")}
    findings = [
        Finding(rel[frames.files[fi]], f"conn {conn}: receive time stepped back {(pt - t) / 1e9:,.3f} s "
                                       f"(from {_iso(pt)} to {_iso(t)})", Status.WARN)
        for conn, steps in sorted(frames.clock_steps.items()) for pt, t, fi in steps]
    n_frames = sum(c.frames for c in frames.conns.values())
    summary = None
    if findings:
        conn, (pt, t, _) = max(((c, s) for c, steps in frames.clock_steps.items() for s in steps),
                               key=lambda cs: cs[1][0] - cs[1][1])
        summary = (f"the receive clock stepped back {len(findings)} times on {len(frames.clock_steps)} connections "
                   f"(largest {(pt - t) / 1e9:,.3f} s, conn {conn} at {_iso(t)}); sequence judged by (conn, seq)")
    return CheckResult.from_findings("clock", findings, checked=n_frames, summary=summary,
                                     passed=f"{n_frames:,} frames, receive time never steps back")


def _iso(ns: int | None) -> str:
    return "?" if ns is None else format_iso_ns(ns)
