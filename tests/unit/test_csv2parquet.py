"""csv2parquet as a library: formats, round trip, malformed rows, re-runs, validate on the result."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from mktpred.config import Config, load_config
from mktpred.convert.runner import run_convert
from mktpred.errors import DataError, TooManyInvalidLines, UsageError
from mktpred.ingest.csv_import import run_csv2parquet, stem_for
from mktpred.store.manifest import Manifest
from mktpred.testing.raw import SynthSpec, write_segment
from mktpred.validate import validate_store

BOOK = """exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount
coinbase,BTC-USD,1786309548228568,1786309548230001,true,bid,65000.01,0.5
coinbase,BTC-USD,1786309548228568,1786309548230001,true,ask,65000.02,1.25
coinbase,BTC-USD,1786309549000001,1786309549000500,false,bid,65000.01,0
coinbase,BTC-USD,1786309549000002,1786309549000600,false,ask,65000.03,0.75
"""
TRADES = """exchange,symbol,timestamp,local_timestamp,id,side,price,amount
binance,btcusdt,1786309548228568,1786309548230001,123,buy,65000.5,0.01
binance,btcusdt,1786309548328568,1786309548330001,abc-124,sell,65000.4,0.02
"""
QUOTES = """exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount
coinbase,ETH-USD,1786309548228568,1786309548230001,1.5,1900.02,1900.01,2.5
coinbase,ETH-USD,1786309548328568,1786309548330001,,,1900.01,0
"""


def cfg_for(store: Path) -> Config:
    return load_config(None, {"paths.parquet_dir": store})


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    elif path.name.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


def ns(us: int) -> datetime:
    """A UTC datetime from microseconds (exact: the tests' values have no sub-microsecond part)."""
    return datetime.fromtimestamp(us / 1e6, UTC).replace(microsecond=us % 1_000_000)


def rows(store: Path, table: str) -> list[dict[str, Any]]:
    files = sorted(store.glob(f"{table}/**/*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist() if files else []


def test_round_trip_with_convert_write_csv(tmp_path: Path) -> None:
    """convert --write-csv, then csv2parquet of that CSV: every table file equals the direct conversion."""
    raw = tmp_path / "raw"
    write_segment(raw / "coinbase_20260809T210548Z.jsonl", SynthSpec(snapshot_levels=50), n_lines=400)
    direct = tmp_path / "direct"
    cfg = load_config(None, {"paths.raw_dir": raw, "paths.parquet_dir": direct, "paths.csv_dir": tmp_path / "csv",
                             "convert.engine": "cpu"})
    converted = run_convert(cfg, write_csv=True)
    assert converted.invalid == 0
    summary = run_csv2parquet(cfg_for(tmp_path / "back"), [str(tmp_path / "csv")])
    assert summary.failed == summary.invalid == 0
    assert summary.rows == {t: n for t, n in converted.rows.items() if n}
    pairs = 0
    for original in sorted(direct.glob("*/date=*/*.parquet")):
        table, part = original.parent.parent.name, original.parent.name
        [copy] = (tmp_path / "back" / table / part).glob(f"{original.stem}_*.parquet")
        a, b = pq.read_table(original), pq.read_table(copy)
        assert b.schema.equals(a.schema) and b.equals(a), original
        pairs += 1
    assert pairs == 5  # l2, ticker, trades, messages, events
    assert {e.csv_format for e in Manifest.load(tmp_path / "back").entries.values()} == {
        "mktpred:l2", "mktpred:ticker", "mktpred:trades", "mktpred:messages", "mktpred:events"}


def test_tardis_book_rows_hand_checked(tmp_path: Path) -> None:
    """incremental_book_L2: µs times become ns, local_timestamp recv_time, snapshot flags, sides, a zero size."""
    summary = run_csv2parquet(cfg_for(tmp_path / "s"), [str(write(tmp_path / "book.csv", BOOK))])
    assert summary.rows == {"l2": 4} and summary.files[0].csv_format == "tardis:incremental_book_L2"
    got = rows(tmp_path / "s", "l2")
    common = {"conn": None, "seq": None, "product_id": "BTC-USD"}
    assert got == [
        {"recv_time": ns(1786309548230001), "time": ns(1786309548228568), "event_time": ns(1786309548228568),
         **common, "is_snapshot": True, "side": "bid", "price": 65000.01, "size": 0.5},
        {"recv_time": ns(1786309548230001), "time": ns(1786309548228568), "event_time": ns(1786309548228568),
         **common, "is_snapshot": True, "side": "ask", "price": 65000.02, "size": 1.25},
        {"recv_time": ns(1786309549000500), "time": ns(1786309549000001), "event_time": ns(1786309549000001),
         **common, "is_snapshot": False, "side": "bid", "price": 65000.01, "size": 0.0},
        {"recv_time": ns(1786309549000600), "time": ns(1786309549000002), "event_time": ns(1786309549000002),
         **common, "is_snapshot": False, "side": "ask", "price": 65000.03, "size": 0.75},
    ]
    table = pq.read_table(next((tmp_path / "s").glob("l2/date=2026-08-09/book_*.parquet")))
    assert table.column("time").to_pylist()[0].value == 1786309548228568000  # type: ignore[attr-defined]


def test_tardis_trades_and_quotes_rows_hand_checked(tmp_path: Path) -> None:
    """trades: side upper-cased, id kept as text, symbol as given; quotes: best bid/ask, the rest null."""
    store = tmp_path / "s"
    summary = run_csv2parquet(cfg_for(store), [str(write(tmp_path / "t.csv", TRADES)),
                                               str(write(tmp_path / "q.csv", QUOTES))])
    assert summary.rows == {"trades": 2, "ticker": 2}
    assert rows(store, "trades") == [
        {"recv_time": ns(1786309548230001), "time": ns(1786309548228568), "conn": None, "seq": None,
         "product_id": "btcusdt", "is_snapshot": False, "trade_id": "123", "side": "BUY", "price": 65000.5,
         "size": 0.01, "trade_time": ns(1786309548228568), "aggressor": "buy"},
        {"recv_time": ns(1786309548330001), "time": ns(1786309548328568), "conn": None, "seq": None,
         "product_id": "btcusdt", "is_snapshot": False, "trade_id": "abc-124", "side": "SELL", "price": 65000.4,
         "size": 0.02, "trade_time": ns(1786309548328568), "aggressor": "sell"},
    ]
    nulls = dict.fromkeys(["conn", "seq", "price", "volume_24h", "low_24h", "high_24h", "low_52w", "high_52w",
                           "price_pct_chg_24h"])
    assert rows(store, "ticker") == [
        {"recv_time": ns(1786309548230001), "time": ns(1786309548228568), **nulls, "product_id": "ETH-USD",
         "is_snapshot": False, "best_bid": 1900.01, "best_bid_size": 2.5, "best_ask": 1900.02, "best_ask_size": 1.5},
        {"recv_time": ns(1786309548330001), "time": ns(1786309548328568), **nulls, "product_id": "ETH-USD",
         "is_snapshot": False, "best_bid": 1900.01, "best_bid_size": 0.0, "best_ask": None, "best_ask_size": None},
    ]


def test_gzip_and_zstd_give_the_same_rows(tmp_path: Path) -> None:
    """The same book as .csv, .csv.gz and .csv.zst imports to the same rows."""
    stores = {}
    for name in ("book.csv", "book.csv.gz", "book.csv.zst"):
        store = tmp_path / name.replace(".", "_")
        summary = run_csv2parquet(cfg_for(store), [str(write(tmp_path / "in" / name, BOOK))])
        assert summary.rows == {"l2": 4}
        stores[name] = rows(store, "l2")
    assert stores["book.csv"] == stores["book.csv.gz"] == stores["book.csv.zst"]


GENERIC = """id,price,ok,note,ts
1,10.5,true,first,2026-08-09T21:05:48.123456789Z
2,11,false,,2026-08-09T23:59:59.999999999+00:00
3,12.25,true,"a, quoted note",2026-08-10T00:30:00+02:00
4,13,false,last,2026-08-10 01:00:00
"""


def test_generic_inferred_types_partitioned_by_time_column(tmp_path: Path) -> None:
    """Generic CSV: types inferred (int64, float64, bool, string, ns timestamp), partitions by UTC date."""
    store = tmp_path / "s"
    summary = run_csv2parquet(cfg_for(store), [str(write(tmp_path / "g.csv", GENERIC))], fmt="generic",
                              table="fills", time_column="ts")
    assert summary.rows == {"fills": 4} and summary.invalid == 0
    files = sorted(store.glob("fills/date=*/*.parquet"))
    assert [f.parent.name for f in files] == ["date=2026-08-09", "date=2026-08-10"]
    schema = pq.read_schema(files[0])
    assert [(f.name, str(f.type)) for f in schema] == [
        ("id", "int64"), ("price", "double"), ("ok", "bool"), ("note", "string"), ("ts", "timestamp[ns, tz=UTC]")]
    got = pa.concat_tables([pq.read_table(f) for f in files])
    assert got.column("note").to_pylist() == ["first", None, "a, quoted note", "last"]
    epoch_ns = got.column("ts").cast(pa.int64()).to_pylist()
    assert epoch_ns == [1786309548123456789, 1786319999999999999, 1786314600000000000, 1786323600000000000]
    # +02:00 applied: 00:30 local is 22:30 UTC on the 9th, so row 3 lands in the first partition
    assert pq.read_table(files[0]).column("id").to_pylist() == [1, 2, 3]


def test_generic_overridden_types_and_epoch_time(tmp_path: Path) -> None:
    """--schema overrides inferred types; an epoch_ms time column partitions by its UTC date."""
    src = write(tmp_path / "g.csv", "id,amount,t\n007,1,1786309548123\n008,2,1786395948123\n")
    store = tmp_path / "s"
    summary = run_csv2parquet(cfg_for(store), [str(src)], table="events_x", schema="id=string,amount=float64,t=epoch_ms",
                              time_column="t")
    assert summary.rows == {"events_x": 2}
    got = pa.concat_tables([pq.read_table(f) for f in sorted(store.glob("events_x/date=*/*.parquet"))])
    assert got.schema.field("id").type == pa.string() and got.column("id").to_pylist() == ["007", "008"]
    assert got.schema.field("amount").type == pa.float64()
    assert got.column("t").cast(pa.int64()).to_pylist() == [1786309548123000000, 1786395948123000000]
    assert len(list(store.glob("events_x/date=*"))) == 2
    assert summary.files[0].csv_format == "generic:events_x time=t columns=id:string,amount:float64,t:epoch_ms"


def test_generic_without_time_column_is_one_file(tmp_path: Path) -> None:
    """Without --time-column the table is one file under its directory, not partitioned."""
    src = write(tmp_path / "ref.csv", "code;name\n1;one\n2;two\n")  # the sniffer finds ';'
    store = tmp_path / "s"
    summary = run_csv2parquet(cfg_for(store), [str(src)], table="ref")
    assert summary.files[0].outputs == [f"ref/{stem_for(src)}.parquet"]
    assert pq.read_table(store / summary.files[0].outputs[0]).to_pylist() == [
        {"code": 1, "name": "one"}, {"code": 2, "name": "two"}]


def test_malformed_rows_are_quarantined_with_file_and_line(tmp_path: Path) -> None:
    """Bad numbers, wrong field counts, unknown sides, empty symbols and bad times are skipped,
    counted and kept with their physical line; the good rows are written."""
    text = BOOK.splitlines()
    bad = [
        text[0],
        text[1],
        "coinbase,BTC-USD,1786309548228568,1786309548230001,true,bid,abc,0.5",      # line 3: not a number
        "",                                                                           # line 4: blank, ignored
        "coinbase,BTC-USD,1786309548228568,1786309548230001,true,bid",              # line 5: too few fields
        text[2],
        "coinbase,,1786309548228568,1786309548230001,true,bid,1,1",                  # line 7: empty symbol
        "coinbase,BTC-USD,1786309548228568,1786309548230001,true,up,1,1",            # line 8: unknown side
        "coinbase,BTC-USD,99999999999999999,1786309548230001,false,bid,1,1",         # line 9: out of range
        text[3],
        "coinbase,BTC-USD,1786309548228568,1786309548230001,true,bid,1,1,extra",     # line 11: too many fields
        text[4],
    ]
    src = write(tmp_path / "book.csv", "\n".join(bad) + "\n")
    store = tmp_path / "s"
    summary = run_csv2parquet(cfg_for(store), [str(src)], max_invalid=10)
    assert summary.rows == {"l2": 4} and summary.invalid == 6 and summary.lines == 11  # 12, less the blank one
    assert [r["size"] for r in rows(store, "l2")] == [0.5, 1.25, 0.0, 0.75]
    q = [json.loads(line) for line in (store / summary.files[0].quarantine).read_text().splitlines()]  # type: ignore[operator]
    assert [(r["segment"], r["line"], r["reason"].split(":")[0]) for r in q] == [
        ("book.csv", 3, "cast"), ("book.csv", 5, "missing columns"), ("book.csv", 7, "symbol"),
        ("book.csv", 8, "cast"), ("book.csv", 9, "timestamp"), ("book.csv", 11, "too many columns")]
    assert [r["text"] for r in q] == [bad[i - 1] for i in (3, 5, 7, 8, 9, 11)]
    assert q[0]["reason"].startswith("cast: price: Could not convert string \"abc\"")
    assert summary.files[0].invalid_reasons == {"cast": 2, "missing columns": 1, "symbol": 1, "timestamp": 1,
                                                "too many columns": 1}
    summary.check()  # 6 <= --max-invalid 10
    again = run_csv2parquet(cfg_for(store), [str(src)], max_invalid=5, force=True)
    with pytest.raises(TooManyInvalidLines):
        again.check()


def test_mktpred_rows_with_bad_timestamps_are_located(tmp_path: Path) -> None:
    """A mktpred CSV row whose time does not parse is quarantined with its line, even after a blank line."""
    header = "recv_time,time,conn,seq,channel,n_events,n_rows"
    lines = [header, '2026-08-09T21:05:48.1Z,2026-08-09T21:05:48.2Z,"c-1",0,"l2_data",1,3', "",
             '2026-08-09T21:05:48.1Z,not-a-time,"c-1",1,"l2_data",1,3',
             ',2026-08-09T21:05:49Z,,,"heartbeats",1,0']
    src = write(tmp_path / "messages.csv", "\n".join(lines) + "\n")
    summary = run_csv2parquet(cfg_for(tmp_path / "s"), [str(src)], fmt="mktpred", max_invalid=1)
    assert summary.rows == {"messages": 2} and summary.invalid == 1
    [rec] = [json.loads(x) for x in (tmp_path / "s" / summary.files[0].quarantine).read_text().splitlines()]  # type: ignore[operator]
    assert rec["line"] == 4 and rec["text"] == lines[3]
    assert rec["reason"] == "time: not an ISO 8601 timestamp: 'not-a-time'"
    got = rows(tmp_path / "s", "messages")
    assert got[1]["recv_time"] is None and got[1]["conn"] is None and got[1]["seq"] is None


def test_unknown_header_names_the_columns_and_formats(tmp_path: Path) -> None:
    """--format auto and a header no format knows: UsageError (exit 2) naming columns and formats; nothing written."""
    good = write(tmp_path / "a_book.csv", BOOK)
    odd = write(tmp_path / "b_odd.csv", "when,what,how_much\n1,2,3\n")
    with pytest.raises(UsageError) as err:
        run_csv2parquet(cfg_for(tmp_path / "s"), [str(good), str(odd)])
    assert err.value.exit_code == 2
    msg = str(err.value)
    assert "columns when, what, how_much" in msg and "tardis" in msg and "mktpred" in msg
    assert "--format generic --table NAME" in msg and str(odd) in msg
    assert not (tmp_path / "s" / "l2").exists()


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"fmt": "generic"}, "--format generic needs --table"),
    ({"fmt": "generic", "table": "l2"}, "table of the store contract"),
    ({"fmt": "generic", "table": "book"}, "reserved for a table mktpred derives"),
    ({"fmt": "generic", "table": "x", "time_column": "qty"}, "--schema qty=epoch_s"),
    ({"fmt": "generic", "table": "x", "time_column": "nope"}, "not a column"),
    ({"fmt": "generic", "table": "x", "schema": "qty=decimal"}, "unknown type 'decimal'"),
    ({"fmt": "generic", "table": "x", "schema": "nope=int64"}, "does not have: nope"),
    ({"fmt": "tardis"}, "not tardis CSV"),
    ({"fmt": "mktpred", "time_column": "qty"}, "--format generic only"),
    ({"fmt": "csvish"}, "unknown format"),
])
def test_bad_options_are_usage_errors(tmp_path: Path, kwargs: dict[str, Any], needle: str) -> None:
    """Each misuse is a UsageError (exit 2) that says what is wrong."""
    src = write(tmp_path / "g.csv", "name,qty\na,1\n")
    with pytest.raises(UsageError, match=needle):
        run_csv2parquet(cfg_for(tmp_path / "s"), [str(src)], **kwargs)


