"""`build_book`: the book table on disk, its manifest entries, incremental re-runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mktpred.book import book_schema, build_book, parse_duration
from mktpred.book.build import manifest_key
from mktpred.coinbase.timestamps import parse_rfc3339_ns, utc_date
from mktpred.errors import UsageError
from mktpred.progress import Progress
from mktpred.store.manifest import Manifest
from mktpred.store.schemas import TABLE_SCHEMAS

MIDNIGHT = parse_rfc3339_ns("2026-08-10T00:00:00Z")
S = 1_000_000_000

Frame = tuple[str, int, int, bool, str, list[tuple[str, float, float]]]


def write_l2(root: Path, frames: list[Frame], stem: str) -> None:
    by_day: dict[str, list[dict[str, Any]]] = {}
    for c, s, t, snap, p, levels in frames:
        for side, price, size in levels:
            by_day.setdefault(utc_date(t), []).append(dict(
                recv_time=t, time=t, event_time=t // 1000, conn=c, seq=s, product_id=p, is_snapshot=snap,
                side=side, price=price, size=size))
    for day, rows in by_day.items():
        d = root / "l2" / f"date={day}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=TABLE_SCHEMAS["l2"]), d / f"{stem}.parquet")


def _frames(first_seq: int, t0: int, n: int, snapshot: bool) -> list[Frame]:
    """A snapshot (optional) then one update per second for BTC-USD and ETH-USD on conn c."""
    out: list[Frame] = []
    seq = first_seq
    if snapshot:
        for p, px in (("BTC-USD", 100.0), ("ETH-USD", 10.0)):
            out.append(("c", seq, t0, True, p, [("bid", px, 1.0), ("ask", px + 1, 1.0)]))
            seq += 1
    for i in range(n):
        t = t0 + (i + 1) * S
        for p, px in (("BTC-USD", 100.0), ("ETH-USD", 10.0)):
            out.append(("c", seq, t, False, p, [("bid", px, float(i + 2))]))
            seq += 1
    return out


def _book(root: Path, product: str = "BTC-USD") -> pa.Table:
    con = duckdb.connect()
    return con.sql(f"SELECT * FROM read_parquet('{root}/book/*/{product}.parquet') ORDER BY time").arrow().read_all()


def test_build_writes_day_partitions_duckdb_reads(tmp_path: Path) -> None:
    """A connection across midnight gives one file per product and day, readable by DuckDB."""
    write_l2(tmp_path, _frames(0, MIDNIGHT - 3 * S, 5, True), "seg1")
    events: list[Progress] = []
    res = build_book(tmp_path, depth=2, interval_ns=S, progress=events.append)
    assert {p.product for p in res.products} == {"BTC-USD", "ETH-USD"}
    btc = next(p for p in res.products if p.product == "BTC-USD")
    assert btc.dates_written == ["2026-08-09", "2026-08-10"]
    assert btc.outputs == ["book/date=2026-08-09/BTC-USD.parquet", "book/date=2026-08-10/BTC-USD.parquet"]
    t = _book(tmp_path)
    assert t.num_rows == 6 and btc.snapshots == 6  # grid points -3 s .. +2 s
    assert t.column("bid_size_0").to_pylist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert t.column("bid_price_1").to_pylist() == [None] * 6
    assert pq.read_schema(tmp_path / btc.outputs[0]) .equals(book_schema(2))
    assert events and events[-1].files_done == events[-1].files_total == 4  # 2 files x 2 products
    entry = Manifest.load(tmp_path).entries[manifest_key("BTC-USD", "2026-08-10")]
    assert entry.kind == "book" and entry.rows == {"book": 3} and entry.outputs == [btc.outputs[1]]
    doc = json.loads(json.dumps(res.to_json()))
    assert doc["products"]["BTC-USD"]["snapshots"] == 6 and doc["interval"] == "1s"


def test_rerun_is_incremental_and_replays_across_midnight(tmp_path: Path) -> None:
    """A re-run skips unchanged days; a new segment rebuilds its day, replaying from the earlier snapshot."""
    write_l2(tmp_path, _frames(0, MIDNIGHT - 3 * S, 5, True), "seg1")
    build_book(tmp_path, depth=1, interval_ns=S)
    again = build_book(tmp_path, depth=1, interval_ns=S)
    assert all(p.dates_written == [] and p.dates_skipped == ["2026-08-09", "2026-08-10"] for p in again.products)
    day1 = tmp_path / "book" / "date=2026-08-09" / "BTC-USD.parquet"
    mtime = day1.stat().st_mtime_ns
    # a later segment of the same connection (no snapshot in it) lands on day 2
    write_l2(tmp_path, _frames(12, MIDNIGHT + 10 * S, 2, False), "seg2")
    res = build_book(tmp_path, depth=1, interval_ns=S, products=["BTC-USD"])
    (btc,) = res.products
    assert btc.dates_written == ["2026-08-10"] and btc.dates_skipped == ["2026-08-09"]
    assert day1.stat().st_mtime_ns == mtime
    t = _book(tmp_path)
    assert t.num_rows == 3 + 13  # the grid now runs to +12 s
    assert t.column("bid_size_0").to_pylist()[-3:] == [6.0, 2.0, 3.0]
    assert t.column("valid").to_pylist() == [True] * 16
    forced = build_book(tmp_path, depth=1, interval_ns=S, products=["BTC-USD"], force=True)
    assert forced.products[0].dates_written == ["2026-08-09", "2026-08-10"]
    assert _book(tmp_path).equals(t)


def test_changed_options_rebuild_and_every_update(tmp_path: Path) -> None:
    """Other options (every update, depth) rebuild everything; every-update rows are per frame."""
    write_l2(tmp_path, _frames(0, MIDNIGHT - 3 * S, 5, True), "seg1")
    build_book(tmp_path, depth=1, interval_ns=S)
    res = build_book(tmp_path, depth=3, interval_ns=None, products=["ETH-USD"])
    assert res.interval == "every-update"
    t = _book(tmp_path, "ETH-USD")
    assert t.num_rows == 6 and "bid_price_2" in t.column_names
    assert [x.value for x in t.column("time").to_pylist()] == [MIDNIGHT - 3 * S + i * S for i in range(6)]


def test_start_end_limit_the_output(tmp_path: Path) -> None:
    """--start/--end keep grid points in range; the book still starts from the earlier snapshot."""
    write_l2(tmp_path, _frames(0, MIDNIGHT - 3 * S, 5, True), "seg1")
    build_book(tmp_path, depth=1, interval_ns=S, start=MIDNIGHT, end=MIDNIGHT + 2 * S)
    t = _book(tmp_path)
    assert [x.value for x in t.column("time").to_pylist()] == [MIDNIGHT, MIDNIGHT + S]
    assert t.column("bid_size_0").to_pylist() == [4.0, 5.0]


def test_usage_errors(tmp_path: Path) -> None:
    """Bad depth, unknown products, an empty store and bad durations are usage errors."""
    write_l2(tmp_path, _frames(0, MIDNIGHT, 1, True), "seg1")
    with pytest.raises(UsageError, match="--depth must be between 1 and 50"):
        build_book(tmp_path, depth=51)
    with pytest.raises(UsageError, match="no level2 data for DOGE-USD"):
        build_book(tmp_path, products=["DOGE-USD"])
    os.makedirs(tmp_path / "empty")
    with pytest.raises(UsageError, match="no l2 table"):
        build_book(tmp_path / "empty")
    with pytest.raises(UsageError, match="not a duration"):
        parse_duration("fast")
    assert parse_duration("100ms") == 100_000_000 and parse_duration("1s") == S and parse_duration("1.5m") == 90 * S


def test_row_groups_are_buffered_per_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks are gathered into row groups of ROW_GROUP rows; the content is the same."""
    import mktpred.book.build as build

    write_l2(tmp_path, _frames(0, MIDNIGHT - 3 * S, 5, True), "seg1")
    build_book(tmp_path, depth=1, interval_ns=S // 4)
    whole = _book(tmp_path)
    monkeypatch.setattr(build, "ROW_GROUP", 4)
    build_book(tmp_path, depth=1, interval_ns=S // 4, force=True)
    day2 = pq.ParquetFile(tmp_path / "book" / "date=2026-08-10" / "BTC-USD.parquet")
    assert day2.metadata.num_row_groups == 3 and day2.metadata.num_rows == 9  # 0 .. +2 s every 250 ms
    assert _book(tmp_path).equals(whole)
