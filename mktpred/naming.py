"""Every file-name rule of mktpred, in one place: raw segments, store partitions, safe names.

Raw segments (DESIGN.md "Raw records"): ``collect`` writes ``coinbase_<YYYYMMDD>T<HHMMSS>Z.jsonl``
while the segment is open as ``<that>.part``, and seals it by dropping ``.part``.  ``convert`` and
``validate`` read any ``<stem>.jsonl`` (also ``.jsonl.gz`` / ``.jsonl.zst``: archived copies); the
stem names the store's output files.

Store partitions: ``date=<YYYY-MM-DD>`` (:data:`PARTITION_RE`, :func:`partition_name`).

No name from the network becomes a path: anything taken from data (a product id, a table name, a
model name) goes through :func:`safe_name` before it is part of a file name.  It maps a value to a
name that cannot leave its folder, reversibly (:func:`unsafe_name` gives the value back).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

# -- raw segments ---------------------------------------------------------------------------------

#: the prefix of every segment ``collect`` writes
COLLECT_PREFIX = "coinbase_"
SEGMENT_SUFFIX = ".jsonl"
#: sealed segments; compressed ones are archived copies (gzip, zstd)
SEALED_SUFFIXES = (SEGMENT_SUFFIX, ".jsonl.gz", ".jsonl.zst")
#: appended to a segment's sealed name while it is being written
PART = ".part"
PART_SUFFIX = SEGMENT_SUFFIX + PART
#: a name ``collect`` gives: the UTC time the segment was opened, optionally still ``.part``
COLLECTED_SEGMENT_RE = re.compile(r"coinbase_(\d{8}T\d{6}Z)\.jsonl(\.part)?\Z")
#: the live prediction segments ``serve`` writes and ``predict --import-live`` reads
PREDICTION_PREFIX = "predictions_"
PREDICTION_SEGMENT_RE = re.compile(r"predictions_(\d{8}T\d{6}Z)\.jsonl(\.part)?\Z")
#: preference when several files share a stem (an archived copy beside the original)
_PREFERENCE = {".jsonl": 0, ".jsonl.zst": 1, ".jsonl.gz": 2, PART_SUFFIX: 3}


def collected_segment_name(utc_stamp: str) -> str:
    """The sealed name ``collect`` gives a segment opened at ``utc_stamp`` (``20251122T140301Z``)."""
    return f"{COLLECT_PREFIX}{utc_stamp}{SEGMENT_SUFFIX}"


def split_name(name: str) -> tuple[str, str] | None:
    """``(stem, suffix)`` of a segment file name (suffix: one of :data:`SEALED_SUFFIXES` or
    :data:`PART_SUFFIX`), ``None`` if it is not one."""
    for suffix in (PART_SUFFIX, *SEALED_SUFFIXES[1:], SEALED_SUFFIXES[0]):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], suffix
    return None


def is_part(name: str) -> bool:
    """Whether ``name`` is a segment still being written (``<stem>.jsonl.part``)."""
    parts = split_name(name)
    return parts is not None and parts[1] == PART_SUFFIX


def is_sealed(name: str) -> bool:
    """Whether ``name`` is a sealed segment (``<stem>.jsonl[.gz|.zst]``)."""
    parts = split_name(name)
    return parts is not None and parts[1] != PART_SUFFIX


@dataclass(frozen=True)
class Segment:
    """One raw segment file."""

    path: Path
    stem: str  #: the name without ``.jsonl[.gz|.zst|.part]``; names the outputs
    suffix: str  #: one of SEALED_SUFFIXES or PART_SUFFIX
    size: int
    mtime_ns: int

    @property
    def partial(self) -> bool:
        return self.suffix == PART_SUFFIX

    @property
    def compression(self) -> str | None:
        return {".jsonl.gz": "gzip", ".jsonl.zst": "zstd"}.get(self.suffix)


def segment_files(raw_dir: Path, *, recursive: bool = False) -> list[Path]:
    """Every segment file (sealed or ``.part``) of ``raw_dir``, sorted; ``recursive`` also looks in
    sub-folders (hidden ones excepted)."""
    if recursive:
        found = (p for p in raw_dir.rglob("*")
                 if not any(part.startswith(".") for part in p.relative_to(raw_dir).parts))
    else:
        found = raw_dir.iterdir()
    return sorted(p for p in found if split_name(p.name) is not None and p.is_file())


def discover(raw_dir: Path, *, include_latest: bool = False) -> tuple[list[Segment], list[str]]:
    """Segments of ``raw_dir`` sorted by name, one per stem, and notes about files passed over."""
    by_stem: dict[str, list[Segment]] = {}
    for p in segment_files(raw_dir):
        parts = split_name(p.name)
        assert parts is not None
        stem, suffix = parts
        if suffix == PART_SUFFIX and not include_latest:
            continue
        st = p.stat()
        by_stem.setdefault(stem, []).append(Segment(p.resolve(), stem, suffix, st.st_size, st.st_mtime_ns))
    chosen: list[Segment] = []
    notes: list[str] = []
    for stem in sorted(by_stem):
        cands = sorted(by_stem[stem], key=lambda s: _PREFERENCE[s.suffix])
        chosen.append(cands[0])
        for other in cands[1:]:
            notes.append(f"{other.path.name}: skipped, {cands[0].path.name} has the same stem")
    return chosen, notes


# -- store partitions -----------------------------------------------------------------------------

PARTITION_RE = re.compile(r"date=(\d{4}-\d{2}-\d{2})\Z")


def partition_date(path: Path) -> str | None:
    """The ``date=`` value of the folder holding ``path``, if it is a partition folder."""
    m = PARTITION_RE.match(path.parent.name)
    return m.group(1) if m else None


def partition_name(date: str) -> str:
    """The folder of one UTC day: ``date=2026-08-09``."""
    return f"date={date}"


# -- names taken from data ------------------------------------------------------------------------

#: characters kept as they are; everything else is percent-encoded
_SAFE_CHARS = "-_."
_MAX_NAME = 200


def safe_name(value: str) -> str:
    """A file-name part for ``value`` that stays inside its folder, reversibly.

    Letters, digits, ``-``, ``_`` and ``.`` are kept (``BTC-USD`` stays ``BTC-USD``); every other
    byte -- ``/``, ``\\``, ``%``, spaces, control characters -- is percent-encoded, and so is a
    leading ``.`` (no hidden files, no ``..``).  Raises ``ValueError`` for an empty value or one whose
    name would be longer than 200 characters."""
    if not value:
        raise ValueError("an empty name cannot be a file name")
    name = quote(value, safe=_SAFE_CHARS)
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > _MAX_NAME:
        raise ValueError(f"name too long for a file name ({len(name)} characters): {value[:40]!r}...")
    return name


def unsafe_name(name: str) -> str:
    """The value :func:`safe_name` encoded."""
    return unquote(name)