def test_table_option_must_agree_with_a_recognised_file(tmp_path: Path) -> None:
    """A Tardis file with --table other: an error that points to --format generic."""
    src = write(tmp_path / "book.csv", BOOK)
    with pytest.raises(UsageError, match="goes to table 'l2', not 'mybook'"):
        run_csv2parquet(cfg_for(tmp_path / "s"), [str(src)], table="mybook")
    assert run_csv2parquet(cfg_for(tmp_path / "s"), [str(src)], table="l2").rows == {"l2": 4}


def test_rerun_skips_unchanged_files_and_redoes_changed_ones(tmp_path: Path) -> None:
    """A re-run skips unchanged files; a changed file is imported again and replaces its rows; --force redoes all."""
    book = write(tmp_path / "in" / "book.csv", BOOK)
    write(tmp_path / "in" / "t.csv", TRADES)
    store = tmp_path / "s"
    first = run_csv2parquet(cfg_for(store), [str(tmp_path / "in")])
    assert (first.converted, first.skipped) == (2, 0)
    entry = Manifest.load(store).get(book)
    assert entry is not None and entry.kind == "csv" and entry.csv_format == "tardis:incremental_book_L2"
    assert entry.rows == {"l2": 4} and entry.hash.startswith("blake2b:") and entry.lines == 5
    again = run_csv2parquet(cfg_for(store), [str(tmp_path / "in")])
    assert (again.converted, again.skipped) == (0, 2)
    write(book, BOOK + BOOK.splitlines()[1] + "\n")
    os.utime(book, ns=(1, 1))
    changed = run_csv2parquet(cfg_for(store), [str(tmp_path / "in")])
    assert (changed.converted, changed.skipped) == (1, 1) and changed.rows == {"l2": 5}
    assert len(rows(store, "l2")) == 5 and len(list(store.glob("l2/*/*.parquet"))) == 1
    forced = run_csv2parquet(cfg_for(store), [str(tmp_path / "in")], force=True)
    assert (forced.converted, forced.skipped) == (2, 0) and len(rows(store, "l2")) == 5


