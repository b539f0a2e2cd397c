"""`mktpred csv2parquet` through the CLI: exit codes, the --json summary, error lines."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow.dataset as ds
from typer.testing import CliRunner

from mktpred.cli.app import app

runner = CliRunner()
JSON_KEYS = {"inputs", "parquet_dir", "format", "files_found", "converted", "skipped", "failed", "rows", "lines",
             "invalid", "max_invalid", "too_many_invalid", "input_bytes", "seconds", "rows_per_s", "mb_per_s",
             "files", "failures", "notes"}
FILE_KEYS = {"source", "format", "table", "rows", "lines", "invalid", "outputs", "quarantine", "seconds",
             "invalid_reasons"}
TRADES = """exchange,symbol,timestamp,local_timestamp,id,side,price,amount
coinbase,BTC-USD,1786309548228568,1786309548230001,1,buy,65000.5,0.01
coinbase,BTC-USD,1786309548328568,1786309548330001,2,sell,65000.4,0.02
"""


def c2p(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["csv2parquet", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_json_summary_and_rerun(tmp_path: Path) -> None:
    """--json prints one object with the documented keys; a re-run skips the file."""
    src = tmp_path / "trades.csv.gz"
    src.write_bytes(gzip.compress(TRADES.encode()))
    store = tmp_path / "store"
    code, out, _ = c2p(str(src), "--parquet-dir", str(store), "--json")
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == JSON_KEYS and set(doc["files"][0]) == FILE_KEYS
    assert doc["rows"] == {"trades": 2} and doc["converted"] == 1 and doc["lines"] == 3
    assert doc["files"][0]["format"] == "tardis:trades"
    assert ds.dataset(store / "trades", partitioning="hive").count_rows() == 2
    code, out, _ = c2p(str(src), "--parquet-dir", str(store), "--json")
    assert code == 0 and json.loads(out)["skipped"] == 1


def test_summary_table_without_json(tmp_path: Path) -> None:
    """Without --json a summary table goes to stderr and nothing to stdout."""
    (tmp_path / "t.csv").write_text(TRADES)
    code, out, err = c2p(str(tmp_path / "t.csv"), "--parquet-dir", str(tmp_path / "store"))
    assert code == 0 and out == ""
    assert "files imported" in err and "rows trades" in err


def test_unknown_header_is_exit_2_with_one_line(tmp_path: Path) -> None:
    """An unrecognised header: exit 2, one error line naming the columns seen and the known formats."""
    (tmp_path / "odd.csv").write_text("when,what\n1,2\n")
    code, out, err = c2p(str(tmp_path / "odd.csv"), "--parquet-dir", str(tmp_path / "store"))
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("error: unrecognised CSV header with columns when, what; known formats: mktpred")
    assert "tardis (incremental_book_L2, trades, quotes)" in line and "Traceback" not in err


def test_generic_with_options(tmp_path: Path) -> None:
    """--table, --schema and --time-column import any CSV as its own partitioned table."""
    (tmp_path / "fx.csv").write_text("t,rate\n1786309548000,1.1\n1786395948000,1.2\n")
    code, out, _ = c2p(str(tmp_path / "fx.csv"), "--parquet-dir", str(tmp_path / "store"), "--table", "fx",
                       "--schema", "t=epoch_ms", "--time-column", "t", "--json")
    assert code == 0, out
    assert json.loads(out)["rows"] == {"fx": 2}
    assert sorted(p.name for p in (tmp_path / "store" / "fx").iterdir()) == ["date=2026-08-09", "date=2026-08-10"]


def test_too_many_malformed_rows_is_exit_1_after_the_summary(tmp_path: Path) -> None:
    """Malformed rows past --max-invalid: the JSON summary first, then exit 1; the good rows are kept."""
    (tmp_path / "t.csv").write_text(TRADES + "coinbase,BTC-USD,x,1,3,buy,1,1\n")
    code, out, err = c2p(str(tmp_path / "t.csv"), "--parquet-dir", str(tmp_path / "store"), "--max-invalid", "0",
                         "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["invalid"] == 1 and doc["too_many_invalid"] and doc["rows"] == {"trades": 2}
    assert doc["files"][0]["quarantine"].startswith("_quarantine/t_")
    assert "more than the 0 allowed (--max-invalid)" in err


def test_missing_input_and_bad_format_are_exit_2(tmp_path: Path) -> None:
    """A path that names nothing, or an unknown --format: exit 2 with one error line."""
    code, _, err = c2p(str(tmp_path / "nope.csv"), "--parquet-dir", str(tmp_path / "store"))
    assert code == 2 and err.startswith("error: no such file")
    (tmp_path / "t.csv").write_text(TRADES)
    code, _, err = c2p(str(tmp_path / "t.csv"), "--format", "excel", "--parquet-dir", str(tmp_path / "store"))
    assert code == 2 and "unknown format 'excel'" in err
