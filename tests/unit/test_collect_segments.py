"""Segments on disk: names, sealing, crash repair, the directory lock, and a full disk."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mktpred.collect import segments as seg_mod
from mktpred.collect.segments import DirectoryLock, SegmentWriter, repair_leftovers, segment_name
from mktpred.errors import OutputNotWritable

T0 = 1763820181_123456789  # 2025-11-22T14:03:01.123456789Z


def test_segment_is_written_as_part_and_sealed_by_rename(tmp_path: Path) -> None:
    """Open creates coinbase_<UTC>Z.jsonl.part; seal leaves coinbase_<UTC>Z.jsonl with the same bytes."""
    w = SegmentWriter(tmp_path)
    part = w.open(T0)
    assert part.name == "coinbase_20251122T140301Z.jsonl.part" and part.exists()
    w.write(b'{"a":1}\n{"b":2}\n', 2)
    w.sync()
    sealed = w.seal()
    assert sealed == tmp_path / "coinbase_20251122T140301Z.jsonl" and not part.exists()
    assert sealed.read_bytes() == b'{"a":1}\n{"b":2}\n'
    assert (w.lines_total, w.bytes_total, w.sealed) == (2, 16, [sealed])


def test_empty_segment_is_removed_not_sealed(tmp_path: Path) -> None:
    """A segment with nothing in it leaves no file behind."""
    w = SegmentWriter(tmp_path)
    w.open(T0)
    assert w.seal() is None and list(tmp_path.iterdir()) == []


def test_name_taken_in_the_same_second_moves_to_the_next(tmp_path: Path) -> None:
    """A restart within one second never reuses (or overwrites) an existing segment name."""
    (tmp_path / segment_name(T0)).write_bytes(b"old\n")
    w = SegmentWriter(tmp_path)
    assert w.open(T0).name == "coinbase_20251122T140302Z.jsonl.part"
    assert (tmp_path / segment_name(T0)).read_bytes() == b"old\n"


def test_repair_trims_a_torn_line_and_seals(tmp_path: Path) -> None:
    """A crash's .part loses only its incomplete last line; the byte count is reported."""
    part = tmp_path / "coinbase_20251122T140301Z.jsonl.part"
    part.write_bytes(b'{"a":1}\n{"b":2}\n{"c":')
    (rep,) = repair_leftovers(tmp_path)
    assert rep.trimmed_bytes == 5 and rep.part == part
    assert rep.sealed == tmp_path / "coinbase_20251122T140301Z.jsonl"
    assert rep.sealed.read_bytes() == b'{"a":1}\n{"b":2}\n' and not part.exists()


def test_repair_of_a_clean_part_trims_nothing(tmp_path: Path) -> None:
    """A .part ending in a newline is sealed as it is (trimmed_bytes 0)."""
    part = tmp_path / "coinbase_20251122T140301Z.jsonl.part"
    part.write_bytes(b"x\n" * 100_000)  # larger than one backwards read
    (rep,) = repair_leftovers(tmp_path)
    assert rep.trimmed_bytes == 0 and rep.sealed is not None and rep.sealed.stat().st_size == 200_000


def test_repair_removes_a_part_with_no_whole_line(tmp_path: Path) -> None:
    """A .part holding only a torn line is removed, and other files are left alone."""
    (tmp_path / "coinbase_20251122T140301Z.jsonl.part").write_bytes(b'{"torn":')
    (tmp_path / "notes.txt.part").write_bytes(b"keep")
    (rep,) = repair_leftovers(tmp_path)
    assert rep.sealed is None and rep.trimmed_bytes == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt.part"]


def test_directory_lock_is_exclusive(tmp_path: Path) -> None:
    """A second recorder on the same directory is refused while the first holds the lock."""
    a, b = DirectoryLock(tmp_path), DirectoryLock(tmp_path)
    a.acquire()
    with pytest.raises(OutputNotWritable, match=f"pid {os.getpid()}"):
        b.acquire()
    a.release()
    b.acquire()
    b.release()


def test_disk_full_keeps_whole_lines_and_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC mid-write: OutputNotWritable, and the sealed segment holds only the whole lines written before."""
    w = SegmentWriter(tmp_path)
    w.open(T0)
    w.write(b'{"n":1}\n{"n":2}\n', 2)
    real_write = os.write
    budget = [10]

    def full_disk(fd: int, data: bytes | memoryview) -> int:
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, bytes(data[: budget[0]]))
        budget[0] -= n
        return n

    monkeypatch.setattr(seg_mod.os, "write", full_disk)
    with pytest.raises(OutputNotWritable, match="cannot write: disk full") as info:
        w.write(b'{"n":3}\n{"n":4}\n{"n":5}\n', 3)
    monkeypatch.undo()
    assert info.value.where is not None and info.value.where.endswith(".jsonl.part")
    sealed = tmp_path / "coinbase_20251122T140301Z.jsonl"
    assert sealed.read_bytes() == b'{"n":1}\n{"n":2}\n'
    assert not list(tmp_path.glob("*.part"))
