"""The store manifest ``<parquet_dir>/_manifest.json``: what was converted from where.

One entry per source (a raw JSONL segment, or a CSV file for ``csv2parquet``), keyed by the
source's absolute path.  ``convert`` uses it to skip unchanged sources (size, mtime and content
hash), ``validate`` to check the store against it.  Saved atomically (temporary file + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mktpred.errors import DataError
from mktpred.store.layout import MANIFEST_NAME

MANIFEST_VERSION = 1
_HASH_CHUNK = 8 * 2**20


@dataclass
class SourceEntry:
    """What one source file produced."""

    source: str  #: absolute path of the input file
    kind: str  #: "raw" (a JSONL segment) or "csv"
    size: int
    mtime_ns: int
    hash: str  #: "blake2b:<hex>" of the file content
    rows: dict[str, int] = field(default_factory=dict)  #: table -> rows written
    lines: int = 0  #: input lines read
    invalid: int = 0  #: lines quarantined as invalid
    truncated: int = 0  #: torn last lines skipped (a .part read with --include-latest)
    outputs: list[str] = field(default_factory=list)  #: files written, relative to the store root
    engine: str = ""
    mktpred_version: str = ""
    converted_at: str = ""  #: ISO-8601 UTC
    partial: bool = False  #: converted from a ``.part`` segment (--include-latest)
    csv_format: str = ""  #: csv2parquet: how the CSV file was read (``tardis:trades``, ...); "" for raw segments
    quarantine: str = ""  #: the source's quarantine file, relative to the store root ("" when none)
    #: the stem of its output files ("": the source's own stem, as every entry before this field had)
    stem: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SourceEntry:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass
class Manifest:
    """All entries of one store."""

    entries: dict[str, SourceEntry] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> Manifest:
        """Read ``root/_manifest.json`` (an empty manifest when the file does not exist)."""
        path = root / MANIFEST_NAME
        if not path.exists():
            return cls()
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            entries = {k: SourceEntry.from_json(v) for k, v in doc.get("sources", {}).items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise DataError(f"manifest is not valid: {exc}", where=str(path)) from None
        return cls(entries)

    def save(self, root: Path) -> None:
        """Write atomically so a crash never leaves half a manifest."""
        root.mkdir(parents=True, exist_ok=True)
        path = root / MANIFEST_NAME
        tmp = path.with_name(path.name + ".tmp")
        doc = {"version": MANIFEST_VERSION,
               "sources": {k: asdict(v) for k, v in sorted(self.entries.items())}}
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            # a full disk (ENOSPC) or an interrupt: the old manifest stays, and no half copy beside it
            tmp.unlink(missing_ok=True)
            raise

    def get(self, source: Path) -> SourceEntry | None:
        """The entry of ``source``; a raw segment whose folder moved is found by its file name, so
        moving a data directory does not make every segment look unconverted.  Only an entry whose
        own file is gone counts as moved: two recorders' segments share a name (both open
        ``coinbase_<day>T000000Z.jsonl`` at midnight) and are different sources, and so is a segment
        of the same name converted after the first one's folder was deleted: the file must also have
        the entry's size and its mtime or content hash."""
        entry = self.entries.get(str(source.resolve()))
        if entry is not None:
            return entry
        same_name = [e for e in self.entries.values()
                     if e.kind == "raw" and Path(e.source).name == source.name and not Path(e.source).exists()]
        if len(same_name) != 1 or not _same_content(same_name[0], source):
            return None
        return same_name[0]

    def put(self, entry: SourceEntry) -> None:
        self.entries[entry.source] = entry

    def remove(self, source: Path) -> SourceEntry | None:
        return self.entries.pop(str(source.resolve()), None)


def _same_content(entry: SourceEntry, source: Path) -> bool:
    try:
        st = source.stat()
    except OSError:
        return False
    if st.st_size != entry.size:
        return False
    return st.st_mtime_ns == entry.mtime_ns or (bool(entry.hash) and file_hash(source) == entry.hash)


def file_hash(path: Path) -> str:
    """Content hash of a file, streamed (bounded memory)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return "blake2b:" + h.hexdigest()
