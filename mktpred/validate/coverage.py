"""Coverage per product and UTC day, silences, and heartbeats.

What the store lets us judge, and how:

* a product's connections are the ``conn`` values of its ``l2`` / ``ticker`` / ``trades`` rows;
* a connection is *active* from its first to its last frame in ``messages`` (every channel,
  heartbeats included), except where it sent nothing for longer than ``max_silence``;
* a product's *silences* are the stretches longer than ``max_silence`` with no frame on any of its
  connections: inside a connection, or between one connection's last frame and the next one's
  first (a reconnect).  The collector's ``events`` in a silence (close, stall, open) name the cause;
* coverage of a product on a day = active time / time between the product's first and last frame,
  both clipped to the day.  Days inside that span with no frame at all are listed with 0 %;
* heartbeats: ``messages`` keeps heartbeat *frames* (channel ``heartbeats``) but not their
  ``heartbeat_counter``, so a missing counter value cannot be read directly; the server sends one
  heartbeat a second per connection, so every stretch between two heartbeats longer than 1.5 s is
  counted as ``round(seconds) - 1`` missing seconds.

Silences are warnings, not failures: they describe the feed and the collector's connection, and a
store can hold exactly what was received and still have them.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

import duckdb

from mktpred.coinbase.timestamps import format_iso_ns
from mktpred.validate.content import DATA_TABLES, NS_PER_DAY, TableStats, scan
from mktpred.validate.frames import FrameScan
from mktpred.validate.inventory import Inventory
from mktpred.validate.report import MAX_LISTED, CheckResult, CoverageRow, Finding, Silence, Status

NS_PER_S = 1_000_000_000
Interval = tuple[int, int]


@dataclass
class CoverageResult:
    coverage: CheckResult
    heartbeats: CheckResult
    rows: list[CoverageRow] = field(default_factory=list)
    silences: list[Silence] = field(default_factory=list)
    silences_total: int = 0


def _merge(intervals: list[Interval], tolerance: int) -> list[Interval]:
    """Union of intervals, joining those separated by at most ``tolerance``."""
    out: list[Interval] = []
    for a, b in sorted(intervals):
        if out and a - out[-1][1] <= tolerance:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _subtract(interval: Interval, holes: list[Interval]) -> list[Interval]:
    a, b = interval
    out: list[Interval] = []
    for h0, h1 in sorted(holes):
        if h0 > a:
            out.append((a, min(h0, b)))
        a = max(a, h1)
    if a <= b:
        out.append((a, b))
    return [(x, y) for x, y in out if y >= x]


def _overlap(a: Interval, b: Interval) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def _day_str(day: int) -> str:
    return format_iso_ns(day * NS_PER_DAY)[:10]


def check_coverage(con: duckdb.DuckDBPyConnection, inv: Inventory, stats: dict[str, TableStats],
                   frames: FrameScan, max_silence_s: float) -> CoverageResult:
    """The coverage table, the silences and the heartbeat check."""
    max_silence = int(max_silence_s * NS_PER_S)
    # product -> conn -> (first, last) of its data rows, and rows per (product, day) / conns per day
    rows_per_day: dict[tuple[str, int], int] = defaultdict(int)
    conns_per_day: dict[tuple[str, int], set[str]] = defaultdict(set)
    data_span: dict[str, dict[str, Interval]] = defaultdict(dict)
    for table in DATA_TABLES:
        for g in stats.get(table, TableStats(table)).groups:
            product, conn, day = g.get("product_id"), g.get("conn") or "", g.get("day")
            if product is None or day is None:
                continue
            rows_per_day[(product, day)] += g["n"]
            conns_per_day[(product, day)].add(conn)
            lo, hi = data_span[product].get(conn, (g["t_min"], g["t_max"]))
            data_span[product][conn] = (min(lo, g["t_min"]), max(hi, g["t_max"]))

    msg_files = frames.files
    conn_span: dict[str, Interval] = {}
    conn_silences = frames.silences
    hb_gaps = frames.heartbeat_gaps
    hb_count = frames.heartbeats
    for g in stats.get("messages", TableStats("messages")).groups:
        conn = g.get("conn")
        if conn is None or g["t_min"] is None:
            continue
        lo, hi = conn_span.get(conn, (g["t_min"], g["t_max"]))
        conn_span[conn] = (min(lo, g["t_min"]), max(hi, g["t_max"]))

    events: dict[str, list[tuple[int, str]]] = defaultdict(list)
    ev_files = [str(f.path) for f in inv.usable("events")]
    if ev_files:
        for conn, t, ev in con.execute(
                f"SELECT conn, epoch_ns(time), event FROM {scan()} WHERE event IN ('open', 'subscribed', "
                "'close', 'stall') AND conn IS NOT NULL AND time IS NOT NULL", [ev_files]).fetchall():
            events[conn].append((t, ev))

    rows: list[CoverageRow] = []
    silences: list[Silence] = []
    for product in sorted(data_span):
        conns = data_span[product]
        active: list[Interval] = []
        owner: list[tuple[Interval, str]] = []
        for conn, span in conns.items():
            if conn in conn_span:
                pieces = _subtract(conn_span[conn], conn_silences.get(conn, []))
            else:  # no frames for it in messages: the data rows are all we know
                pieces = [span]
            active.extend(pieces)
            owner.extend((p, conn) for p in pieces)
        merged = _merge(active, max_silence)
        if not merged:
            continue
        product_silences: list[Silence] = []
        for (_, a1), (b0, _) in itertools.pairwise(merged):
            product_silences.append(Silence(product, a1, b0, _cause(a1, b0, owner, conns, events)))
        silences.extend(product_silences)
        first, last = merged[0][0], merged[-1][1]
        hb = [gap for conn in conns for gap in hb_gaps.get(conn, [])]
        for day in range(first // NS_PER_DAY, last // NS_PER_DAY + 1):
            bounds = (max(first, day * NS_PER_DAY), min(last, (day + 1) * NS_PER_DAY))
            covered = sum(_overlap(iv, bounds) for iv in merged)
            day_sil = [s for s in product_silences if _overlap((s.start_ns, s.end_ns), bounds) > 0]
            missing_hb = sum(max(0, round((t - pt) / NS_PER_S) - 1) for pt, t in hb
                             if day * NS_PER_DAY <= pt < (day + 1) * NS_PER_DAY)
            rows.append(CoverageRow(
                product=product, date=_day_str(day), first_ns=bounds[0], last_ns=bounds[1],
                span_s=(bounds[1] - bounds[0]) / NS_PER_S, covered_s=covered / NS_PER_S,
                rows=rows_per_day.get((product, day), 0), conns=len(conns_per_day.get((product, day), ())),
                silences=len(day_sil), longest_silence_s=max((s.seconds for s in day_sil), default=0.0),
                missing_heartbeat_s=missing_hb))

    findings = [Finding("", s.text(), Status.WARN, count=round(s.seconds)) for s in silences]
    worst_row = min(rows, key=lambda r: r.coverage, default=None)
    low = (f"; lowest coverage {worst_row.coverage:.2%} ({worst_row.product} {worst_row.date})"
           if worst_row else "")
    summary = None
    if silences:
        longest = max(silences, key=lambda s: s.seconds)
        summary = (f"{len(silences)} silences longer than {max_silence_s:g} s (longest {longest.seconds:,.1f} s, "
                   f"{longest.product} from {format_iso_ns(longest.start_ns)}){low}")
    note = "" if msg_files else " (no messages table: spans from data rows only)"
    coverage = CheckResult.from_findings(
        "coverage", findings, checked=len(rows), summary=summary,
        passed=f"{len(rows)} product-days, no silence longer than {max_silence_s:g} s{low}{note}")
    return CoverageResult(coverage, _heartbeat_check(conn_span, hb_count, hb_gaps), rows,
                          silences[:MAX_LISTED], len(silences))


def _cause(start: int, end: int, owner: list[tuple[Interval, str]], conns: dict[str, Interval],
           events: dict[str, list[tuple[int, str]]]) -> str:
    """Why nothing came: the collector's events in the silence, or a change of connection."""
    seen = sorted({ev for conn in conns for t, ev in events.get(conn, []) if start <= t <= end})
    before = {c for (a, b), c in owner if b == start}
    after = {c for (a, b), c in owner if a == end}
    if seen:
        return "collector events: " + ", ".join(seen)
    if before and after and not before & after:
        return "between connections"
    return "no frames on an open connection"


def _heartbeat_check(conn_span: dict[str, Interval], hb_count: dict[str, int],
                     hb_gaps: dict[str, list[Interval]]) -> CheckResult:
    findings: list[Finding] = []
    for conn in sorted(conn_span):
        if conn not in hb_count:
            findings.append(Finding(f"conn {conn}", "no heartbeat frames (missing seconds not judged)",
                                    Status.WARN))
            continue
        gaps = hb_gaps.get(conn, [])
        missing = sum(max(0, round((t - pt) / NS_PER_S) - 1) for pt, t in gaps)
        if missing:
            pt, t = max(gaps, key=lambda g: g[1] - g[0])
            findings.append(Finding(
                f"conn {conn}", f"{missing:,} seconds without a heartbeat in {len(gaps)} stretches "
                                f"(longest {format_iso_ns(pt)} to {format_iso_ns(t)})", Status.WARN, count=missing))
    total = sum(hb_count.values())
    if not conn_span:
        return CheckResult("heartbeats", Status.PASS, 0, "no connections in messages: nothing to check")
    return CheckResult.from_findings(
        "heartbeats", findings, checked=total,
        passed=f"{total:,} heartbeats on {len(hb_count)} connections, none missing")
