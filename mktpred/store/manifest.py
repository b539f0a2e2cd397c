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
        """The entry of ``source``; a raw segment whose folder moved is found by its file name
        (segment names are unique UTC timestamps), so moving a data directory does not make every
        segment look unconverted."""
        entry = self.entries.get(str(source.resolve()))
        if entry is not None:
            return entry
        same_name = [e for e in self.entries.values() if e.kind == "raw" and Path(e.source).name == source.name]
        return same_name[0] if len(same_name) == 1 else None

    def put(self, entry: SourceEntry) -> None:
        self.entries[entry.source] = entry

    def remove(self, source: Path) -> SourceEntry | None:
        return self.entries.pop(str(source.resolve()), None)


def file_hash(path: Path) -> str:
    """Content hash of a file, streamed (bounded memory)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return "blake2b:" + h.hexdigest()
