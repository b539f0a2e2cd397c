"""`mktpred validate` through the CLI: the report, --json, exit codes 0 / 1 / 2, options and config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from mktpred.cli.app import app
from mktpred.testing.store import NS_PER_S, ConnSpec, SyntheticStore, write_synthetic_store

runner = CliRunner()
MIDNIGHT = 1763769600 * NS_PER_S  # 2025-11-22T00:00:00Z
CHECKS = ["readable", "schema", "manifest_outputs", "rows", "quarantine", "stray_files", "partitions", "nulls", "prices",
          "sizes", "sides", "duplicates", "sequence", "clock", "coverage", "heartbeats"]


def make(tmp_path: Path, silence: bool = False) -> SyntheticStore:
    conns = [ConnSpec("a", MIDNIGHT + 10 * NS_PER_S, 30)]
    if silence:  # a reconnect 20 s later
        conns.append(ConnSpec("b", MIDNIGHT + 60 * NS_PER_S, 30, new_segment=False))
    return write_synthetic_store(tmp_path / "parquet", conns, raw_dir=tmp_path / "raw")


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["validate", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_clean_store_exit_0_with_summary_and_coverage_tables(tmp_path: Path) -> None:
    """A clean store: exit 0, every check in the summary table, the coverage table, a verdict."""
    store = make(tmp_path)
    code, out, err = invoke("--parquet-dir", str(store.root), "--raw-dir", str(store.raw_dir))
    assert code == 0, out + err
    for name in [*CHECKS, "raw_converted", "raw_in_progress"]:
        assert f"│ {name} " in out, name
    assert "fail" not in out
    assert "coverage per product and UTC day" in out
    assert re.search(r"BTC-USD +2025-11-22 +00:00:1\d-00:00:[34]\d ", out)  # a 30 s day, from-to
    assert out.rstrip().endswith("store OK")
    assert "error" not in err


def test_json_is_the_whole_report(tmp_path: Path) -> None:
    """--json prints one JSON object with every check, coverage, gaps and silences."""
    store = make(tmp_path, silence=True)
    code, out, _ = invoke("--parquet-dir", str(store.root), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] is True and doc["status"] == "warn"
    assert [c["name"] for c in doc["checks"]] == CHECKS
    assert set(doc["checks"][0]) == {"name", "status", "count", "checked", "details", "locations"}
    assert doc["rows"] == store.rows
    assert doc["silences_total"] == 2 and doc["silences"][0]["start"].startswith("2025-11-22T00:00:")
    assert {c["product"] for c in doc["coverage"]} == {"BTC-USD", "ETH-USD"}
    cov = doc["coverage"][0]
    assert set(cov) >= {"product", "date", "first", "last", "span_s", "covered_s", "coverage", "rows", "conns",
                        "silences", "longest_silence_s", "missing_heartbeat_s"}
    assert doc["gaps"] == [] and doc["gaps_total"] == 0


def test_problems_exit_1_after_printing_the_report(tmp_path: Path) -> None:
    """A negative size: the report (with the location) is printed, then one error line, exit 1."""
    store = make(tmp_path)
    victim = sorted((store.root / "l2").glob("date=*/*.parquet"))[0]
    table = pq.read_table(victim)
    sizes = table.column("size").to_pylist()
    sizes[4] = -2.0
    pq.write_table(table.set_column(table.schema.get_field_index("size"), "size", pa.array(sizes)), victim)
    code, out, err = invoke("--parquet-dir", str(store.root))
    assert code == 1
    assert "│ sizes " in out and "fail" in out
    assert "1 rows with size not >= 0 and finite (row 4 = -2.0)" in out
    assert "store has problems" in out
    assert err.strip().splitlines()[-1] == f"error: 1 check failed: sizes ({store.root})"
    assert "Traceback" not in err
    code, out, _ = invoke("--parquet-dir", str(store.root), "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False and [c["name"] for c in doc["checks"] if c["status"] == "fail"] == ["sizes"]


def test_missing_store_exits_2(tmp_path: Path) -> None:
    """No store at --parquet-dir: one error line, exit 2, nothing on stdout."""
    code, out, err = invoke("--parquet-dir", str(tmp_path / "nope"))
    assert code == 2
    assert out == ""
    assert err.strip() == f"error: no Parquet store at {tmp_path / 'nope'} (--parquet-dir)"


def test_missing_raw_dir_exits_2(tmp_path: Path) -> None:
    """--raw-dir naming nothing: exit 2 naming the option."""
    store = make(tmp_path)
    code, _, err = invoke("--parquet-dir", str(store.root), "--raw-dir", str(tmp_path / "nope"))
    assert code == 2
    assert "raw directory not found" in err and "(--raw-dir)" in err


def test_max_silence_option_and_config(tmp_path: Path) -> None:
    """--max-silence and validate.max_silence_s decide which silences are reported."""
    store = make(tmp_path, silence=True)
    code, out, _ = invoke("--parquet-dir", str(store.root), "--json")
    assert json.loads(out)["max_silence_s"] == 5.0
    assert next(c for c in json.loads(out)["checks"] if c["name"] == "coverage")["status"] == "warn"
    code, out, _ = invoke("--parquet-dir", str(store.root), "--json", "--max-silence", "30")
    assert code == 0 and next(c for c in json.loads(out)["checks"] if c["name"] == "coverage")["status"] == "pass"
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'[paths]\nparquet_dir = "{store.root}"\n[validate]\nmax_silence_s = 25\n')
    code, out, _ = invoke("--config", str(cfg), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["max_silence_s"] == 25.0 and doc["store"] == str(store.root)
    assert next(c for c in doc["checks"] if c["name"] == "coverage")["status"] == "pass"


def test_bad_max_silence_is_a_usage_error(tmp_path: Path) -> None:
    """--max-silence 0 is refused with the key named, exit 2."""
    store = make(tmp_path)
    code, _, err = invoke("--parquet-dir", str(store.root), "--max-silence", "0")
    assert code == 2
    assert "validate.max_silence_s must be a number > 0" in err


def test_help_has_an_example() -> None:
    """--help shows the options and an example."""
    result = runner.invoke(app, ["validate", "--help"])
    assert result.exit_code == 0
    for text in ("--parquet-dir", "--raw-dir", "--max-silence", "--json", "--config", "Example: mktpred validate"):
        assert text in result.stdout


def test_book_audit_uses_the_book_config(tmp_path: Path) -> None:
    """With a book table, book_audit runs; it fails (exit 1, worst mismatches listed) when a product's
    match rate is below book.audit_threshold, and passes once the config lowers it."""
    from mktpred.book import build_book

    store = make(tmp_path)
    build_book(store.root, depth=2, interval_ns=NS_PER_S)
    code, out, err = invoke("--parquet-dir", str(store.root))
    assert code == 0, out + err
    assert re.search(r"│ book_audit +│ pass", out)
    for path in (store.root / "ticker").glob("date=*/*.parquet"):  # every BTC-USD ticker off by 1.0
        table = pq.read_table(path)
        btc = [p == "BTC-USD" for p in table.column("product_id").to_pylist()]
        bids = [b + 1.0 if m else b for b, m in zip(table.column("best_bid").to_pylist(), btc, strict=True)]
        pq.write_table(table.set_column(table.schema.get_field_index("best_bid"), "best_bid",
                                        pa.array(bids, pa.float64())), path)
    code, out, err = invoke("--parquet-dir", str(store.root))
    assert code == 1
    assert "BTC-USD: 0/" in out and "tickers within ±500 ms (0.0%), below the threshold 99.00%" in out
    assert "no match within ±500 ms" in out
    assert err.strip().splitlines()[-1] == f"error: 1 check failed: book_audit ({store.root})"
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'[paths]\nparquet_dir = "{store.root}"\n[book]\naudit_threshold = 0.0\naudit_window_ms = 50\n')
    code, out, _ = invoke("--config", str(cfg), "--json")
    audit = next(c for c in json.loads(out)["checks"] if c["name"] == "book_audit")
    assert code == 0 and audit["status"] == "pass" and "within ±50 ms" in audit["details"]
