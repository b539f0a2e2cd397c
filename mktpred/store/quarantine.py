"""The quarantine: ``<parquet_dir>/_quarantine/<stem>.jsonl``, one record per skipped input line.

Each record is ``{"segment": <file name>, "line": <1-based line number>, "reason": ..., "text": ...}``.
Written to a temporary file while a segment converts, renamed into place with its outputs;
a segment converted without bad lines leaves no quarantine file (an older one is removed).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import IO

import orjson

from mktpred.errors import OutputNotWritable
from mktpred.store.layout import TMP_SUFFIX, StoreLayout


class Quarantine:
    """Collects the bad lines of one segment."""

    def __init__(self, root: Path, stem: str, segment_name: str) -> None:
        self.path = StoreLayout(root).quarantine_dir / f"{stem}.jsonl"
        self.tmp = self.path.with_name(self.path.name + TMP_SUFFIX)
        self.segment_name = segment_name
        self.count = 0
        self.reasons: Counter[str] = Counter()
        self._fh: IO[bytes] | None = None

    def add(self, line: int, reason: str, text: bytes) -> None:
        """Record one bad line (``text`` without its newline)."""
        if self._fh is None:
            try:
                self.tmp.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.tmp, "wb")
            except OSError as exc:
                raise OutputNotWritable(f"cannot write the quarantine: {exc.strerror or exc}",
                                        where=str(self.tmp.parent)) from None
        rec = {"segment": self.segment_name, "line": line, "reason": reason,
               "text": text.decode("utf-8", errors="replace")}
        self._fh.write(orjson.dumps(rec) + b"\n")
        self.count += 1
        # reasons are summarised by their kind, not by the value that broke them
        self.reasons[reason.split(":", 1)[0]] += 1

    def commit(self) -> str | None:
        """Move the file into place (or remove a stale one); returns its path relative to the store."""
        if self._fh is None:
            self.path.unlink(missing_ok=True)
            return None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        os.replace(self.tmp, self.path)
        return f"{self.path.parent.name}/{self.path.name}"

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.tmp.unlink(missing_ok=True)
        self.count = 0
        self.reasons.clear()
