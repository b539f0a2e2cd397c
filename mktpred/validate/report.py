"""The validation report: one result per check, the coverage table, gaps and silences.

Everything here is plain data (dataclasses) so the CLI can render it and ``--json`` can dump it.
Times are nanoseconds since the Unix epoch (UTC) in the objects and ISO-8601 strings in JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mktpred.coinbase.timestamps import format_iso_ns

#: at most this many locations are kept per check (``count`` still says how many there were)
MAX_LOCATIONS = 50
#: at most this many gaps / silences are listed in the report (the totals are always exact)
MAX_LISTED = 1000


class Status(StrEnum):
    """Outcome of one check, in increasing severity."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        return {"pass": 0, "warn": 1, "fail": 2}[self.value]


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status (``pass`` for none)."""
    return max(statuses, key=lambda s: s.rank, default=Status.PASS)


@dataclass(frozen=True)
class Finding:
    """One problem a check found: where, what, and how bad."""

    location: str
    message: str
    status: Status = Status.FAIL
    count: int = 1  #: rows / files / seconds concerned

    def text(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


@dataclass
class CheckResult:
    """The result of one check."""

    name: str
    status: Status
    count: int  #: problems found (0 when the check passed)
    details: str  #: one line for the summary table
    locations: list[str] = field(default_factory=list)  #: files, ranges, first MAX_LOCATIONS
    checked: int = 0  #: files / rows / connections the check looked at

    @classmethod
    def from_findings(cls, name: str, findings: list[Finding], *, checked: int, passed: str,
                      summary: str | None = None) -> CheckResult:
        """``pass`` with ``passed`` as details when there are no findings, else the worst status."""
        if not findings:
            return cls(name, Status.PASS, 0, passed, [], checked)
        status = worst(f.status for f in findings)
        ordered = sorted(findings, key=lambda f: -f.status.rank)
        details = summary or ordered[0].text() + (f" (+{len(findings) - 1} more)" if len(findings) > 1 else "")
        return cls(name, status, len(findings), details, [f.text() for f in ordered[:MAX_LOCATIONS]], checked)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status.value, "count": self.count, "checked": self.checked,
                "details": self.details, "locations": self.locations}


def _iso(ns: int | None) -> str | None:
    return None if ns is None else format_iso_ns(ns)


@dataclass(frozen=True)
class SequenceGap:
    """Sequence numbers ``first..last`` missing on connection ``conn``."""

    conn: str
    first: int  #: first missing sequence number
    last: int  #: last missing sequence number
    before_ns: int | None  #: time of the frame before the gap
    after_ns: int | None  #: time of the frame after the gap
    known: bool  #: the collector recorded it as a ``gap`` event
    #: how many of the missing numbers are frames ``convert`` quarantined (lost in conversion)
    quarantined: int = 0
    quarantine_note: str = ""  #: which quarantined line(s): ``line 7 of coinbase_...jsonl: reason``

    @property
    def missing(self) -> int:
        return self.last - self.first + 1

    @property
    def lost_in_conversion(self) -> bool:
        """Every missing frame is a quarantined line: conversion lost them, not the network."""
        return self.quarantined == self.missing

    def text(self) -> str:
        span = f"{self.first}" if self.first == self.last else f"{self.first}..{self.last}"
        when = f" between {_iso(self.before_ns)} and {_iso(self.after_ns)}" if self.before_ns is not None else \
            f" before {_iso(self.after_ns)}"
        cause = ""
        if self.quarantined:
            share = "" if self.lost_in_conversion else f"{self.quarantined} of them "
            cause = f" [{share}lost in conversion: quarantined {self.quarantine_note}]"
        return f"conn {self.conn}: seq {span} missing ({self.missing}){when}" + \
            (" [recorded by the collector]" if self.known else "") + cause

    def to_dict(self) -> dict[str, Any]:
        return {"conn": self.conn, "first": self.first, "last": self.last, "missing": self.missing,
                "before": _iso(self.before_ns), "after": _iso(self.after_ns), "known": self.known,
                "quarantined": self.quarantined}


@dataclass(frozen=True)
class Silence:
    """No frame at all on the connections carrying ``product`` from ``start`` to ``end``."""

    product: str
    start_ns: int
    end_ns: int
    cause: str  #: "disconnect" (collector close/stall/open events in it), "between connections", ""

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def text(self) -> str:
        cause = f" ({self.cause})" if self.cause else ""
        return f"{self.product}: {self.seconds:,.1f} s silent from {_iso(self.start_ns)} to {_iso(self.end_ns)}{cause}"

    def to_dict(self) -> dict[str, Any]:
        return {"product": self.product, "start": _iso(self.start_ns), "end": _iso(self.end_ns),
                "seconds": round(self.seconds, 3), "cause": self.cause}


@dataclass(frozen=True)
class CoverageRow:
    """Coverage of one product on one UTC day."""

    product: str
    date: str
    first_ns: int  #: first frame on the product's connections that day
    last_ns: int  #: last frame
    span_s: float  #: last - first
    covered_s: float  #: span minus silences longer than --max-silence
    rows: int  #: data rows (l2 + ticker + trades) of the product that day
    conns: int  #: connections that carried the product that day
    silences: int  #: silences longer than --max-silence overlapping the day
    longest_silence_s: float
    missing_heartbeat_s: int  #: seconds without a heartbeat on the product's connections

    @property
    def coverage(self) -> float:
        return 1.0 if self.span_s <= 0 else self.covered_s / self.span_s

    def to_dict(self) -> dict[str, Any]:
        return {"product": self.product, "date": self.date, "first": _iso(self.first_ns),
                "last": _iso(self.last_ns), "span_s": round(self.span_s, 3),
                "covered_s": round(self.covered_s, 3), "coverage": round(self.coverage, 6),
                "rows": self.rows, "conns": self.conns, "silences": self.silences,
                "longest_silence_s": round(self.longest_silence_s, 3),
                "missing_heartbeat_s": self.missing_heartbeat_s}


@dataclass
class ValidationReport:
    """Everything ``validate`` found about one store."""

    store: str
    raw_dir: str | None
    max_silence_s: float
    files: int = 0
    bytes: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    checks: list[CheckResult] = field(default_factory=list)
    coverage: list[CoverageRow] = field(default_factory=list)
    gaps: list[SequenceGap] = field(default_factory=list)
    gaps_total: int = 0
    silences: list[Silence] = field(default_factory=list)
    silences_total: int = 0
    in_progress: list[str] = field(default_factory=list)
    #: per source with quarantined (or torn) lines: counts, reasons, the lines (QuarantinedSource.to_dict)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  #: seconds per stage

    @property
    def status(self) -> Status:
        return worst(c.status for c in self.checks)

    @property
    def ok(self) -> bool:
        """No check failed (warnings allowed)."""
        return self.status is not Status.FAIL

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status is Status.FAIL]

    def check(self, name: str) -> CheckResult:
        """The result of the check called ``name`` (``KeyError`` if it did not run)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store, "raw_dir": self.raw_dir, "status": self.status.value, "ok": self.ok,
            "max_silence_s": self.max_silence_s, "files": self.files, "bytes": self.bytes,
            "rows": self.rows, "elapsed_s": round(self.elapsed_s, 3),
            "checks": [c.to_dict() for c in self.checks],
            "coverage": [c.to_dict() for c in self.coverage],
            "gaps": [g.to_dict() for g in self.gaps], "gaps_total": self.gaps_total,
            "silences": [s.to_dict() for s in self.silences], "silences_total": self.silences_total,
            "in_progress": self.in_progress, "quarantine": self.quarantine, "timings": self.timings,
        }
