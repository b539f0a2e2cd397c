"""validate on stores built by the real csv2parquet (mktpred round trip, Tardis, generic) and on a
store converted from the seeded raw-record generator: each passes, and damage is still caught."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest

from mktpred.config import Config, load_config
from mktpred.convert.runner import run_convert
from mktpred.ingest.csv_import import run_csv2parquet
from mktpred.store.manifest import Manifest, SourceEntry
from mktpred.testing.raw import SynthSpec, generate_lines, write_segment
from mktpred.validate import Status, ValidationReport, validate_store
from mktpred.validate.manifest_checks import segment_key

NS_PER_S = 1_000_000_000
MIDNIGHT = 1_786_320_000 * NS_PER_S  # 2026-08-10T00:00:00Z
STEM = "coinbase_20260809T235958Z"
DATES = ("2026-08-09", "2026-08-10")

BOOK = """exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount
coinbase,BTC-USD,1786309548228568,1786309548230001,true,bid,65000.01,0.5
coinbase,BTC-USD,1786309548228568,1786309548230001,true,ask,65000.02,1.25
coinbase,BTC-USD,1786309549000001,1786309549000500,false,bid,65000.01,0.4
coinbase,BTC-USD,1786309549000001,1786309549000500,false,bid,65000.01,0.4
"""
TRADES = """exchange,symbol,timestamp,local_timestamp,id,side,price,amount
coinbase,BTC-USD,1786309548228568,1786309548230001,123,buy,65000.5,0.01
coinbase,BTC-USD,1786309548328568,1786309548330001,124,unknown,65000.4,0.02
"""
QUOTES = """exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount
coinbase,BTC-USD,1786309548228568,1786309548230001,1.5,65000.02,65000.01,2.5
coinbase,BTC-USD,1786309548328568,1786309548330001,,,65000.01,0
"""
FUNDING = "ts,symbol,rate\n2026-08-09T21:05:48Z,BTC-USD,0.0001\n2026-08-10T01:00:00Z,BTC-USD,0.0002\n"
REF = "symbol,tick\nBTC-USD,0.01\nETH-USD,0.01\n"


def cfg_for(store: Path) -> Config:
    return load_config(None, {"paths.parquet_dir": store})


def failing(report: ValidationReport) -> set[str]:
    return {c.name for c in report.failed}


def not_passed(report: ValidationReport) -> dict[str, str]:
    return {c.name: c.details for c in report.checks if c.status is not Status.PASS}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One raw segment from the generator (a reconnect, across UTC midnight), converted with
    --write-csv: ``direct/`` is the store, ``csv/`` the export."""
    base = tmp_path_factory.mktemp("exported")
    spec = SynthSpec(snapshot_levels=30, start_ns=MIDNIGHT - 2 * NS_PER_S, resnapshot_every=500)
    write_segment(base / "raw" / f"{STEM}.jsonl", spec, n_lines=1200)
    cfg = load_config(None, {"paths.raw_dir": base / "raw", "paths.parquet_dir": base / "direct",
                             "paths.csv_dir": base / "csv", "convert.engine": "cpu"})
    summary = run_convert(cfg, write_csv=True)
    assert summary.invalid == 0
    assert {p.name for p in (base / "csv" / "l2").iterdir()} == {f"date={d}" for d in DATES}
    return base


def test_generator_receive_times_never_go_back_on_a_connection() -> None:
    """The generator's recv_ns is non-decreasing per conn, across reconnects, and the seed fixes the bytes."""
    spec = SynthSpec(snapshot_levels=5, resnapshot_every=300)
    lines = list(generate_lines(spec, n_lines=2000))
    last: dict[str, int] = {}
    frames = 0
    for line in lines:
        rec = orjson.loads(line)
        if "msg" not in rec:
            continue
        frames += 1
        assert rec["recv_ns"] >= last.get(rec["conn"], 0), rec["msg"]["sequence_num"]
        last[rec["conn"]] = rec["recv_ns"]
    assert len(last) >= 6 and frames > 1900
    assert list(generate_lines(spec, n_lines=2000)) == lines


