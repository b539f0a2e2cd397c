"""The real Coinbase capture in ../shared/samples converts with the counts its README states,
through every available engine (``tests.unit.gpu_standins.ENGINES``)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from mktpred.config import Config
from mktpred.convert.runner import run_convert
from tests.unit.gpu_standins import ENGINES, engine_option

FILES = {
    "records": "coinbase-advanced-trade-2026-08-09.records.jsonl.zst",
    "frames": "coinbase-advanced-trade-2026-08-09.frames.jsonl.zst",
}


@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("kind", ["records", "frames"])
def test_real_capture_counts(samples_dir: Path, tmp_path: Path, kind: str, engine_name: str,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Every engine: 74,193 level2 rows (45,069 offers), 160 tickers, 279 trades, 1,030 messages, nothing invalid."""
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(samples_dir / FILES[kind], raw / "coinbase_20260809T210548Z.jsonl.zst")
    cfg = Config()
    cfg = replace(cfg, paths=replace(cfg.paths, raw_dir=raw, parquet_dir=tmp_path / "store"))
    summary = run_convert(cfg, engine=engine_option(engine_name, monkeypatch))
    assert summary.engines == {"cpu" if engine_name == "cpu" else "gpu": 1}
    assert summary.rows == {"l2": 74_193, "ticker": 160, "trades": 279, "messages": 1_030, "events": 0}
    assert (summary.lines, summary.invalid, summary.truncated) == (1_030, 0, 0)

    root = tmp_path / "store"
    con = duckdb.connect()
    l2 = con.sql(f"SELECT count(*) FILTER (side = 'ask'), count(*) FILTER (is_snapshot), "
                 f"count(DISTINCT seq) FROM read_parquet('{root}/l2/*/*.parquet')").fetchall()[0]
    assert l2 == (45_069, 46_000 + 23_334, 775)
    trades = con.sql(f"SELECT count(*) FILTER (is_snapshot) FROM read_parquet('{root}/trades/*/*.parquet')").fetchall()[0]
    assert trades == (200,)
    msgs = con.sql(f"SELECT min(seq), max(seq), count(DISTINCT seq), strftime(min(time), '%H:%M:%S.%n'), "
                   f"strftime(max(time), '%H:%M:%S.%n'), count(*) FILTER (channel = 'candles'), "
                   f"count(*) FILTER (channel = 'heartbeats'), count(recv_time) "
                   f"FROM read_parquet('{root}/messages/*/*.parquet')").fetchall()[0]
    assert msgs[:7] == (0, 1029, 1030, "21:05:48.228568804", "21:06:12.892314374", 6, 25)
    assert msgs[7] == (1030 if kind == "records" else 0)
