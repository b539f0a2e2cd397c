"""The quarantine is part of the store's state: the input lines ``convert`` / ``csv2parquet`` set
aside, read back on every ``validate`` (a re-run of ``convert`` skips the segment and forgets them).

What is read: the manifest's per-source ``invalid`` and ``truncated`` counts, and the records of
``<parquet_dir>/_quarantine/*.jsonl`` (``{"segment", "line", "reason", "text"}``, one per line set
aside; see :mod:`mktpred.convert.quarantine`).  The ``quarantine`` check, per source:

* **fail** — a line *rejected by the engine* although the line validator accepted it: a valid frame
  the conversion lost (e.g. a level2 snapshot longer than the engine's object size limit).  Re-run
  ``convert --force`` with a fixed mktpred to get it back;
* **fail** — the quarantine and the manifest disagree (the manifest counts N invalid lines, the
  quarantine holds M: a quarantine file deleted or stale), or the store's quarantined lines exceed
  what ``convert`` allows (``convert.max_invalid_fraction`` of the lines read): ``convert``'s own
  verdict on its first run, which a re-run no longer repeats;
* **warn** — lines quarantined as invalid input (not JSON, missing fields, bad values, frames the
  collector could not parse), within the allowance; torn last lines skipped in a sealed segment;
  quarantine records of a source the manifest does not list.

Each quarantined frame whose ``conn`` and ``sequence_num`` can be read from its text is returned in
:attr:`QuarantineResult.lost`, so the sequence check attributes the gap it leaves to conversion
rather than to the network.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mktpred.store.layout import QUARANTINE_DIR, TMP_SUFFIX
from mktpred.store.manifest import Manifest, SourceEntry
from mktpred.validate.report import MAX_LOCATIONS, CheckResult, Finding, Status

#: ``reason`` prefix of a line the line validator accepted but the engine rejected
ENGINE_REJECT = "rejected by the "
_REASON_CHARS = 120
_RAW_SEQ = re.compile(rb'"sequence_num"\s*:\s*(\d+)')


@dataclass(frozen=True)
class QuarantinedLine:
    """One quarantined input line and, when its text says, the frame it carried."""

    source: str  #: the source file name (``segment`` of the record)
    line: int  #: 1-based line number in the source
    reason: str
    conn: str | None = None
    seq: int | None = None
    channel: str | None = None

    @property
    def engine_rejected(self) -> bool:
        return self.reason.startswith(ENGINE_REJECT)

    @property
    def short_reason(self) -> str:
        """The reason cut to one readable length (an engine's message quotes the line itself)."""
        return self.reason if len(self.reason) <= _REASON_CHARS else self.reason[:_REASON_CHARS - 3] + "..."

    def text(self) -> str:
        frame = f" (conn {self.conn} seq {self.seq})" if self.conn is not None and self.seq is not None else ""
        return f"line {self.line} of {self.source}{frame}: {self.short_reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason, "conn": self.conn, "seq": self.seq,
                "channel": self.channel}


@dataclass
class QuarantinedSource:
    """What was set aside from one source."""

    source: str  #: file name
    files: list[str] = field(default_factory=list)  #: quarantine files, relative to the store root
    manifest_invalid: int | None = None  #: the manifest's count (None: no manifest entry)
    truncated: int = 0
    partial: bool = False
    lines: list[QuarantinedLine] = field(default_factory=list)

    @property
    def reasons(self) -> Counter[str]:
        # summarised by kind, as convert does (``price_level is not a number: 'x'`` -> its prefix)
        return Counter(q.reason.split(":", 1)[0] for q in self.lines)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "files": self.files, "quarantined": len(self.lines),
                "manifest_invalid": self.manifest_invalid, "truncated": self.truncated,
                "engine_rejected": sum(q.engine_rejected for q in self.lines),
                "reasons": dict(self.reasons), "lines": [q.to_dict() for q in self.lines[:MAX_LOCATIONS]]}


@dataclass
class QuarantineResult:
    check: CheckResult
    sources: list[QuarantinedSource] = field(default_factory=list)
    #: conn -> seq -> the quarantined line that carried that frame
    lost: dict[str, dict[int, QuarantinedLine]] = field(default_factory=dict)


def _frame_of(source: str, record: dict[str, Any]) -> QuarantinedLine:
    """The quarantined line, with conn / seq / channel read from its text where possible."""
    line, reason = int(record.get("line") or 0), str(record.get("reason") or "")
    text = record.get("text")
    if not isinstance(text, str):
        return QuarantinedLine(source, line, reason)
    raw = text.encode("utf-8", errors="replace")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        return QuarantinedLine(source, line, reason)
    conn = doc.get("conn") if isinstance(doc.get("conn"), str) else None
    msg: dict[str, Any] = doc["msg"] if isinstance(doc.get("msg"), dict) else doc
    seq, channel = msg.get("sequence_num"), msg.get("channel")
    if isinstance(doc.get("raw"), str):  # a frame the collector could not parse: its number, if legible
        m = _RAW_SEQ.search(doc["raw"].encode("utf-8", errors="replace"))
        seq = int(m.group(1)) if m else None
    return QuarantinedLine(source, line, reason, conn,
                           seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
                           channel if isinstance(channel, str) else None)