def test_converted_generator_output_passes_sequence_and_every_check(exported: Path) -> None:
    """convert(generator output) -> validate: no reversals; every check passes, three connections judged."""
    report = validate_store(exported / "direct", raw_dir=exported / "raw")
    assert not_passed(report) == {}
    seq = report.check("sequence")
    assert "3 connections" in seq.details and seq.checked > 1100


def test_write_csv_round_trip_passes_every_check(exported: Path, tmp_path: Path) -> None:
    """convert --write-csv -> csv2parquet -> validate: every check passes, and rows compares each
    table of the segment with the frames across its per-table, per-date CSV sources."""
    back = tmp_path / "back"
    summary = run_csv2parquet(cfg_for(back), [str(exported / "csv")])
    assert summary.failed == summary.invalid == 0 and summary.converted == 10  # 5 tables x 2 dates
    report = validate_store(back)
    assert not_passed(report) == {}
    entries = Manifest.load(back).entries.values()
    assert {segment_key(e) for e in entries} == {str(exported / "csv" / STEM)}
    assert report.check("rows").checked == len(entries) + 3  # + l2, ticker, trades against the frames
    assert report.rows == validate_store(exported / "direct").rows


def test_round_trip_rows_still_catch_lost_rows_and_allow_a_partial_import(exported: Path, tmp_path: Path) -> None:
    """A data row lost between export and import fails rows (the frames said more); importing only
    some tables of the export compares just those."""
    csv_dir = tmp_path / "csv"
    shutil.copytree(exported / "csv", csv_dir)
    l2_csv = csv_dir / "l2" / f"date={DATES[0]}" / f"{STEM}.csv"
    lines = l2_csv.read_text().splitlines(keepends=True)
    l2_csv.write_text("".join(lines[:-1]))
    report = validate_store(_import(tmp_path / "lost", [csv_dir]))
    assert failing(report) == {"rows"}
    [location] = report.check("rows").locations
    assert f"l2 rows, the frames of {STEM} in messages carried" in location and "(-1)" in location

    partial = _import(tmp_path / "partial", [csv_dir / "messages", csv_dir / "ticker"])
    report = validate_store(partial)
    assert not_passed(report) == {}
    assert report.check("rows").checked == 4 + 1  # 2 messages + 2 ticker entries, ticker vs frames


def _import(store: Path, inputs: list[Path]) -> Path:
    summary = run_csv2parquet(cfg_for(store), [str(p) for p in inputs])
    assert summary.failed == summary.invalid == 0
    return store


def _tardis_store(tmp_path: Path, trades: str = TRADES, quotes: str = QUOTES) -> Path:
    src = tmp_path / "tardis"
    src.mkdir(exist_ok=True)
    for name, text in (("book.csv", BOOK), ("trades.csv", trades), ("quotes.csv", quotes)):
        (src / name).write_text(text)
    return _import(tmp_path / "store", [src])


def test_tardis_store_passes(tmp_path: Path) -> None:
    """Tardis book with a level updated twice in one message, trades with an unknown aggressor,
    quotes without a price: every check passes."""
    store = _tardis_store(tmp_path)
    report = validate_store(store)
    assert not_passed(report) == {}
    con = duckdb.connect()
    assert con.sql(f"SELECT side FROM '{store}/trades/*/*.parquet' ORDER BY trade_id").fetchall() == [
        ("BUY",), ("UNKNOWN",)]
    assert con.sql(f"SELECT count(*), count(price) FROM '{store}/ticker/*/*.parquet'").fetchall() == [(2, 0)]
    assert con.sql(f"SELECT count(*) FROM (SELECT DISTINCT * FROM '{store}/l2/*/*.parquet')").fetchall() == [(3,)]


