"""The store against its manifest: every listed output exists, every file is listed, and the rows
per table and segment are what ``convert`` recorded and what the frames in ``messages`` carried
(row counts come from the Parquet footers).

Manifest entries are keyed by a source path (``convert``, ``csv2parquet``) or by another key
(``mktpred book``: ``book:<product>:<date>``, kind ``"book"``); every entry's outputs and rows are
checked the same way.  Only the tables the frames carry (:data:`CHANNEL_TABLE`) are compared with
``messages.n_rows``: derived tables such as ``book`` are not.

``csv2parquet`` records each CSV file as a source of its own, so the tables of one raw segment that
``convert --write-csv`` exported (``<csv_dir>/<table>/date=D/<segment>.csv``) come back as one
source per table: :func:`segment_key` groups them again by ``<csv_dir>/<segment>``, and only the
tables imported for such a segment are compared with its frames.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from mktpred.coinbase.protocol import TABLE_LISTS
from mktpred.store.manifest import Manifest, SourceEntry
from mktpred.validate.content import TableStats
from mktpred.validate.inventory import _PART_SUFFIX, KNOWN_TABLES, DataFile, Inventory
from mktpred.validate.report import CheckResult, Finding

#: ``SourceEntry.csv_format`` of the CSV ``convert --write-csv`` writes (``mktpred:l2``, ...)
MKTPRED_CSV = "mktpred:"
_DATE_DIR = re.compile(r"date=\d{4}-\d{2}-\d{2}\Z")
_CSV_SUFFIX = re.compile(r"\.csv(\.gz|\.zst)?\Z", re.IGNORECASE)


def _source_name(source: str) -> str:
    return Path(source).name


def segment_key(entry: SourceEntry) -> str:
    """The segment an entry's rows came from: its source, except for a mktpred CSV file laid out as
    ``convert --write-csv`` writes it (``<csv_dir>/<table>/date=D/<stem>[-k].csv[.gz|.zst]``), whose
    key ``<csv_dir>/<stem>`` is shared by every table and date of that raw segment."""
    if entry.kind != "csv" or not entry.csv_format.startswith(MKTPRED_CSV):
        return entry.source
    src = Path(entry.source)
    table = entry.csv_format[len(MKTPRED_CSV):]
    if len(src.parents) < 3 or not _DATE_DIR.match(src.parent.name) or src.parents[1].name != table:
        return entry.source
    return str(src.parents[2] / _PART_SUFFIX.sub("", _CSV_SUFFIX.sub("", src.name)))


def owned_tables(manifest: Manifest) -> set[str]:
    """Folders the manifest's entries write to that are not tables of the contract (generic CSV)."""
    return {out.split("/", 1)[0] for e in manifest.entries.values() for out in e.outputs} - set(KNOWN_TABLES)


def assign_segments(inv: Inventory, manifest: Manifest) -> None:
    """Tag each data file with the source segment that produced it (its stem when unlisted)."""
    owner = {out: segment_key(e) for e in manifest.entries.values() for out in e.outputs}
    for f in inv.files:
        f.segment = owner.get(f.rel, f.stem)


def check_outputs(inv: Inventory, manifest: Manifest) -> CheckResult:
    """Every output the manifest lists exists, and every data file is listed exactly once."""
    findings: list[Finding] = []
    if not inv.has_manifest:
        findings.append(Finding("_manifest.json", "missing: the store has no manifest"))
    on_disk = {f.rel for f in inv.files}
    listed: dict[str, list[str]] = defaultdict(list)
    for src, entry in sorted(manifest.entries.items()):
        for out in entry.outputs:
            listed[out].append(src)
            if out not in on_disk:
                findings.append(Finding(out, f"listed in the manifest for {_source_name(src)} but missing"))
    for out, sources in sorted(listed.items()):
        if len(sources) > 1:
            findings.append(Finding(out, "listed for several sources: " + ", ".join(map(_source_name, sources))))
    if inv.has_manifest:
        for f in inv.files:
            if f.rel not in listed:
                findings.append(Finding(f.rel, "not in the manifest (written by no recorded conversion)"))
    n_outputs = sum(len(e.outputs) for e in manifest.entries.values())
    return CheckResult.from_findings(
        "manifest_outputs", findings, checked=n_outputs + len(inv.files),
        passed=f"{len(manifest.entries)} manifest entries, {n_outputs} outputs, all present and listed")


