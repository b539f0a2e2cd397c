"""`mktpred convert` through the CLI: exit codes, the --json summary, CSV, .part segments."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from mktpred.cli.app import app
from mktpred.testing.raw import SynthSpec, write_segment

runner = CliRunner()
STEM = "coinbase_20260809T210548Z"
JSON_KEYS = {"raw_dir", "parquet_dir", "csv_dir", "engine", "engine_reason", "segments_found", "converted",
             "skipped", "failed", "rows", "lines", "invalid", "truncated", "max_invalid", "too_many_invalid",
             "input_bytes", "seconds", "rows_per_s", "l2_rows_per_s", "mb_per_s", "segments", "failures", "notes",
             "engines", "gpu_memory", "lines_total", "quarantined_total", "quarantine_files", "quarantined",
             "up_to_date", "recv_ahead"}


def raw_dir(tmp_path: Path, suffix: str = ".jsonl", n_lines: int = 200) -> Path:
    raw = tmp_path / "raw"
    write_segment(raw / f"{STEM}{suffix}", SynthSpec(snapshot_levels=50), n_lines=n_lines)
    return raw


def convert(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["convert", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_json_summary_and_hive_dataset(tmp_path: Path) -> None:
    """--json prints one object with the documented keys; the store reads as a Hive dataset."""
    raw = raw_dir(tmp_path)
    code, out, _ = convert("--raw-dir", str(raw), "--parquet-dir", str(tmp_path / "store"), "--engine", "cpu",
                           "--json")
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == JSON_KEYS
    assert doc["engine"] == "cpu" and doc["converted"] == 1 and doc["lines"] == 200
    assert set(doc["rows"]) == {"l2", "ticker", "trades", "messages", "events"}
    assert ds.dataset(tmp_path / "store" / "l2", partitioning="hive").count_rows() == doc["rows"]["l2"] > 0
    code, out, _ = convert("--raw-dir", str(raw), "--parquet-dir", str(tmp_path / "store"), "--json")
    assert json.loads(out)["skipped"] == 1


def test_summary_table_without_json(tmp_path: Path) -> None:
    """Without --json a summary table goes to stderr and nothing to stdout."""
    raw = raw_dir(tmp_path)
    code, out, err = convert("--raw-dir", str(raw), "--parquet-dir", str(tmp_path / "store"))
    assert code == 0 and out == ""
    assert "segments converted" in err and "rows l2" in err


def test_missing_raw_dir_is_exit_2(tmp_path: Path) -> None:
    """A raw directory that does not exist: one error line, exit 2."""
    code, _, err = convert("--raw-dir", str(tmp_path / "nope"), "--parquet-dir", str(tmp_path / "store"))
    assert code == 2
    assert err.strip() == f"error: raw directory not found ({tmp_path / 'nope'})"


def test_empty_raw_dir_is_exit_2(tmp_path: Path) -> None:
    """A raw directory without segments is exit 2; with only .part files the hint names --include-latest."""
    (tmp_path / "raw").mkdir()
    code, _, err = convert("--raw-dir", str(tmp_path / "raw"), "--parquet-dir", str(tmp_path / "s"))
    assert code == 2 and "no raw segments" in err
    raw_dir(tmp_path, ".jsonl.part")
    code, _, err = convert("--raw-dir", str(tmp_path / "raw"), "--parquet-dir", str(tmp_path / "s"))
    assert code == 2 and "--include-latest" in err
    code, out, _ = convert("--raw-dir", str(tmp_path / "raw"), "--parquet-dir", str(tmp_path / "s"),
                           "--include-latest", "--json")
    assert code == 0 and json.loads(out)["converted"] == 1


def test_unwritable_parquet_dir_is_exit_3(tmp_path: Path) -> None:
    """A Parquet directory that cannot be created or written is exit 3."""
    raw = raw_dir(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = convert("--raw-dir", str(raw), "--parquet-dir", str(blocker / "store"))
    assert code == 3 and err.startswith("error: parquet directory is not writable")


def test_gpu_unavailable_is_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--engine gpu where no GPU engine can run: 'GPU engine unavailable: <reason>', exit 3."""
    monkeypatch.setitem(sys.modules, "mktpred.convert.gpu_engine", None)
    raw = raw_dir(tmp_path)
    code, _, err = convert("--raw-dir", str(raw), "--parquet-dir", str(tmp_path / "s"), "--engine", "gpu")
    assert code == 3 and err.startswith("error: GPU engine unavailable: ")


def test_too_many_invalid_is_exit_1_after_the_summary(tmp_path: Path) -> None:
    """Quarantined lines past --max-invalid: the summary is still printed, then exit 1."""
    raw = raw_dir(tmp_path)
    with open(raw / f"{STEM}.jsonl", "a") as fh:
        fh.write("not json\n{\"also\": \"not a frame\"}\n")
    args = ["--raw-dir", str(raw), "--parquet-dir", str(tmp_path / "s"), "--json"]
    code, out, err = convert(*args, "--max-invalid", "1")
    assert code == 1 and json.loads(out)["invalid"] == 2 and "more than the 1 allowed" in err
    code, out, _ = convert(*args, "--max-invalid", "2", "--force")
    assert code == 0 and json.loads(out)["too_many_invalid"] is False


