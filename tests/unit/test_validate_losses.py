"""Losses in conversion are part of the store's state: validate reports the quarantine on every run
(a re-run of convert forgets it), attributes the sequence gaps it leaves to conversion, and a level2
snapshot longer than the engine's default object limit converts instead of being lost."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mktpred.cli.app import app
from mktpred.config import Config
from mktpred.convert.runner import run_convert
from mktpred.store.manifest import Manifest
from mktpred.testing.raw import SynthSpec, generate_lines
from mktpred.testing.store import NS_PER_S, ConnSpec, write_synthetic_store
from mktpred.validate import Status, validate_store

STEM = "coinbase_20260809T210548Z"


def config(raw: Path, store: Path) -> Config:
    cfg = Config()
    return replace(cfg, paths=replace(cfg.paths, raw_dir=raw, parquet_dir=store),
                   convert=replace(cfg.convert, engine="cpu"))


def data_line_indices(lines: list[str], channel: str) -> list[int]:
    return [i for i, text in enumerate(lines) if f'"channel":"{channel}"' in text]


def seq_of(line: str) -> tuple[str, int]:
    rec = orjson.loads(line)
    return rec["conn"], rec["msg"]["sequence_num"]


@dataclass(frozen=True)
class Damaged:
    root: Path
    raw: Path
    frames: dict[str, tuple[str, int]]  #: "l2" / "ticker" -> (conn, seq) of the quarantined frame
    lines: dict[str, int]  #: "l2" / "ticker" -> its 1-based line number


@pytest.fixture
def damaged(tmp_path: Path) -> Damaged:
    """A 1,500-line segment where one l2 frame has an unparsable price (invalid input) and one
    ticker frame a duplicated key that only the engine rejects (a valid frame lost in conversion);
    converted once (allowing both), then converted again (the re-run skips it)."""
    lines = [ln.decode() for ln in generate_lines(SynthSpec(seed=5, snapshot_levels=50), n_lines=1500)]
    bad_l2 = data_line_indices(lines, "l2_data")[40]
    bad_ticker = data_line_indices(lines, "ticker")[7]
    assert '"price_level":"' in lines[bad_l2]
    lines[bad_l2] = lines[bad_l2].replace('"price_level":"', '"price_level":"x', 1)
    rec = orjson.loads(lines[bad_ticker])
    lines[bad_ticker] = lines[bad_ticker].replace('"conn":', f'"recv_ns":{rec["recv_ns"]},"conn":', 1)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / f"{STEM}.jsonl").write_text("".join(x + "\n" for x in lines))
    cfg = config(raw, tmp_path / "parquet")
    first = run_convert(cfg, max_invalid=2)
    assert first.invalid == 2
    again = run_convert(cfg)
    assert again.invalid == 0  # the re-run has forgotten the quarantine: validate must not
    return Damaged(tmp_path / "parquet", raw, {"l2": seq_of(lines[bad_l2]), "ticker": seq_of(lines[bad_ticker])},
                   {"l2": bad_l2 + 1, "ticker": bad_ticker + 1})


def test_quarantine_is_reported_on_every_run_and_the_engine_reject_fails(damaged: Damaged) -> None:
    """After a re-run that says 0 invalid lines, validate still reports both quarantined lines per
    source; the valid frame the engine rejected fails the quarantine check (exit 1)."""
    report = validate_store(damaged.root, raw_dir=damaged.raw)
    check = report.check("quarantine")
    assert check.status is Status.FAIL and not report.ok
    assert {c.name for c in report.failed} == {"quarantine"}
    text = "\n".join(check.locations)
    conn, seq = damaged.frames["ticker"]
    assert (f"1 valid lines of {STEM}.jsonl lost in conversion (first: line {damaged.lines['ticker']} of "
            f"{STEM}.jsonl (conn {conn} seq {seq}): rejected by the cpu engine") in text
    assert f"1 invalid lines of {STEM}.jsonl quarantined (price_level is not a number 1;" in text
    assert all(loc.startswith(f"_quarantine/{STEM}.jsonl: ") for loc in check.locations)
    (source,) = report.to_dict()["quarantine"]
    assert (source["source"], source["quarantined"], source["manifest_invalid"], source["engine_rejected"]) == (
        f"{STEM}.jsonl", 2, 2, 1)
    expected = sorted((damaged.lines[k], *damaged.frames[k]) for k in ("l2", "ticker"))
    assert [(x["line"], x["conn"], x["seq"]) for x in source["lines"]] == expected


def test_gaps_left_by_quarantined_frames_are_attributed_to_conversion(damaged: Damaged) -> None:
    """Each quarantined frame's sequence number is a gap blamed on conversion (naming the line), a
    warning in the sequence check rather than a network gap."""
    report = validate_store(damaged.root)
    seq_check = report.check("sequence")
    assert seq_check.status is Status.WARN, seq_check.details
    assert "2 gaps lost in conversion (quarantined: 2 frames)" in seq_check.details
    by_seq = {g.first: g for g in report.gaps}
    for kind in ("l2", "ticker"):
        conn, seq = damaged.frames[kind]
        gap = by_seq[seq]
        assert (gap.conn, gap.first, gap.last, gap.quarantined, gap.known) == (conn, seq, seq, 1, False)
        assert gap.lost_in_conversion
        assert f"lost in conversion: quarantined line {damaged.lines[kind]} of {STEM}.jsonl" in gap.text()
    assert [g["quarantined"] for g in report.to_dict()["gaps"]] == [1, 1]


def test_invalid_lines_past_the_allowance_fail(damaged: Damaged) -> None:
    """With no invalid lines allowed (convert.max_invalid_fraction 0) the invalid line fails too."""
    report = validate_store(damaged.root, max_invalid_fraction=0.0)
    check = report.check("quarantine")
    assert "more than the 0 allowed" in check.details
    invalid = [loc for loc in check.locations if "invalid lines" in loc]
    assert len(invalid) == 1
    assert report.check("quarantine").status is Status.FAIL
    within = validate_store(damaged.root, max_invalid_fraction=0.01)
    assert "within the 15 allowed (0.01 of 1,500 lines)" in within.check("quarantine").details


def test_a_deleted_quarantine_file_disagrees_with_the_manifest(damaged: Damaged) -> None:
    """The manifest counts 2 invalid lines but the quarantine file is gone: a failure naming both counts."""
    root = damaged.root
    (root / "_quarantine" / f"{STEM}.jsonl").unlink()
    check = validate_store(root).check("quarantine")
    assert check.status is Status.FAIL
    assert check.locations == [f"_quarantine/: the manifest counts 2 invalid lines of {STEM}.jsonl, "
                               "the quarantine holds 0"]


def test_clean_conversion_has_nothing_quarantined(tmp_path: Path) -> None:
    """A segment without bad lines passes the quarantine check and lists no source."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / f"{STEM}.jsonl").write_bytes(b"".join(
        ln + b"\n" for ln in generate_lines(SynthSpec(seed=2, snapshot_levels=20), n_lines=300)))
    run_convert(config(raw, tmp_path / "parquet"))
    report = validate_store(tmp_path / "parquet", raw_dir=raw)
    assert report.check("quarantine").status is Status.PASS
    assert report.check("quarantine").details == "no line quarantined in 1 sources"
    assert report.quarantine == []


