"""One producer's run against a store: the driver half of the store's one write path.

Every producer (``convert``, ``csv2parquet``, ``book``, ``features``, and this wave's predictions)
does the same around its writers (:mod:`mktpred.store.writer`), so it is done once, here:

1. :meth:`StoreSession.open` probes that the store is writable (:class:`OutputNotWritable`
   otherwise) and sweeps what an interrupted run of *any* producer left (:func:`sweep_leftovers`)
   -- only when no other run is writing the store: every session holds a shared ``flock`` on
   ``<store>/.mktpred-run.lock`` while it lives, and sweeps only if it could take it exclusively
   first, so ``book`` started while ``convert`` runs never removes convert's files in flight;
2. :meth:`StoreSession.unchanged` says whether a source is up to date against the manifest (same
   size and mtime -- or, for derived tables, the same fingerprint -- and every output present);
3. :meth:`StoreSession.commit` records one source: removes the outputs its previous entry listed
   and the new one does not, drops the entries it replaces, and saves the manifest -- after each
   source, so a crash loses at most the source in flight.  It re-reads the manifest under an
   exclusive lock first, so two producers committing to one store keep each other's entries.

Close a session (or use it as a context manager) when the run ends; the locks go with the process.
"""

from __future__ import annotations

import fcntl
import shutil
import weakref
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO

from mktpred import __version__
from mktpred.errors import OutputNotWritable
from mktpred.store.layout import MANIFEST_NAME, STAGING_DIR, TMP_SUFFIX, StoreLayout
from mktpred.store.manifest import Manifest, SourceEntry

_PROBE = f".mktpred-write-test{TMP_SUFFIX}"
#: held shared by every live session; the sweep needs it exclusively
RUN_LOCK = ".mktpred-run.lock"
#: held exclusively while the manifest is re-read, changed and saved
MANIFEST_LOCK = ".mktpred-manifest.lock"


def _open_lock(path: Path) -> IO[bytes]:
    try:
        return open(path, "ab")
    except OSError as exc:
        raise OutputNotWritable(f"cannot open the store's lock file: {exc.strerror or exc}", where=str(path)) \
            from None


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

    def __init__(self, root: Path, manifest: Manifest, run_lock: IO[bytes] | None = None) -> None:
        self.root = root
        self.manifest = manifest
        self._run_lock = run_lock
        # a session dropped without close() (an exception in its producer) still lets go of the lock
        self._finalizer = weakref.finalize(self, run_lock.close) if run_lock is not None else None
        #: whether :meth:`open` swept (False: another run was writing the store)
        self.swept = False

    @classmethod
    def open(cls, root: str | Path, *, sweep: bool = True) -> StoreSession:
        """Probe, sweep (unless ``sweep=False``, or another run is writing the store) and load the
        manifest of the store at ``root``."""
        path = Path(root)
        ensure_writable(path)
        lock = _open_lock(path / RUN_LOCK)
        swept = False
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # another run is live: its temporary files are not leftovers
        else:
            if sweep:
                sweep_leftovers(path)
                swept = True
        fcntl.flock(lock.fileno(), fcntl.LOCK_SH)
        session = cls(path, Manifest.load(path), lock)
        session.swept = swept
        return session

    def close(self) -> None:
        """End the run: other runs may sweep again."""
        if self._finalizer is not None:
            self._finalizer()
        self._run_lock = None

    def __enter__(self) -> StoreSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

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
        lock = _open_lock(self.root / MANIFEST_LOCK)
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            self.manifest = Manifest.load(self.root)  # what other producers committed meanwhile
            self._commit(entry, replaces)
        finally:
            lock.close()

    def _commit(self, entry: SourceEntry, replaces: Iterable[str]) -> None:
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
        self._save()

    def _save(self) -> None:
        try:
            self.manifest.save(self.root)
        except OSError as exc:
            raise OutputNotWritable(f"cannot save the manifest: {exc.strerror or exc}", where=str(self.root)) \
                from None