def test_reimport_elsewhere_removes_the_old_outputs(tmp_path: Path) -> None:
    """The same file imported again into another table leaves no file of the earlier import behind."""
    src = write(tmp_path / "g.csv", "name,t\na,2026-08-09T00:00:00Z\n")
    store = tmp_path / "s"
    run_csv2parquet(cfg_for(store), [str(src)], table="one", time_column="t")
    run_csv2parquet(cfg_for(store), [str(src)], table="two")
    assert not list(store.glob("one/**/*.parquet")) and len(list(store.glob("two/*.parquet"))) == 1
    entry = Manifest.load(store).get(src)
    assert entry is not None and entry.outputs == [f"two/{stem_for(src)}.parquet"]


def test_unterminated_quote_fails_the_file_and_keeps_the_store(tmp_path: Path) -> None:
    """A quote that never closes would swallow the rest of the file: the file fails, nothing is written."""
    lines = BOOK.splitlines()
    src = write(tmp_path / "book.csv", "\n".join([*lines[:2], 'coinbase,"BTC-USD,1,2,true,bid,1,1', *lines[2:]]) + "\n")
    summary = run_csv2parquet(cfg_for(tmp_path / "s"), [str(src)])
    assert summary.failed == 1 and "never closes" in summary.failures[0].error
    assert not list((tmp_path / "s").glob("l2/**/*")) and Manifest.load(tmp_path / "s").entries == {}
    with pytest.raises(DataError):
        summary.check()