def test_tardis_store_damage_is_still_caught(tmp_path: Path) -> None:
    """A trade row twice fails duplicates (only l2 is exempt); a negative bid fails prices (only
    null prices are absent)."""
    trades = TRADES + TRADES.splitlines(keepends=True)[-1]
    quotes = QUOTES.replace(",,,65000.01,0", ",,,-1,0")
    report = validate_store(_tardis_store(tmp_path, trades, quotes))
    assert failing(report) == {"duplicates", "prices"}
    assert "1 exact duplicate trades rows" in report.check("duplicates").locations[0]
    assert "1 rows with best_bid not > 0 and finite (row 1 = -1.0)" in report.check("prices").locations[0]


def _generic_store(tmp_path: Path) -> Path:
    src = tmp_path / "generic"
    src.mkdir()
    (src / "funding.csv").write_text(FUNDING)
    (src / "ref.csv").write_text(REF)
    store = tmp_path / "store"
    for name, kw in (("funding", {"time_column": "ts"}), ("ref", {})):
        summary = run_csv2parquet(cfg_for(store), [str(src / f"{name}.csv")], fmt="generic",
                                  table=name, **kw)
        assert summary.failed == 0
    return store


def test_generic_tables_are_inventoried(tmp_path: Path) -> None:
    """Generic tables (by date, and one file without a time column) are read and matched with the
    manifest, with no contract schema check and no stray warning."""
    store = _generic_store(tmp_path)
    assert _tardis_store(tmp_path) == store
    report = validate_store(store)
    assert not_passed(report) == {}
    assert report.check("readable").checked == 6 and report.check("schema").checked == 3
    assert report.check("manifest_outputs").details.startswith("5 manifest entries, 6 outputs")
    assert report.rows["funding"] == 2 and report.rows["ref"] == 2
    assert len(list(store.glob("funding/date=*/*.parquet"))) == 2 and len(list(store.glob("ref/*.parquet"))) == 1


def test_generic_table_damage_is_caught(tmp_path: Path) -> None:
    """In a generic table: a missing file, an unreadable one and an unlisted one fail; a folder
    nobody wrote is still a stray warning."""
    store = _generic_store(tmp_path)
    [ref] = store.glob("ref/*.parquet")
    ref.unlink()
    funding = sorted(store.glob("funding/date=*/*.parquet"))
    funding[0].write_bytes(funding[0].read_bytes()[:-20])
    pq.write_table(pq.read_table(funding[1]), funding[1].with_name("extra.parquet"))
    (store / "other").mkdir()
    report = validate_store(store)
    assert failing(report) == {"readable", "manifest_outputs"}
    assert report.check("readable").locations[0].startswith(f"{funding[0].relative_to(store).as_posix()}: cannot")
    outputs = " | ".join(report.check("manifest_outputs").locations)
    assert f"{ref.relative_to(store).as_posix()}: listed in the manifest for ref.csv but missing" in outputs
    assert "extra.parquet: not in the manifest" in outputs
    assert report.check("stray_files").status is Status.WARN
    assert report.check("stray_files").locations == ["other/: not a table of the store contract (not checked)"]


def test_segment_key_groups_only_the_write_csv_layout(tmp_path: Path) -> None:
    """mktpred CSV under <dir>/<table>/date=D/ shares <dir>/<stem>; other layouts and kinds keep their source."""
    def entry(source: str, kind: str = "csv", fmt: str = "mktpred:l2") -> SourceEntry:
        return SourceEntry(source=source, kind=kind, size=0, mtime_ns=0, hash="", csv_format=fmt)

    assert segment_key(entry("/x/csv/l2/date=2026-08-09/seg.csv.zst")) == "/x/csv/seg"
    assert segment_key(entry("/x/csv/messages/date=2026-08-10/seg.csv", fmt="mktpred:messages")) == "/x/csv/seg"
    for e in (entry("/x/flat/seg.csv"), entry("/x/csv/ticker/date=2026-08-09/seg.csv"),
              entry("/x/csv/l2/date=2026-08-09/seg.csv", fmt="tardis:incremental_book_L2"),
              entry("/x/raw/seg.jsonl", kind="raw", fmt="")):
        assert segment_key(e) == e.source