#: which frames (``messages.channel``) carry the rows of which table
CHANNEL_TABLE = {channel: table for channel, (table, _) in TABLE_LISTS.items()}


def check_rows(inv: Inventory, manifest: Manifest, stats: dict[str, TableStats]) -> CheckResult:
    """Rows per table and segment (Parquet footers) equal what the manifest recorded, and what the
    segment's frames say they carried (``messages.n_rows``, summed per channel).

    A (segment, table) with a missing or unreadable file is skipped: the ``manifest_outputs`` /
    ``readable`` checks report that, and counting what is left would only repeat it.
    """
    by_rel = {f.rel: f for f in inv.files}
    findings: list[Finding] = []
    checked = skipped = 0
    missing = {(src, out.split("/", 1)[0]) for src, e in manifest.entries.items() for out in e.outputs
               if out not in by_rel}
    for src, entry in sorted(manifest.entries.items()):
        outputs: dict[str, list[str]] = defaultdict(list)
        for out in entry.outputs:
            outputs[out.split("/", 1)[0]].append(out)
        for table in sorted(set(outputs) | set(entry.rows)):
            files = [by_rel.get(o) for o in outputs.get(table, [])]
            if any(f is None or f.rows is None or f.error is not None for f in files):
                skipped += 1
                continue
            checked += 1
            have = sum(f.rows or 0 for f in files if f is not None)
            want = entry.rows.get(table, 0)
            if have != want:
                where = ", ".join(outputs.get(table, [])) or f"{table}/"
                findings.append(Finding(
                    where, f"{have:,} {table} rows, the manifest recorded {want:,} for "
                           f"{_source_name(src)} ({have - want:+,})", count=abs(have - want)))

    # the frames' own count, per segment (independent of the manifest)
    said: dict[tuple[str, str], int] = defaultdict(int)
    for g in stats.get("messages", TableStats("messages")).groups:
        target = CHANNEL_TABLE.get(g.get("channel") or "")
        if target is not None:
            said[(by_rel[g["rel"]].segment, target)] += int(g["frame_rows"] or 0)
    segment_files: dict[tuple[str, str], list[DataFile]] = defaultdict(list)
    for f in inv.files:
        segment_files[(f.segment, f.table)].append(f)
    # CSV sources: a segment's tables are those imported for it (an export may be imported in part)
    imported: dict[str, set[str]] = defaultdict(set)
    for entry in manifest.entries.values():
        if entry.kind == "csv":
            imported[segment_key(entry)].update(entry.rows, (o.split("/", 1)[0] for o in entry.outputs))
    for segment in sorted({seg for seg, _ in segment_files if (seg, "messages") in segment_files}):
        if (segment, "messages") in missing or not all(f.usable for f in segment_files[(segment, "messages")]):
            continue
        for table in sorted(set(CHANNEL_TABLE.values())):
            seg_files = segment_files.get((segment, table), [])
            if (segment, table) in missing or not all(f.usable for f in seg_files):
                continue
            if segment in imported and table not in imported[segment]:
                continue
            have = sum(f.rows or 0 for f in seg_files)
            want = said.get((segment, table), 0)
            checked += 1
            if have != want:
                where = ", ".join(f.rel for f in seg_files) or f"{table}/"
                findings.append(Finding(
                    where, f"{have:,} {table} rows, the frames of {_source_name(segment)} in messages carried "
                           f"{want:,} ({have - want:+,})", count=abs(have - want)))
    note = f" ({skipped} skipped: a file missing or unreadable)" if skipped else ""
    return CheckResult.from_findings(
        "rows", findings, checked=checked,
        passed=f"{checked} segment tables match the manifest and the frames' n_rows{note}")
