"""`mktpred features` through the CLI: a table DuckDB reads with the DESIGN columns, --json, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from mktpred.cli.app import app
from mktpred.coinbase.timestamps import parse_rfc3339_ns
from mktpred.store.schemas import TABLE_SCHEMAS

runner = CliRunner()
T0 = parse_rfc3339_ns("2026-08-09T12:00:00Z")
MS = 1_000_000

DESIGN_COLUMNS = [
    "time", "product_id", "conn", "seq", "valid", "best_bid", "best_ask", "bid_size_1", "ask_size_1", "mid",
    "spread", "spread_bps", "wmid", "imb_1", "imb_5", "imb_10", "depth_bid_10bps", "depth_ask_10bps",
    "ofi_1", "ofi_2", "ofi_3", "ofi_4", "ofi_5", "n_trades", "buy_volume", "sell_volume", "tfi", "vwap",
    "ret_1", "rv_10s", "rv_60s", "rv_300s", "fwd_ret_1s", "fwd_ret_2s"]


def _store(root: Path) -> Path:
    """BTC-USD: a snapshot at T0+100ms, one bid update per 500 ms for 3 s, one trade (Coinbase SELL)."""
    rows: list[dict[str, Any]] = []
    for i in range(7):
        t = T0 + 100 * MS + i * 500 * MS
        levels = [("bid", 100.0, 1.0), ("ask", 101.0, 1.0)] if i == 0 else [("bid", 100.0, float(i + 1))]
        rows.extend(dict(recv_time=t, time=t, event_time=t // 1000, conn="c", seq=2 * i, product_id="BTC-USD",
                         is_snapshot=i == 0, side=s, price=p, size=q) for s, p, q in levels)
    d = root / "l2" / "date=2026-08-09"
    d.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=TABLE_SCHEMAS["l2"]), d / "seg.parquet")
    t = T0 + 1200 * MS
    d = root / "trades" / "date=2026-08-09"
    d.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([dict(recv_time=t, time=t, conn="c", seq=3, product_id="BTC-USD",
                                              is_snapshot=False, trade_id="1", side="SELL", price=101.0, size=0.5,
                                              trade_time=t // 1000)], schema=TABLE_SCHEMAS["trades"]),
                   d / "seg.parquet")
    return root


def test_cli_writes_a_table_duckdb_reads(tmp_path: Path) -> None:
    """--json summary; the table has the DESIGN columns, one row per second, the trade as a buy."""
    root = _store(tmp_path / "pq")
    res = runner.invoke(app, ["features", "--parquet-dir", str(root), "--horizons", "1s,2s", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["rows"] == 3 and doc["interval"] == "1s" and doc["horizons"] == ["1s", "2s"]
    assert doc["columns"] == DESIGN_COLUMNS
    assert doc["products"]["BTC-USD"]["dates_written"] == ["2026-08-09"]
    con = duckdb.connect()
    files = str(root / "features" / "*" / "*.parquet")
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{files}', hive_partitioning = false)").fetchall()]
    assert cols == DESIGN_COLUMNS
    got = con.execute(f"SELECT epoch_ns(time) // 1000000 - {T0 // MS}, valid, bid_size_1, n_trades, buy_volume, "
                      f"sell_volume, ofi_1, fwd_ret_1s FROM read_parquet('{files}', hive_partitioning = false) ORDER BY time").fetchall()
    assert got == [(1000, False, 2.0, 0, 0.0, 0.0, 1.0, 0.0), (2000, True, 4.0, 1, 0.5, 0.0, 2.0, 0.0),
                   (3000, True, 6.0, 0, 0.0, 0.0, 2.0, None)]
    again = runner.invoke(app, ["features", "--parquet-dir", str(root), "--horizons", "1s,2s", "--json"])
    assert json.loads(again.stdout)["products"]["BTC-USD"]["dates_skipped"] == ["2026-08-09"]


def test_cli_100ms_and_table_name(tmp_path: Path) -> None:
    """--interval 100ms into --table f100: one row per 100 ms from the snapshot to the last frame."""
    root = _store(tmp_path / "pq")
    res = runner.invoke(app, ["features", "--parquet-dir", str(root), "--interval", "100ms", "--horizons", "100ms",
                              "--table", "f100", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["rows"] == 31
    assert (root / "f100" / "date=2026-08-09").is_dir()


def test_cli_usage_errors(tmp_path: Path) -> None:
    """Bad interval, horizon not a multiple, unknown product: exit 2 with one error line."""
    root = _store(tmp_path / "pq")
    for args in (["--interval", "fast"], ["--horizons", "1500ms"], ["--products", "XRP-USD"]):
        res = runner.invoke(app, ["features", "--parquet-dir", str(root), *args])
        assert res.exit_code == 2, (args, res.output)
        assert res.output.strip().startswith("error:") and "Traceback" not in res.output


def test_cli_help_has_an_example() -> None:
    """`mktpred features --help` describes it with an example and --config; the root help lists it."""
    res = runner.invoke(app, ["features", "--help"], catch_exceptions=False)
    assert res.exit_code == 0 and "Example" in res.output and "mktpred features" in res.output
    assert "--config" in res.output and "--cross" in res.output
    assert "features" in runner.invoke(app, ["--help"], catch_exceptions=False).output