def big_snapshot_line(conn: str, seq: int, levels: int) -> str:
    """A wrapped level2 snapshot frame with ``levels`` levels per side."""
    ts = "2026-08-09T21:05:49.5Z"
    ups = [f'{{"side":"{side}","event_time":"{ts}","price_level":"{p:.2f}","new_quantity":"{1 + i % 7}.12345678"}}'
           for side, sign in (("bid", -1), ("offer", 1)) for i in range(levels)
           for p in (65_000.0 + sign * (0.01 + i * 0.01),)]
    frame = (f'{{"channel":"l2_data","client_id":"","timestamp":"{ts}","sequence_num":{seq},"events":'
             f'[{{"type":"snapshot","product_id":"BTC-USD","updates":[{",".join(ups)}]}}]}}')
    return f'{{"recv_ns":1786309549500000000,"conn":"{conn}","msg":{frame}}}'


def test_a_level2_snapshot_over_32_mib_converts(tmp_path: Path) -> None:
    """A 33+ MiB snapshot line (DuckDB's default limit is 16 MiB; it used to be quarantined) converts
    with every level, in order, and validate finds nothing quarantined and no gap."""
    lines = [ln.decode() for ln in generate_lines(SynthSpec(seed=4, snapshot_levels=10), n_lines=200)]
    conn, last_seq = seq_of(lines[-1])
    levels = 160_000
    big = big_snapshot_line(conn, last_seq + 1, levels)
    assert len(big) > 32 * 2**20
    after = lines[-1].replace(f'"sequence_num":{last_seq},', f'"sequence_num":{last_seq + 2},', 1)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / f"{STEM}.jsonl").write_text("".join(x + "\n" for x in [*lines, big, after]))
    summary = run_convert(config(raw, tmp_path / "parquet"))
    assert summary.invalid == 0
    l2 = pq.read_table(tmp_path / "parquet" / "l2", filters=[("seq", "=", last_seq + 1)])
    assert l2.num_rows == 2 * levels
    assert l2.column("price").to_pylist()[:2] == [64_999.99, 64_999.98]
    assert l2.column("side").to_pylist()[levels:levels + 1] == ["ask"]
    assert l2.column("is_snapshot").to_pylist()[0] is True
    report = validate_store(tmp_path / "parquet", raw_dir=raw)
    assert report.check("quarantine").status is Status.PASS
    assert report.gaps_total == 0
    assert json.loads(json.dumps(report.to_dict()))["quarantine"] == []