def read_quarantine(root: Path) -> tuple[dict[str, list[QuarantinedLine]], dict[str, list[str]], list[Finding]]:
    """Every record under ``root/_quarantine``: lines per source name, files per source name, and
    files that cannot be read."""
    lines: dict[str, list[QuarantinedLine]] = defaultdict(list)
    files: dict[str, list[str]] = defaultdict(list)
    problems: list[Finding] = []
    qdir = root / QUARANTINE_DIR
    if not qdir.is_dir():
        return lines, files, problems
    for path in sorted(qdir.iterdir()):
        rel = f"{QUARANTINE_DIR}/{path.name}"
        if not path.is_file() or path.name.endswith(TMP_SUFFIX) or not path.name.endswith(".jsonl"):
            continue
        try:
            with open(path, "rb") as fh:
                for n, text in enumerate(fh, 1):
                    try:
                        record = orjson.loads(text)
                        source = str(record["segment"])
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        problems.append(Finding(rel, f"record {n} is not a quarantine record"))
                        continue
                    if rel not in files[source]:
                        files[source].append(rel)
                    lines[source].append(_frame_of(source, record))
        except OSError as exc:
            problems.append(Finding(rel, f"cannot be read: {exc.strerror or exc}"))
    return lines, files, problems


def check_quarantine(root: Path, manifest: Manifest, *, max_invalid_fraction: float) -> QuarantineResult:
    """Judge the quarantine against the manifest (see the module docstring)."""
    lines, files, findings = read_quarantine(root)
    by_name: dict[str, list[SourceEntry]] = defaultdict(list)
    for entry in manifest.entries.values():
        by_name[Path(entry.source).name].append(entry)
    total_lines = sum(e.lines for e in manifest.entries.values())
    total_invalid = sum(len(v) for v in lines.values())
    allowed = int(max_invalid_fraction * total_lines)
    over = total_invalid > allowed
    sources: list[QuarantinedSource] = []
    for name in sorted(set(lines) | {n for n, es in by_name.items() if any(e.invalid or e.truncated for e in es)}):
        entries = by_name.get(name, [])
        src = QuarantinedSource(
            name, files.get(name, []), sum(e.invalid for e in entries) if entries else None,
            sum(e.truncated for e in entries), any(e.partial for e in entries), lines.get(name, []))
        sources.append(src)
        where = ", ".join(src.files) or f"{QUARANTINE_DIR}/"
        rejected = [q for q in src.lines if q.engine_rejected]
        if rejected:
            findings.append(Finding(where, f"{len(rejected)} valid lines of {name} lost in conversion "
                                           f"(first: {rejected[0].text()}); re-run convert --force on it",
                                    Status.FAIL, count=len(rejected)))
        invalid = len(src.lines) - len(rejected)
        if invalid:
            kinds = ", ".join(f"{k} {n}" for k, n in src.reasons.most_common() if not k.startswith(ENGINE_REJECT))
            first = next(q for q in src.lines if not q.engine_rejected)
            findings.append(Finding(where, f"{invalid} invalid lines of {name} quarantined ({kinds}; first: "
                                           f"{first.text()})", Status.FAIL if over else Status.WARN, count=invalid))
        if src.manifest_invalid is None:
            findings.append(Finding(where, f"quarantine records of {name}, which the manifest does not list",
                                    Status.WARN, count=len(src.lines)))
        elif src.manifest_invalid != len(src.lines):
            findings.append(Finding(where, f"the manifest counts {src.manifest_invalid} invalid lines of {name}, "
                                           f"the quarantine holds {len(src.lines)}", count=abs(
                                               src.manifest_invalid - len(src.lines))))
        if src.truncated and not src.partial:
            findings.append(Finding(name, f"{src.truncated} torn last lines skipped (a crash cut them)",
                                    Status.WARN, count=src.truncated))
    lost: dict[str, dict[int, QuarantinedLine]] = defaultdict(dict)
    for src in sources:
        for q in src.lines:
            if q.conn is not None and q.seq is not None:
                lost[q.conn][q.seq] = q
    n_rejected = sum(q.engine_rejected for s in sources for q in s.lines)
    summary = None
    if findings:
        parts = [f"{total_invalid:,} lines quarantined in {sum(1 for s in sources if s.lines)} sources"]
        if n_rejected:
            parts.append(f"{n_rejected:,} of them valid lines the engine rejected")
        parts.append(f"{'more than' if over else 'within'} the {allowed:,} allowed "
                     f"({max_invalid_fraction:g} of {total_lines:,} lines)")
        summary = ", ".join(parts)
    check = CheckResult.from_findings(
        "quarantine", findings, checked=len(manifest.entries), summary=summary,
        passed=f"no line quarantined in {len(manifest.entries)} sources")
    return QuarantineResult(check, sources, dict(lost))
