"""Raw segments on disk: ``<raw_dir>/coinbase_<YYYYMMDD>T<HHMMSS>Z.jsonl[.part]``.

A segment is written as ``.part``; sealing flushes, fsyncs and renames it without ``.part``.
Leftover ``.part`` files from a crash are sealed on the next start after trimming an incomplete
last line.  Every OS error becomes :class:`~mktpred.errors.OutputNotWritable`, and a failed write
is cut back to the last whole line so what was written stays readable.
"""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from mktpred.collect.clock import NS_PER_S, utc_stamp
from mktpred.errors import OutputNotWritable
from mktpred.naming import COLLECTED_SEGMENT_RE, PART, collected_segment_name

LOCK_NAME = ".collect.lock"


def segment_name(ns: int) -> str:
    """The sealed name of a segment opened at ``ns``: ``coinbase_20251122T140301Z.jsonl``."""
    return collected_segment_name(utc_stamp(ns))


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "disk full"
    return exc.strerror or str(exc)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RepairedSegment:
    """A ``.part`` left by an earlier run, sealed (or removed when nothing whole was left)."""

    part: Path
    sealed: Path | None
    trimmed_bytes: int

    def to_dict(self) -> dict[str, object]:
        return {"part": str(self.part), "sealed": str(self.sealed) if self.sealed else None,
                "trimmed_bytes": self.trimmed_bytes}


def _last_newline_end(fd: int, size: int) -> int:
    """The offset just after the last ``\\n`` in the file (0 when there is none)."""
    pos = size
    chunk = 1 << 16
    while pos > 0:
        start = max(0, pos - chunk)
        data = os.pread(fd, pos - start, start)
        i = data.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return 0


def _free_name(raw_dir: Path, ns: int) -> Path:
    """A sealed name for a segment opened at ``ns`` that no file (sealed or ``.part``) uses yet;
    a name taken within the same second moves on to the next second."""
    while True:
        path = raw_dir / segment_name(ns)
        if not path.exists() and not path.with_name(path.name + PART).exists():
            return path
        ns += NS_PER_S


def repair_leftovers(raw_dir: Path) -> list[RepairedSegment]:
    """Seal every ``.part`` in ``raw_dir``: trim a torn last line, fsync, rename (or remove it if
    nothing whole is left).  Call only while holding the directory lock."""
    repaired: list[RepairedSegment] = []
    try:
        parts = sorted(p for p in raw_dir.iterdir() if COLLECTED_SEGMENT_RE.match(p.name) and p.name.endswith(PART))
        for part in parts:
            fd = os.open(part, os.O_RDWR)
            try:
                size = os.fstat(fd).st_size
                keep = _last_newline_end(fd, size)
                if keep < size:
                    os.ftruncate(fd, keep)
                os.fsync(fd)
            finally:
                os.close(fd)
            sealed: Path | None
            if keep == 0:
                part.unlink()
                sealed = None
            else:
                sealed = part.with_name(part.name[: -len(PART)])
                if sealed.exists():
                    m = COLLECTED_SEGMENT_RE.match(sealed.name)
                    assert m is not None
                    sealed = _free_name(raw_dir, _stamp_ns(m.group(1)))
                os.replace(part, sealed)
            repaired.append(RepairedSegment(part, sealed, size - keep))
        if repaired:
            fsync_dir(raw_dir)
    except OSError as exc:
        raise OutputNotWritable(f"cannot repair leftover segments: {_why(exc)}", str(raw_dir)) from None
    return repaired


def _stamp_ns(stamp: str) -> int:
    import calendar
    import time

    return calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ")) * NS_PER_S


class DirectoryLock:
    """An exclusive ``flock`` on ``<raw_dir>/.collect.lock``: one recorder per directory, so a
    running recorder's ``.part`` is never "repaired" by a second one."""

    def __init__(self, raw_dir: Path) -> None:
        self.path = raw_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputNotWritable(f"cannot write in the raw directory: {_why(exc)}",
                                    str(self.path.parent)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise OutputNotWritable(f"another mktpred collect (pid {holder}) is writing to this directory",
                                    str(self.path.parent)) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid is informative only
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


class SegmentWriter:
    """Appends whole lines to the current ``.part`` segment; seals it on rotation and shutdown."""

    def __init__(self, raw_dir: Path) -> None:
        self.raw_dir = raw_dir
        self.path: Path | None = None  # the current .part
        self.opened_ns = 0
        self.size = 0  # bytes in the current segment, always at a line boundary between writes
        self.lines = 0
        self.bytes_total = 0
        self.lines_total = 0
        self.sealed: list[Path] = []
        self._fd: int | None = None
        self._dirty = False

    def open(self, ns: int) -> Path:
        """Start a new ``.part`` segment named after ``ns`` (the UTC time it is opened)."""
        assert self._fd is None
        final = _free_name(self.raw_dir, ns)
        part = final.with_name(final.name + PART)
        try:
            self._fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            fsync_dir(self.raw_dir)
        except OSError as exc:
            raise OutputNotWritable(f"cannot create a segment: {_why(exc)}", str(part)) from None
        self.path = part
        self.opened_ns = ns
        self.size = 0
        self.lines = 0
        self._dirty = False
        return part

    def write(self, data: bytes, lines: int) -> None:
        """Append ``data`` (whole lines only).  On failure the segment is cut back to the last
        whole line, sealed, and :class:`OutputNotWritable` raised."""
        assert self._fd is not None and self.path is not None
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, view[done:])
        except OSError as exc:
            path = self.path
            self.abort()
            raise OutputNotWritable(f"cannot write: {_why(exc)}", str(path)) from None
        self.size += done
        self.lines += lines
        self.bytes_total += done
        self.lines_total += lines
        self._dirty = True

    def sync(self) -> None:
        """fsync the current segment if anything was written since the last sync."""
        if self._fd is None or not self._dirty:
            return
        try:
            os.fsync(self._fd)
        except OSError as exc:
            path = self.path
            self.abort()
            raise OutputNotWritable(f"cannot flush: {_why(exc)}", str(path)) from None
        self._dirty = False

    def seal(self) -> Path | None:
        """fsync, close and rename the current segment without ``.part`` (an empty one is removed)."""
        if self._fd is None or self.path is None:
            return None
        part = self.path
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self.path = None
            if self.size == 0:
                part.unlink()
                fsync_dir(self.raw_dir)
                return None
            final = part.with_name(part.name[: -len(PART)])
            os.replace(part, final)
            fsync_dir(self.raw_dir)
        except OSError as exc:
            raise OutputNotWritable(f"cannot seal the segment: {_why(exc)}", str(part)) from None
        self.sealed.append(final)
        return final

    def abort(self) -> None:
        """After a failed write: cut back to the last whole line and seal what is there, best
        effort (a ``.part`` left behind is repaired on the next start)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, self.size)
        except OSError:
            pass
        try:
            self.seal()
        except OutputNotWritable:
            if self._fd is not None:
                try:
                    os.close(self._fd)
                except OSError:
                    pass
                self._fd = None