def test_unreadable_files_fail_alone(tmp_path: Path) -> None:
    """A corrupt .zst, a truncated .gz and mixed line endings fail their file (exit 1); good files are imported."""
    good = write(tmp_path / "in" / "a_good.csv", TRADES)
    (tmp_path / "in" / "b_bad.csv.zst").write_bytes(b"\x00not zstd at all")
    (tmp_path / "in" / "c_cut.csv.gz").write_bytes(gzip.compress(TRADES.encode())[:30])
    tail = zstandard.ZstdCompressor().compress(TRADES.encode()) + b"\x00garbage after the frame"
    (tmp_path / "in" / "d_tail.csv.zst").write_bytes(tail)
    lines = TRADES.splitlines()
    (tmp_path / "in" / "e_mixed.csv").write_bytes(f"{lines[0]}\r\n{lines[1]}\n\r\n{lines[2]}\n".encode())
    summary = run_csv2parquet(cfg_for(tmp_path / "s"), [str(tmp_path / "in")])
    assert summary.converted == 1 and summary.files[0].source == str(good)
    assert sorted(Path(f.source).name for f in summary.failures) == [
        "b_bad.csv.zst", "c_cut.csv.gz", "d_tail.csv.zst", "e_mixed.csv"]
    assert all(f.exit_code == 1 for f in summary.failures)
    assert list(Manifest.load(tmp_path / "s").entries) == [str(good)]
    with pytest.raises(DataError, match="4 file"):
        summary.check()


