"""One producer's run against a store: the driver half of the store's one write path.

Every producer (``convert``, ``csv2parquet``, ``book``, ``features``, and this wave's predictions)
does the same around its writers (:mod:`mktpred.store.writer`), so it is done once, here:

1. :meth:`StoreSession.open` probes that the store is writable (:class:`OutputNotWritable`
   otherwise) and sweeps what an interrupted run of *any* producer left (:func:`sweep_leftovers`);
2. :meth:`StoreSession.unchanged` says whether a source is up to date against the manifest (same
   size and mtime -- or, for derived tables, the same fingerprint -- and every output present);
3. :meth:`StoreSession.commit` records one source: removes the outputs its previous entry listed
   and the new one does not, drops the entries it replaces, and saves the manifest -- after each
   source, so a crash loses at most the source in flight.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from mktpred import __version__
from mktpred.errors import OutputNotWritable
from mktpred.store.layout import MANIFEST_NAME, STAGING_DIR, TMP_SUFFIX, StoreLayout
from mktpred.store.manifest import Manifest, SourceEntry

_PROBE = f".mktpred-write-test{TMP_SUFFIX}"


def ensure_writable(root: Path) -> None:
    """Create ``root`` if needed and prove a file can be written there."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / _PROBE
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputNotWritable(f"parquet directory is not writable: {exc.strerror or exc}", where=str(root)) \
            from None


def sweep_leftovers(root: Path) -> list[Path]:
    """Remove what an interrupted run of any producer left; returns what was removed.

    Leftovers: the staging folder (``_staging/``, convert's scratch space), temporary files
    (``*.tmp``) directly in a table folder (single-file tables) or in its ``date=`` partitions,
    in the quarantine, the manifest's temporary copy and the writability probe."""
    removed: list[Path] = []
    layout = StoreLayout(root)
    staging = root / STAGING_DIR
    if staging.exists():
        shutil.rmtree(staging, ignore_errors=True)
        removed.append(staging)
    candidates: list[Path] = [root / (MANIFEST_NAME + TMP_SUFFIX), root / _PROBE]
    for table in layout.tables():
        tdir = layout.table_dir(table)
        candidates += tdir.glob("*" + TMP_SUFFIX)
        candidates += tdir.glob("date=*/*" + TMP_SUFFIX)
    if layout.quarantine_dir.is_dir():
        candidates += layout.quarantine_dir.glob("*" + TMP_SUFFIX)
    for p in candidates:
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def now_utc() -> str:
    """The manifest's ``converted_at`` format: ISO-8601 UTC to the second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StoreSession:
    """The manifest of one store, held by one producer for one run (see the module docstring)."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.manifest = manifest

    @classmethod
    def open(cls, root: str | Path, *, sweep: bool = True) -> StoreSession:
        """Probe, sweep (unless ``sweep=False``) and load the manifest of the store at ``root``."""
        path = Path(root)
        ensure_writable(path)
        if sweep:
            sweep_leftovers(path)
        return cls(path, Manifest.load(path))

    def entry(self, source: str | Path) -> SourceEntry | None:
        """The entry of a source: a file (found by path, or a moved raw segment by name) or a key."""
        if isinstance(source, Path):
            return self.manifest.get(source)
        return self.manifest.entries.get(source)

    def outputs_present(self, entry: SourceEntry, also: Callable[[str], bool] | None = None) -> bool:
        """Every output of ``entry`` is a file in the store (and passes ``also``, when given)."""
        return all((self.root / o).is_file() and (also is None or also(o)) for o in entry.outputs)

    def unchanged(self, source: str | Path, *, size: int | None = None, mtime_ns: int | None = None,
                  fingerprint: str | None = None, kind: str | None = None, csv_format: str | None = None,
                  also: Callable[[str], bool] | None = None) -> bool:
        """Whether ``source`` need not be produced again: it has an entry (of ``kind``/``csv_format``
        when given) with the same ``size``/``mtime_ns``/``fingerprint`` (those given) and every output
        present (and passing ``also``)."""
        e = self.entry(source)
        if e is None:
            return False
        if (kind is not None and e.kind != kind) or (csv_format is not None and e.csv_format != csv_format):
            return False
        if (size is not None and e.size != size) or (mtime_ns is not None and e.mtime_ns != mtime_ns):
            return False
        if fingerprint is not None and e.hash != fingerprint:
            return False
        return self.outputs_present(e, also)

    def commit(self, entry: SourceEntry, *, replaces: Iterable[str] = ()) -> None:
        """Record ``entry`` and save the manifest (atomically).

        Outputs the source's previous entry listed and ``entry`` does not are removed (a source that
        now writes another table, a day that no longer has rows); ``replaces`` are manifest keys this
        entry supersedes (a ``.part`` segment now sealed)."""
        if not entry.mktpred_version:
            entry.mktpred_version = __version__
        if not entry.converted_at:
            entry.converted_at = now_utc()
        old = self.manifest.entries.get(entry.source)
        if old is not None:
            keep = set(entry.outputs)
            for rel in old.outputs:
                if rel not in keep:
                    try:
                        (self.root / rel).unlink(missing_ok=True)
                    except OSError as exc:
                        raise OutputNotWritable(f"cannot remove a stale output: {exc.strerror or exc}",
                                                where=str(self.root / rel)) from None
        for key in replaces:
            if key != entry.source:
                self.manifest.entries.pop(key, None)
        self.manifest.put(entry)
        self.save()

    def save(self) -> None:
        """Save the manifest now (atomic)."""
        try:
            self.manifest.save(self.root)
        except OSError as exc:
            raise OutputNotWritable(f"cannot save the manifest: {exc.strerror or exc}", where=str(self.root)) \
                from None
