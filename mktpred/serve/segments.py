"""Live prediction segments: ``<predictions_dir>/predictions_<YYYYMMDD>T<HHMMSS>Z.jsonl``.

One message per line.  The open segment is ``....jsonl.part``, flushed (written and fsynced) each
second, sealed (fsync + rename dropping ``.part``) at UTC midnight and at shutdown, like collect's
raw segments.  A ``.part`` left by a crash is trimmed to its last whole line and sealed at the next
start.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mktpred.collect.clock import NS_PER_DAY, NS_PER_S, next_midnight_ns, utc_stamp
from mktpred.collect.segments import fsync_dir
from mktpred.errors import OutputNotWritable
from mktpred.naming import PART, PREDICTION_PREFIX

PREFIX = PREDICTION_PREFIX


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def repair_prediction_leftovers(directory: Path) -> list[Path]:
    """Seal every ``predictions_*.jsonl.part`` (torn last line cut; an empty one removed)."""
    sealed: list[Path] = []
    try:
        for part in sorted(directory.glob(f"{PREFIX}*.jsonl{PART}")):
            data = part.read_bytes()
            keep = data.rfind(b"\n") + 1
            if keep == 0:
                part.unlink()
                continue
            if keep < len(data):
                with open(part, "r+b") as fh:
                    fh.truncate(keep)
                    os.fsync(fh.fileno())
            final = part.with_name(part.name[: -len(PART)])
            os.replace(part, final)
            sealed.append(final)
        if sealed:
            fsync_dir(directory)
    except OSError as exc:
        raise OutputNotWritable(f"cannot repair leftover prediction segments: {_why(exc)}", str(directory)) from None
    return sealed


class PredictionSegments:
    """Appends message lines; call :meth:`tick` often (it flushes once a second and rotates at
    midnight) and :meth:`close` at shutdown.  ``clock`` is wall time in ns (injected for tests)."""

    def __init__(self, directory: Path, clock: Callable[[], int], flush_interval_s: float = 1.0) -> None:
        self.directory = Path(directory)
        self.clock = clock
        self.flush_ns = int(flush_interval_s * NS_PER_S)
        self.path: Path | None = None
        self.sealed: list[Path] = []
        self.lines_total = 0
        self._fh: Any = None
        self._size = 0
        self._boundary = 0
        self._next_flush = 0
        self._dirty = False

    def open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputNotWritable(f"cannot create the predictions directory: {_why(exc)}",
                                    str(self.directory)) from None
        repair_prediction_leftovers(self.directory)
        self._open(self.clock())

    def _open(self, ns: int) -> None:
        while True:
            final = self.directory / f"{PREFIX}{utc_stamp(ns)}.jsonl"
            part = final.with_name(final.name + PART)
            if not final.exists() and not part.exists():
                break
            ns += NS_PER_S
        try:
            self._fh = open(part, "xb")
        except OSError as exc:
            raise OutputNotWritable(f"cannot create a prediction segment: {_why(exc)}", str(part)) from None
        self.path = part
        self._size = 0
        self._boundary = next_midnight_ns(ns)
        self._next_flush = self.clock() + self.flush_ns

    def write(self, lines: bytes, n: int) -> None:
        """Append ``n`` whole lines (buffered until the next flush)."""
        if self.clock() >= self._boundary:
            self._rotate()
        try:
            self._fh.write(lines)
        except OSError as exc:
            raise OutputNotWritable(f"cannot write predictions: {_why(exc)}", str(self.path)) from None
        self._size += len(lines)
        self.lines_total += n
        self._dirty = True

    def tick(self) -> None:
        """Flush and fsync once per flush interval; rotate at UTC midnight."""
        now = self.clock()
        if now >= self._boundary:
            self._rotate()
        elif now >= self._next_flush:
            self._next_flush = now + self.flush_ns
            if self._dirty:
                self._sync()

    def _sync(self) -> None:
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise OutputNotWritable(f"cannot flush predictions: {_why(exc)}", str(self.path)) from None
        self._dirty = False

    def _rotate(self) -> None:
        boundary = self._boundary
        self.close()
        now = self.clock()
        self._open(boundary if now < boundary + NS_PER_DAY else now)  # named after the midnight it starts at

    def close(self) -> Path | None:
        """Seal the open segment (an empty one is removed)."""
        if self._fh is None or self.path is None:
            return None
        part = self.path
        try:
            self._sync()
            self._fh.close()
            self._fh = None
            self.path = None
            if self._size == 0:
                part.unlink()
                fsync_dir(self.directory)
                return None
            final = part.with_name(part.name[: -len(PART)])
            os.replace(part, final)
            fsync_dir(self.directory)
        except OSError as exc:
            raise OutputNotWritable(f"cannot seal the prediction segment: {_why(exc)}", str(part)) from None
        self.sealed.append(final)
        return final
