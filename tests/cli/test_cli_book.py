"""`mktpred book` through the CLI: output table, --json, options, config, errors."""

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


def _store(root: Path) -> Path:
    """Two products, a snapshot each, then one update per 250 ms for a second."""
    rows: list[dict[str, Any]] = []
    seq = 0
    for i in range(5):
        for product, px in (("BTC-USD", 100.0), ("ETH-USD", 10.0)):
            t = T0 + i * 250 * MS
            levels = [("bid", px, 1.0), ("bid", px - 1, 1.0), ("ask", px + 1, 1.0)] if i == 0 else \
                [("bid", px, float(i + 1))]
            rows.extend(dict(recv_time=t, time=t, event_time=t // 1000, conn="c", seq=seq, product_id=product,
                             is_snapshot=i == 0, side=s, price=p, size=q) for s, p, q in levels)
            seq += 1
    d = root / "l2" / "date=2026-08-09"
    d.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=TABLE_SCHEMAS["l2"]), d / "seg.parquet")
    return root


def test_book_json_summary_and_duckdb_reads_the_table(tmp_path: Path) -> None:
    """`book --json` reports per product, and DuckDB reads the book table it wrote."""
    store = _store(tmp_path / "pq")
    result = runner.invoke(app, ["book", "--parquet-dir", str(store), "--interval", "250ms", "--depth", "2",
                                 "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["depth"] == 2 and doc["interval"] == "250ms" and doc["snapshots"] == 10
    assert doc["products"]["ETH-USD"]["updates"] == 4
    assert doc["products"]["BTC-USD"]["outputs"] == ["book/date=2026-08-09/BTC-USD.parquet"]
    rows = duckdb.connect().sql(
        f"SELECT product_id, count(*), max(bid_size_0), count(bid_price_1), count(ask_price_1) "
        f"FROM read_parquet('{store}/book/*/*.parquet', hive_partitioning=true) GROUP BY 1 ORDER BY 1").fetchall()
    assert rows == [("BTC-USD", 5, 5.0, 5, 0), ("ETH-USD", 5, 5.0, 5, 0)]


def test_book_table_output_and_up_to_date_rerun(tmp_path: Path) -> None:
    """Without --json a table goes to stdout; a re-run says the products are up to date."""
    store = _store(tmp_path / "pq")
    first = runner.invoke(app, ["book", "--parquet-dir", str(store)], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "BTC-USD" in first.stdout and "2026-08-09" in first.stdout
    again = runner.invoke(app, ["book", "--parquet-dir", str(store), "--products", "BTC-USD"],
                          catch_exceptions=False)
    assert again.exit_code == 0
    assert "1 product up to date" in again.stderr


def test_every_update_products_and_time_range(tmp_path: Path) -> None:
    """--every-update with --products and --start/--end writes one row per frame in range."""
    store = _store(tmp_path / "pq")
    result = runner.invoke(app, ["book", "--parquet-dir", str(store), "--every-update", "--products", "ETH-USD",
                                 "--start", "2026-08-09T12:00:00.25Z", "--end", "2026-08-09T12:00:00.75Z",
                                 "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert list(doc["products"]) == ["ETH-USD"] and doc["interval"] == "every-update"
    t = pq.read_table(store / "book" / "date=2026-08-09" / "ETH-USD.parquet")
    assert t.column("time").cast(pa.int64()).to_pylist() == [T0 + 250 * MS, T0 + 500 * MS]
    assert not (store / "book" / "date=2026-08-09" / "BTC-USD.parquet").exists()


def test_config_section_is_used(tmp_path: Path) -> None:
    """[book] depth and interval come from the config file when no option is given."""
    store = _store(tmp_path / "pq")
    cfg = tmp_path / "mktpred.toml"
    cfg.write_text(f'[paths]\nparquet_dir = "{store}"\n[book]\ndepth = 3\ninterval = "500ms"\n')
    result = runner.invoke(app, ["book", "--config", str(cfg), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["depth"], doc["interval"], doc["products"]["BTC-USD"]["snapshots"]) == (3, "500ms", 3)


def test_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    """A missing store, a bad depth, interval, product or time is one `error:` line and exit 2."""
    store = _store(tmp_path / "pq")
    cases = [
        (["--parquet-dir", str(tmp_path / "none")], "no Parquet store"),
        (["--parquet-dir", str(store), "--depth", "0"], "book.depth must be an integer 1..50"),
        (["--parquet-dir", str(store), "--interval", "soon"], 'book.interval must be a duration from 1ms to 1 day'),
        (["--parquet-dir", str(store), "--products", "XRP-USD"], "no level2 data for XRP-USD"),
        (["--parquet-dir", str(store), "--start", "tuesday"], "not a time: 'tuesday'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["book", *args], catch_exceptions=False)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_help_has_an_example() -> None:
    """`book --help` documents the command with an example."""
    result = runner.invoke(app, ["book", "--help"])
    assert result.exit_code == 0
    assert "Example: mktpred book" in result.stdout and "--every-update" in result.stdout


def _break(store: Path, how: str) -> str:
    """Damage ``store`` one way; returns the file named in the expected error."""
    from mktpred.store.schemas import TABLE_SCHEMAS as SCHEMAS

    l2 = store / "l2" / "date=2026-08-09" / "seg.parquet"
    if how == "truncated":
        l2.write_bytes(l2.read_bytes()[:300])
        return "l2/date=2026-08-09/seg.parquet is not a readable Parquet file: Parquet magic bytes not found"
    if how == "foreign":
        pq.write_table(pa.table({"x": [1, 2]}), l2.with_name("other.parquet"))
        return "l2/date=2026-08-09/other.parquet is not a l2 file: no column recv_time, time, event_time"
    if how == "empty-messages":
        d = store / "messages" / "date=2026-08-09"
        d.mkdir(parents=True)
        (d / "seg.parquet").write_bytes(b"")
        return "messages/date=2026-08-09/seg.parquet is not a readable Parquet file: Parquet file size is 0 bytes"
    assert how == "messages-without-columns"
    d = store / "messages" / "date=2026-08-09"
    d.mkdir(parents=True)
    pq.write_table(pa.table({}), d / "seg.parquet")
    assert SCHEMAS["messages"].names[0] == "recv_time"
    return "messages/date=2026-08-09/seg.parquet is not a messages file: no column recv_time"


def test_damaged_or_foreign_input_files_are_one_error_line_and_exit_1(tmp_path: Path) -> None:
    """A truncated l2 file, a foreign Parquet file, an empty messages file or one without the messages
    columns: one `error:` line naming the file, exit 1 (data problem), nothing written."""
    for how in ("truncated", "foreign", "empty-messages", "messages-without-columns"):
        store = _store(tmp_path / how)
        expected = _break(store, how)
        result = runner.invoke(app, ["book", "--parquet-dir", str(store)])
        assert result.exit_code == 1, (how, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: " + expected), (how, result.stderr)
        assert not (store / "book").exists(), how


def test_read_only_store_is_one_error_line_and_exit_3(tmp_path: Path) -> None:
    """A store on a read-only file system: one `error:` line, exit 3 (a real read-only tmpfs mount;
    skipped where mounting is not allowed, and as non-root the folder is made read-only instead)."""
    import os
    import subprocess

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = False
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "none", str(mnt)],
                          capture_output=True).returncode != 0:
            import pytest

            pytest.skip("cannot mount a tmpfs here (root without mount rights)")
        mounted = True
    try:
        store = _store(mnt / "pq")
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, capture_output=True)
        else:
            for d in (store, *store.rglob("*")):
                if d.is_dir():
                    d.chmod(0o555)
        result = runner.invoke(app, ["book", "--parquet-dir", str(store)])
        assert result.exit_code == 3, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: parquet directory is not writable: "), result.stderr
        assert "Read-only file system" in lines[0] or "Permission denied" in lines[0]
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], capture_output=True)
        else:
            for d in (mnt, *mnt.rglob("*")):
                if d.is_dir():
                    d.chmod(0o755)
