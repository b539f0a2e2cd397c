"""Convert's progress events count rows while a segment is being converted, not only after it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mktpred.config import Config
from mktpred.convert.runner import run_convert
from mktpred.progress import Progress
from mktpred.testing.raw import SynthSpec, write_segment


def test_rows_advance_during_a_segment(tmp_path: Path) -> None:
    """With one segment read in several chunks, progress reports rows before the segment is done,
    never going back, and ends at the rows the summary counts."""
    raw, store = tmp_path / "raw", tmp_path / "parquet"
    raw.mkdir()
    write_segment(raw / "coinbase_20260809T210548Z.jsonl",
                  SynthSpec(seed=3, snapshot_levels=50, start_ns=1_786_309_548_000_000_000), n_lines=3000)
    cfg = Config()
    cfg = replace(cfg, paths=replace(cfg.paths, raw_dir=raw, parquet_dir=store),
                  convert=replace(cfg.convert, chunk_rows=200, engine="cpu"))
    events: list[Progress] = []
    summary = run_convert(cfg, progress=events.append)
    total = sum(sum(s.rows.values()) for s in summary.segments)
    during = [e.rows for e in events if e.files_done == 0]
    assert total > 0
    assert any(0 < r < total for r in during), during
    rows = [e.rows for e in events]
    assert rows == sorted(rows)
    assert events[-1].files_done == 1 and events[-1].rows == total
