"""The raw directory against the manifest: nothing sealed is left unconverted.

A sealed segment (``*.jsonl``, also compressed ``*.jsonl.zst`` / ``*.jsonl.gz``) must have a manifest
entry with the same size and modification time (or, when only the time differs, the same content
hash).  A ``.part`` segment is still being written: it is listed as in progress, with how much of
it ``convert --include-latest`` took, never counted as a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mktpred.naming import is_part, is_sealed, segment_files
from mktpred.store.manifest import Manifest, file_hash
from mktpred.validate.report import CheckResult, Finding, Status


@dataclass
class RawResult:
    converted: CheckResult
    in_progress: CheckResult
    parts: list[str] = field(default_factory=list)


def _segments(raw_dir: Path) -> tuple[list[Path], list[Path]]:
    files = segment_files(raw_dir, recursive=True)
    return [p for p in files if is_sealed(p.name)], [p for p in files if is_part(p.name)]


def check_raw(raw_dir: Path, manifest: Manifest) -> RawResult:
    """Every sealed segment converted and unchanged since; ``.part`` segments listed."""
    sealed, parts = _segments(raw_dir)
    findings: list[Finding] = []
    for path in sealed:
        rel = path.relative_to(raw_dir).as_posix()
        entry = manifest.get(path)
        st = path.stat()
        if entry is None:
            findings.append(Finding(rel, f"sealed segment not converted ({st.st_size:,} bytes)"))
        elif entry.size != st.st_size:
            findings.append(Finding(rel, f"changed since it was converted ({entry.size:,} -> {st.st_size:,} bytes)"))
        elif entry.mtime_ns != st.st_mtime_ns and entry.hash and file_hash(path) != entry.hash:
            findings.append(Finding(rel, "content changed since it was converted (hash differs)"))
    converted = CheckResult.from_findings(
        "raw_converted", findings, checked=len(sealed),
        passed=f"{len(sealed)} sealed segments, all converted")

    listed: list[str] = []
    for path in parts:
        rel = path.relative_to(raw_dir).as_posix()
        entry = manifest.get(path)
        size = path.stat().st_size
        if entry is None:
            listed.append(f"{rel}: in progress ({size:,} bytes, not converted yet)")
        else:
            listed.append(f"{rel}: in progress ({size:,} bytes; {entry.lines:,} lines converted "
                          "with --include-latest)")
    details = f"{len(parts)} segments being written" if parts else "no segment being written"
    in_progress = CheckResult("raw_in_progress", Status.PASS, 0, details, listed, checked=len(parts))
    return RawResult(converted, in_progress, listed)
