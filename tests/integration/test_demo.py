"""`mktpred demo`: the whole chain offline, its summary, its faults, its exit codes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from mktpred.cli import demo as cli_demo
from mktpred.cli.app import app
from mktpred.demo import default_workdir, example_queries, fault_plan

runner = CliRunner()


def _count(store: Path, table: str) -> int:
    return int(duckdb.sql(f"SELECT count(*) FROM read_parquet('{store}/{table}/*/*.parquet')").fetchall()[0][0])


def test_demo_json_in_a_fresh_folder_and_the_example_queries_run(isolated_environment: Path) -> None:
    """Without --workdir a new mktpred-demo-<UTC stamp> folder appears under the cwd; the JSON summary
    matches the store read back with DuckDB, validation passes, and every example query runs there."""
    result = runner.invoke(app, ["demo", "--seconds", "3", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    workdir = Path(doc["workdir"])
    assert workdir.parent == isolated_environment.resolve() or workdir.parent == isolated_environment
    assert re.fullmatch(r"mktpred-demo-\d{8}T\d{6}Z", workdir.name)
    assert doc["ok"] is True and doc["problems"] == []
    assert doc["validate_status"] == "pass" and doc["reconnects"] == 0 and doc["gaps"] == doc["gaps_reported"] == 0
    assert {"l2_data", "ticker", "market_trades", "heartbeats"} <= set(doc["frames_per_channel"])
    assert sum(doc["frames_per_channel"].values()) == doc["frames"]
    assert doc["rows"]["messages"] == doc["frames"] + doc["market"]["frames"]  # the live leg and the market
    store = Path(doc["store"])
    assert store == workdir / "parquet" and (store / "_manifest.json").is_file()
    for table in ("l2", "ticker", "trades", "messages", "events"):
        assert doc["rows"][table] == _count(store, table) > 0, table
    assert doc["rows_per_s"] > 0 and doc["convert_seconds"] > 0
    assert set(doc["timings"]) == {"simulate", "collect", "market", "convert", "validate", "features", "train",
                                   "predict", "report"}
    assert not (isolated_environment / "data").exists()  # the config's paths are not used

    # the prediction half: a planted signal, found by the model on the held-out span, predictions in
    # the store (read back with DuckDB), the oracle as written beside the raw segments, the report
    market, skill = doc["market"], doc["skill"]
    assert market["signal"] == 1.0 and market["products"] == ["BTC-USD"] and market["span_s"] == 3600
    oracle = json.loads((workdir / "raw" / "oracle.json").read_text())
    assert skill["oracle_auc"] == oracle["horizons"]["1s"]["auc"] > 0.6
    held = skill["held_out"]
    assert held["in_sample"] is False and held["rows"] > 300
    assert held["model"] > held["prior"] + 0.05 and held["model"] > 0.55
    assert doc["predict"]["rows"] == _count(store, "predictions") > held["rows"]
    assert duckdb.sql(f"SELECT count(DISTINCT version) FROM read_parquet('{store}/predictions/*/*.parquet')"
                      ).fetchall()[0][0] == 1
    assert (workdir / "models" / "demo" / "current").is_file()
    report = Path(doc["report"])
    assert report == workdir / "report.html" and report.stat().st_size == doc["report_bytes"] > 10_000
    assert "AUC held out" not in result.stdout  # --json prints only the JSON object

    assert [q["title"].split(":")[0] for q in doc["queries"]] == ["DuckDB SQL", "PyArrow", "pandas"]
    for q in doc["queries"]:
        if not q["runnable"]:
            continue
        assert q["command"] == f'python -c "{q["code"]}"'
        out = subprocess.run([sys.executable, "-c", q["code"]], cwd=workdir, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, (q["title"], out.stderr)
        assert "BTC-USD" in out.stdout or "ticker rows" in out.stdout, out.stdout


def test_demo_with_faults_recovers_and_validate_reports_the_gaps(tmp_path: Path) -> None:
    """--with-faults: the stall, the drop and the gaps fire, the recorder reconnects twice, validate
    lists the gaps as recorded by the collector, and the run still exits 0 with the summary."""
    workdir = tmp_path / "demo data"
    result = runner.invoke(app, ["demo", "--seconds", "6", "--with-faults", "--market-span", "0", "--workdir",
                                 str(workdir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())  # the report wraps long lines
    assert re.search(r"faults fired │ gap x\d+ \(conn 0, 1[, 0-9]*\), stall x1 \(conn 0\), drop x1 \(conn 1\)", out), out
    assert "[recorded by the collector]" in out and "store OK, with warnings" in out
    assert f"cd '{workdir}'" in out and f"Everything is kept in {workdir}" in out
    assert "reconnects │ 2 (stalls detected: 1)" in out
    assert "fault stall on connection 0" in result.stderr  # the simulator's fault log, as it fired

    events = duckdb.sql(f"SELECT event, count(*) FROM read_parquet('{workdir}/parquet/events/*/*.parquet') "
                        "GROUP BY event").fetchall()
    counts = dict(events)
    assert counts["open"] == 3 and counts["stall"] == 1 and counts["gap"] >= 1
    gaps = re.search(r"gaps │ (\d+) recorded by the collector, (\d+) reported by validate", out)
    assert gaps and int(gaps.group(1)) >= int(gaps.group(2)) >= 1


def test_demo_shows_the_report_and_exits_1_when_validation_fails(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A store damaged between convert and validate: the report and summary are printed, then one
    error line, exit 1 (no traceback)."""
    original = cli_demo._Screen.stage

    def damaging_stage(self: cli_demo._Screen, name: str, detail: str) -> None:
        if name == "validate":
            victim = next((tmp_path / "w" / "parquet" / "ticker").glob("*/*.parquet"))
            victim.write_bytes(victim.read_bytes()[:100])
        original(self, name, detail)

    monkeypatch.setattr(cli_demo._Screen, "stage", damaging_stage)
    result = runner.invoke(app, ["demo", "--seconds", "1", "--market-span", "0", "--workdir", str(tmp_path / "w")],
                           catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "store has problems" in result.stdout and "Try the new store" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: the demo did not go as expected: validate: check(s) failed: readable "
                      f"({tmp_path / 'w'})"]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--seconds", "0"], 2, "--seconds must be > 0"),
    (["--seconds", "3", "--with-faults"], 2, "--with-faults needs --seconds >= 6"),
    (["--seconds", "1", "--workdir", "a-file/sub"], 3, "cannot create the demo directory"),
    (["--market-span", "10m"], 2, "--market-span must be at least 30 min"),
    (["--market-span", "soon"], 2, "--market-span"),
    (["--signal", "-1"], 2, "--signal must be >= 0"),
])
def test_bad_options_are_one_error_line(isolated_environment: Path, args: list[str], code: int,
                                        message: str) -> None:
    """Bad --seconds and an uncreatable --workdir: one error line and the documented exit code."""
    (isolated_environment / "a-file").write_text("not a directory")
    result = runner.invoke(app, ["demo", *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_default_workdir_is_stamped_and_never_reused(tmp_path: Path) -> None:
    """The default folder is named by the UTC time and gets -2, -3 when that name is taken."""
    now = datetime(2026, 8, 9, 21, 5, 48, tzinfo=UTC)
    first = default_workdir(tmp_path, now)
    assert first == tmp_path / "mktpred-demo-20260809T210548Z"
    first.mkdir()
    assert default_workdir(tmp_path, now).name == "mktpred-demo-20260809T210548Z-2"


def test_fault_plan_orders_stall_then_drop_with_gaps_on_every_connection() -> None:
    """The stall fires before the drop on the first connection's frame count; gaps come first."""
    specs = dict(s.split(":", 1) for s in fault_plan(15, 50.0))
    stall_after = int(specs["stall"].split("after=")[1])
    drop_after = int(specs["drop"].split("=")[1])
    gap_every = int(specs["gap"].split("=")[1])
    assert gap_every < stall_after < drop_after
    assert specs["stall"].startswith("seconds=3,")


def test_example_queries_refuse_paths_that_cannot_be_quoted() -> None:
    """The examples embed a relative store path; a quote in it would break the command."""
    with pytest.raises(ValueError):
        example_queries("it's")
    assert all("parquet/" in q.code for q in example_queries())


def test_ctrl_c_seals_what_was_recorded_and_exits_130(tmp_path: Path) -> None:
    """Ctrl-C while recording: the segment is sealed and kept, one error line, exit 130."""
    raw = tmp_path / "w" / "raw"
    proc = subprocess.Popen([sys.executable, "-m", "mktpred", "demo", "--seconds", "60", "--workdir",
                             str(tmp_path / "w")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(p.stat().st_size > 10_000 for p in raw.glob("*.part")):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"error: interrupted; what was recorded is sealed in {raw}"
    assert not list(raw.glob("*.part")) and len(list(raw.glob("*.jsonl"))) == 1
    assert out == ""