def test_cli_rerun_of_convert_then_validate_is_not_store_ok(damaged: Damaged) -> None:
    """The reproduction through the CLI: a convert re-run converts nothing new but still reports the
    quarantine and exits 1 as the first run did; validate exits 1 with the quarantine failure and the
    attributed gaps in its report instead of `store OK`."""
    runner = CliRunner()
    store, raw = str(damaged.root), str(damaged.raw)
    rerun = runner.invoke(app, ["convert", "--raw-dir", raw, "--parquet-dir", store, "--engine", "cpu", "--json"],
                          catch_exceptions=False)
    doc = json.loads(rerun.stdout)
    assert rerun.exit_code == 1 and doc["invalid"] == 0 and doc["quarantined_total"] >= 1, rerun.output
    result = runner.invoke(app, ["validate", "--parquet-dir", store, "--raw-dir", raw], catch_exceptions=False,
                           env={"COLUMNS": "200"})
    assert result.exit_code == 1
    out = result.stdout
    flat = " ".join(out.split())  # Rich wraps long locations
    assert "store OK" not in out and out.rstrip().endswith("store has problems")
    assert "│ quarantine " in out and "quarantine fail:" in out
    assert "lost in conversion: quarantined line" in flat
    assert result.stderr.strip().splitlines()[-1] == f"error: 1 check failed: quarantine ({store})"


def test_orphan_quarantine_records_and_torn_lines_warn(tmp_path: Path) -> None:
    """Quarantine records of a source the manifest does not list, and torn last lines skipped in a
    sealed segment, are warnings (exit 0) that name the source and the count."""
    store = write_synthetic_store(tmp_path / "parquet", [ConnSpec("c1", (1763769600 + 10) * NS_PER_S, 20)],
                                  raw_dir=tmp_path / "raw")
    manifest = Manifest.load(store.root)
    (entry,) = manifest.entries.values()
    entry.truncated = 3
    manifest.save(store.root)
    qdir = store.root / "_quarantine"
    qdir.mkdir()
    (qdir / "old.jsonl").write_bytes(orjson.dumps(
        {"segment": "coinbase_20200101T000000Z.jsonl", "line": 4, "reason": "invalid JSON: x", "text": "{"}) + b"\n")
    check = validate_store(store.root, max_invalid_fraction=0.01).check("quarantine")  # 1 line of ~400 allowed
    assert check.status is Status.WARN
    name = Path(entry.source).name
    assert sorted(check.locations) == sorted([
        "_quarantine/old.jsonl: 1 invalid lines of coinbase_20200101T000000Z.jsonl quarantined (invalid JSON 1; "
        "first: line 4 of coinbase_20200101T000000Z.jsonl: invalid JSON: x)",
        "_quarantine/old.jsonl: quarantine records of coinbase_20200101T000000Z.jsonl, which the manifest does "
        "not list",
        f"{name}: 3 torn last lines skipped (a crash cut them)"])
