"""Shared by the engine comparison tests: one file's engine batches as whole tables."""

from __future__ import annotations

import pyarrow as pa

from mktpred.convert.engine import EngineBatch

Collected = tuple[dict[str, pa.Table], list[tuple[int, str]], int]


def concat_batches(batches: list[EngineBatch]) -> Collected:
    """Concatenate each table over the batches; specials with file-wide line indices; line count."""
    out: dict[str, list[pa.Table]] = {}
    special: list[tuple[int, str]] = []
    base = 0
    for b in batches:
        for name, t in b.tables.items():
            if t.num_rows:
                out.setdefault(name, []).append(t)
        special.extend((base + i, k) for i, k in b.special)
        base += b.lines
    return {k: pa.concat_tables(v) for k, v in out.items()}, special, base
