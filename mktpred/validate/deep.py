"""``validate --deep``: re-hash every source the manifest lists against its recorded content hash.

The ordinary ``raw_converted`` check compares a segment's size and mtime with the manifest and
hashes only when the mtime differs, so bit rot in a raw segment whose mtime was restored (a copy
with ``cp -p``, a backup restored, a failing disk) passes it.  Re-hashing reads every byte of every
source (blake2b, about 0.5-1 GB/s per core), which is why it is opt-in.

Every ``validate`` already reads every page of every Parquet file with page-checksum verification
(the decode pass, :mod:`mktpred.validate.content`), so ``--deep`` adds nothing there.

Sources are looked for where the manifest recorded them, then by name in ``--raw-dir``.  Statuses:
a differing hash fails (``bit rot`` when size and mtime are unchanged); a source that is gone, or
an entry without a hash, is a warning (it cannot be verified); entries converted from a ``.part``
segment are skipped (the file is still growing).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mktpred.progress import Progress, ProgressCallback, no_progress
from mktpred.store.manifest import Manifest, SourceEntry
from mktpred.validate.report import CheckResult, Finding, Status

_CHUNK = 8 * 2**20


def _locate(entry: SourceEntry, raw_dir: Path | None) -> Path | None:
    recorded = Path(entry.source)
    if recorded.is_file():
        return recorded
    if raw_dir is not None and (raw_dir / recorded.name).is_file():
        return raw_dir / recorded.name
    return None


def _hash(path: Path, on_bytes: ProgressCallback, done: int, total: int, files_done: int,
          files_total: int) -> str:
    """The manifest's hash (:func:`mktpred.store.manifest.file_hash`), streamed with progress."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            done += len(chunk)
            on_bytes(Progress("rehash", files_done, files_total, done, total, current=path.name))
    return "blake2b:" + h.hexdigest()


def check_source_hashes(manifest: Manifest, raw_dir: Path | None = None, *,
                        progress: ProgressCallback = no_progress) -> CheckResult:
    """Re-hash each manifest source and compare with the hash recorded when it was converted."""
    findings: list[Finding] = []
    todo: list[tuple[SourceEntry, Path]] = []
    skipped = 0
    for entry in sorted(manifest.entries.values(), key=lambda e: e.source):
        name = Path(entry.source).name
        if entry.partial:
            skipped += 1
            continue
        if not entry.hash:
            findings.append(Finding(name, "no content hash in the manifest: cannot be verified", Status.WARN))
            continue
        path = _locate(entry, raw_dir)
        if path is None:
            findings.append(Finding(name, "source not found (moved or deleted): cannot be verified", Status.WARN))
            continue
        todo.append((entry, path))
    total = sum(p.stat().st_size for _, p in todo)
    done = 0
    for i, (entry, path) in enumerate(todo):
        try:
            st = path.stat()
            digest = _hash(path, progress, done, total, i, len(todo))
        except OSError as exc:
            findings.append(Finding(path.name, f"cannot be read: {exc.strerror or exc}"))
            continue
        done += st.st_size
        if digest == entry.hash:
            continue
        if st.st_size == entry.size and st.st_mtime_ns == entry.mtime_ns:
            findings.append(Finding(path.name, "content differs from the hash recorded at conversion although "
                                               "size and mtime are unchanged (bit rot or a restored mtime)"))
        else:
            findings.append(Finding(path.name, f"changed since it was converted ({entry.size:,} -> {st.st_size:,} "
                                               "bytes, hash differs)"))
    progress(Progress("rehash", len(todo), len(todo), total, total))
    note = f"; {skipped} in-progress (.part) sources skipped" if skipped else ""
    return CheckResult.from_findings(
        "source_hashes", findings, checked=len(todo),
        passed=f"{len(todo)} sources ({total / 2**30:,.2f} GiB) re-hashed, all match the manifest{note}")
