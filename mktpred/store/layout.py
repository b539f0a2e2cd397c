"""Where things live in the store: ``<parquet_dir>/<table>/date=<YYYY-MM-DD>/<stem>[-<k>].parquet``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mktpred.naming import PARTITION_RE, partition_name

MANIFEST_NAME = "_manifest.json"
QUARANTINE_DIR = "_quarantine"
STAGING_DIR = "_staging"
TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class StoreLayout:
    """Paths inside one Parquet store rooted at ``root``."""

    root: Path

    @property
    def quarantine_dir(self) -> Path:
        return self.root / QUARANTINE_DIR

    def table_dir(self, table: str) -> Path:
        return self.root / table

    def partition_dir(self, table: str, date: str) -> Path:
        return self.root / table / partition_name(date)

    def data_file(self, table: str, date: str, stem: str, part: int = 0) -> Path:
        name = f"{stem}.parquet" if part == 0 else f"{stem}-{part}.parquet"
        return self.partition_dir(table, date) / name

    def tables(self) -> list[str]:
        """Tables present on disk (directories not starting with ``_`` or ``.``)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))

    def dates(self, table: str) -> list[str]:
        d = self.table_dir(table)
        if not d.is_dir():
            return []
        return sorted(m.group(1) for p in d.iterdir() if (m := PARTITION_RE.match(p.name)))


def atomic_replace(tmp: Path, final: Path) -> None:
    """Move a fully written temporary file into place (readers never see half a file)."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
