"""Reading raw segments as bounded chunks of complete lines (names and discovery: :mod:`mktpred.naming`).

A segment is ``<raw_dir>/<stem>.jsonl`` (also ``.jsonl.gz``, ``.jsonl.zst``); the one being written
is ``<stem>.jsonl.part`` and may end with a torn line.  Readers here never hold more than one
chunk of a segment in memory, whatever its size.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from mktpred.naming import Segment

_READ_BLOCK = 8 * 2**20


class HashingReader(io.RawIOBase):
    """Wraps a binary file: hashes (blake2b-128, as ``store.manifest.file_hash``) what is read."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.hasher = hashlib.blake2b(digest_size=16)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self.raw.readinto(b)  # type: ignore[attr-defined]
        if n:
            self.hasher.update(memoryview(b)[:n])
            self.bytes_read += n
        return n or 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if data:
            self.hasher.update(data)
            self.bytes_read += len(data)
        return data

    def hexdigest(self) -> str:
        return "blake2b:" + self.hasher.hexdigest()


def open_decompressed(raw: BinaryIO, compression: str | None) -> BinaryIO:
    """A stream of the decompressed bytes of ``raw``."""
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(raw, read_size=_READ_BLOCK)
    return raw


@dataclass
class LineChunk:
    """Complete lines ``first_line .. first_line + n_lines - 1`` (1-based) of a segment."""

    data: bytes  #: ends with ``\\n`` (a final unterminated line of a sealed file gets one added)
    first_line: int
    n_lines: int
    raw_offset: int  #: bytes of the (compressed) file consumed so far, for progress


@dataclass
class ReadStats:
    lines: int = 0
    truncated: int = 0  #: torn last line of a ``.part`` segment, skipped
    hash: str = ""
    raw_bytes: int = 0


def iter_chunks(segment: Segment, chunk_bytes: int, stats: ReadStats) -> Iterator[LineChunk]:
    """Read ``segment`` as chunks of about ``chunk_bytes`` of complete lines.

    Fills ``stats`` (lines, torn tail, content hash of the file as stored) when exhausted.  A line
    longer than ``chunk_bytes`` makes its chunk longer; memory stays bounded by the longest line.
    A ``.part`` segment is read up to the size it had when discovered, even if the recorder keeps
    appending (so size, hash and content in the manifest agree).
    """
    with open(segment.path, "rb") as fh:
        hreader = HashingReader(fh)
        stream = open_decompressed(hreader, segment.compression)  # type: ignore[arg-type]
        carry = b""
        line_no = 1
        left = segment.size if segment.partial else -1
        while True:
            if left == 0:
                break
            want = chunk_bytes if left < 0 else min(chunk_bytes, left)
            block = stream.read(want)
            if left > 0:
                left -= len(block)
            if not block:
                break
            data = carry + block if carry else block
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            carry = data[cut:]
            body = data[:cut] if carry else data
            n = body.count(b"\n")
            yield LineChunk(body, line_no, n, hreader.bytes_read)
            line_no += n
        if carry:
            if segment.partial:
                stats.truncated = 1
            else:
                yield LineChunk(carry + b"\n", line_no, 1, hreader.bytes_read)
                line_no += 1
        # Drain whatever the decompressor did not need (trailing bytes) so the hash covers the file.
        while not segment.partial and hreader.read(_READ_BLOCK):
            pass
        stats.lines = line_no - 1
        stats.hash = hreader.hexdigest()
        stats.raw_bytes = hreader.bytes_read


def hash_and_count(segment: Segment, cancel: threading.Event | None = None) -> ReadStats:
    """One streaming pass: content hash and line count (used beside an engine that reads the file).

    Returns early (with partial figures) once ``cancel`` is set."""
    stats = ReadStats()
    with open(segment.path, "rb") as fh:
        hreader = HashingReader(fh)
        stream = open_decompressed(hreader, segment.compression)  # type: ignore[arg-type]
        lines = 0
        last = b"\n"
        while block := stream.read(_READ_BLOCK):
            if cancel is not None and cancel.is_set():
                return stats
            lines += block.count(b"\n")
            last = block[-1:]
        if last != b"\n":
            lines += 1
        while hreader.read(_READ_BLOCK):
            pass
    stats.lines = lines
    stats.hash = hreader.hexdigest()
    stats.raw_bytes = hreader.bytes_read
    return stats


def fetch_lines(segment: Segment, wanted: set[int]) -> dict[int, bytes]:
    """The text of the given (1-based) line numbers, without the newline; stops after the last."""
    out: dict[int, bytes] = {}
    if not wanted:
        return out
    last_wanted = max(wanted)
    with open(segment.path, "rb") as fh:
        stream = open_decompressed(fh, segment.compression)
        carry = b""
        line_no = 1
        while line_no <= last_wanted:
            block = stream.read(_READ_BLOCK)
            if not block:
                if carry and line_no in wanted:
                    out[line_no] = carry
                break
            data = carry + block if carry else block
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            n = data.count(b"\n", 0, cut)
            if any(line_no <= w < line_no + n for w in wanted):
                for i, line in enumerate(data[:cut].split(b"\n")[:-1]):
                    if line_no + i in wanted:
                        out[line_no + i] = line
            line_no += n
    return out