def test_rerun_still_reports_the_quarantine_and_says_up_to_date(tmp_path: Path) -> None:
    """A re-run that converts nothing reports the earlier quarantined lines (text and --json), says
    "up to date" and where the store is, and still exits 1 while they exceed --max-invalid."""
    raw = raw_dir(tmp_path)
    with open(raw / f"{STEM}.jsonl", "a") as fh:
        fh.write("not json\n{\"also\": \"not a frame\"}\n")
    store = tmp_path / "s"
    args = ["--raw-dir", str(raw), "--parquet-dir", str(store)]
    code, out, _ = convert(*args, "--max-invalid", "2", "--json")
    first = json.loads(out)
    assert code == 0 and first["invalid"] == 2 and first["up_to_date"] is False
    lines = first["lines"]
    code, out, _ = convert(*args, "--max-invalid", "2", "--json")
    doc = json.loads(out)
    assert code == 0 and (doc["converted"], doc["skipped"], doc["invalid"]) == (0, 1, 0)
    assert doc["up_to_date"] is True and (doc["quarantined_total"], doc["lines_total"]) == (2, lines)
    assert doc["quarantine_files"] == [f"_quarantine/{STEM}.jsonl"]
    assert doc["quarantined"] == [{"source": str((raw / f"{STEM}.jsonl").resolve()), "invalid": 2,
                                   "quarantine": f"_quarantine/{STEM}.jsonl"}]
    code, _, err = convert(*args, "--max-invalid", "2")
    assert code == 0
    summary = err.strip().splitlines()[-1]
    assert summary == (f"convert: up to date (1 segment(s) unchanged since converted); store {store}; 2 line(s) "
                       f"quarantined from 1 segment(s) in {store / '_quarantine'} (_quarantine/{STEM}.jsonl)")
    code, _, err = convert(*args, "--max-invalid", "1")
    assert code == 1 and err.strip().splitlines()[-1].startswith(
        "error: 2 invalid line(s) quarantined, more than the 1 allowed (--max-invalid)")


def test_write_csv(tmp_path: Path) -> None:
    """--write-csv mirrors every Parquet file as CSV under --csv-dir."""
    raw = raw_dir(tmp_path, ".jsonl.gz")
    code, out, _ = convert("--raw-dir", str(raw), "--parquet-dir", str(tmp_path / "s"), "--write-csv",
                           "--csv-dir", str(tmp_path / "csv"), "--json")
    assert code == 0
    (seg,) = json.loads(out)["segments"]
    assert sorted(seg["csv_outputs"]) == sorted(o.replace(".parquet", ".csv") for o in seg["outputs"])
    l2_csv = (tmp_path / "csv" / "l2" / "date=2026-08-09" / f"{STEM}.csv").read_text().splitlines()
    assert l2_csv[0] == '"recv_time","time","event_time","conn","seq","product_id","is_snapshot","side","price","size"'
    assert len(l2_csv) - 1 == seg["rows"]["l2"]
    assert l2_csv[1].startswith('"2026-08-09T21:05:48.') and l2_csv[1].split(",")[0].endswith('Z"')


def test_write_csv_on_an_up_to_date_store_adds_the_missing_csv(tmp_path: Path) -> None:
    """A store converted without CSV gets its CSV from a later `--write-csv` run; a third run skips."""
    raw, store, csv = raw_dir(tmp_path), str(tmp_path / "s"), tmp_path / "csv"
    assert convert("--raw-dir", str(raw), "--parquet-dir", store, "--json")[0] == 0
    code, out, _ = convert("--raw-dir", str(raw), "--parquet-dir", store, "--write-csv", "--csv-dir", str(csv),
                           "--json")
    assert code == 0 and json.loads(out)["converted"] == 1
    assert (csv / "l2" / "date=2026-08-09" / f"{STEM}.csv").is_file()
    code, out, _ = convert("--raw-dir", str(raw), "--parquet-dir", store, "--write-csv", "--csv-dir", str(csv),
                           "--json")
    assert json.loads(out)["skipped"] == 1


def test_moved_raw_dir_is_still_up_to_date(tmp_path: Path) -> None:
    """Moving the raw folder keeps its segments converted: convert skips them, validate finds them."""
    raw, store = raw_dir(tmp_path), str(tmp_path / "s")
    assert convert("--raw-dir", str(raw), "--parquet-dir", store, "--json")[0] == 0
    moved = raw.rename(tmp_path / "moved-raw")
    code, out, _ = convert("--raw-dir", str(moved), "--parquet-dir", store, "--json")
    assert code == 0 and json.loads(out)["skipped"] == 1 and json.loads(out)["converted"] == 0
    result = runner.invoke(app, ["validate", "--parquet-dir", store, "--raw-dir", str(moved), "--json"],
                           catch_exceptions=False)
    raw_check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "raw_converted")
    assert raw_check["status"] == "pass", raw_check