def test_missing_input_and_empty_directory_are_usage_errors(tmp_path: Path) -> None:
    """An input naming nothing, or a directory without CSV files: UsageError."""
    with pytest.raises(UsageError, match="no such file"):
        run_csv2parquet(cfg_for(tmp_path / "s"), [str(tmp_path / "nope*.csv")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no CSV files"):
        run_csv2parquet(cfg_for(tmp_path / "s"), [str(tmp_path / "empty")])


def test_validate_passes_on_a_csv2parquet_store(tmp_path: Path) -> None:
    """A store built by csv2parquet from Tardis book and trades CSV and mktpred data-table CSV passes validate."""
    raw = tmp_path / "raw"
    write_segment(raw / "coinbase_20260809T210548Z.jsonl", SynthSpec(snapshot_levels=20), n_lines=150)
    cfg = load_config(None, {"paths.raw_dir": raw, "paths.parquet_dir": tmp_path / "direct",
                             "paths.csv_dir": tmp_path / "csv", "convert.engine": "cpu"})
    run_convert(cfg, write_csv=True)
    store = tmp_path / "s"
    inputs = [str(write(tmp_path / "book.csv", BOOK)), str(write(tmp_path / "t.csv.gz", TRADES)),
              *(str(p) for t in ("l2", "ticker", "trades") for p in (tmp_path / "csv" / t).rglob("*.csv"))]
    summary = run_csv2parquet(cfg_for(store), inputs)
    assert summary.converted == 5 and summary.invalid == 0
    report = validate_store(store)
    assert report.ok, [(c.name, c.details) for c in report.failed]
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{store}/l2/*/*.parquet')").fetchall() == [
        (summary.rows["l2"],)]


def test_count_lines_counts_non_blank_lines_and_notes_long_ones_across_chunks(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The independent line count skips blank and CR-only lines, counts a last line without a newline,
    and reports a long line's number, length and head even when it spans read chunks."""
    from mktpred.ingest import csv_read

    monkeypatch.setattr(csv_read, "_LOCATE_CHUNK", 7)
    monkeypatch.setattr(csv_read, "LONG_LINE", 20)
    path = tmp_path / "x.csv"
    path.write_bytes(b"a,b\n\n1,2\r\n\r\n" + b"L" * 25 + b"\n3,4\n" + b"M" * 30)
    counted = csv_read.count_lines(path)
    assert counted.lines == 5  # header, "1,2", the L line, "3,4", the M line
    assert counted.long_lines == {5: (25, "L" * 25), 7: (30, "M" * 30)}


def test_csv_line_longer_than_duckdb_reads_is_quarantined_not_dropped(tmp_path: Path) -> None:
    """A 34 MB line, which DuckDB drops without a reject record, is counted and quarantined with its line."""
    big = "binance,btcusdt,1786309548228568,1786309548230001," + "x" * 34_000_000 + ",buy,65000.5,0.01\n"
    lines = TRADES.splitlines(keepends=True)
    src = tmp_path / "in" / "trades.csv"
    src.parent.mkdir()
    src.write_text(lines[0] + lines[1] + big + lines[2])
    summary = run_csv2parquet(cfg_for(tmp_path / "store"), [str(src)])
    assert summary.rows == {"trades": 2}
    assert (summary.lines, summary.invalid) == (4, 1)
    (qfile,) = (tmp_path / "store" / "_quarantine").glob("*.jsonl")
    (rec,) = [json.loads(line) for line in qfile.read_text().splitlines()]
    assert rec["line"] == 3
    assert rec["reason"].startswith("line too long: 34,000,0")
    assert rec["text"].startswith("binance,btcusdt,") and len(rec["text"]) == 1000
    (entry,) = Manifest.load(tmp_path / "store").entries.values()
    assert (entry.lines, entry.invalid, entry.quarantine) == (4, 1, f"_quarantine/{qfile.name}")
