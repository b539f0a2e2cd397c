"""The store's Python read API: listing, reading with pruning, DuckDB/pandas faces, level2 frames."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mktpred.coinbase.timestamps import parse_rfc3339_ns, utc_date
from mktpred.errors import DataError, UsageError
from mktpred.store import Store, open_store, to_ns
from mktpred.store.schemas import TABLE_SCHEMAS

T0 = parse_rfc3339_ns("2026-08-09T23:59:59.5Z")
MS = 1_000_000

# (conn, seq, time, is_snapshot, product, [(side, price, size), ...])
Frame = tuple[str, int, int, bool, str, list[tuple[str, float, float]]]


def write_l2(root: Path, frames: list[Frame], stem: str = "seg", row_group_size: int | None = None) -> None:
    """Write frames to the l2 table, one file per UTC day, rows in the given order."""
    by_day: dict[str, list[dict[str, Any]]] = {}
    for conn, seq, t, snap, product, levels in frames:
        for side, price, size in levels:
            by_day.setdefault(utc_date(t), []).append(dict(
                recv_time=t + MS, time=t, event_time=t // 1000, conn=conn, seq=seq, product_id=product,
                is_snapshot=snap, side=side, price=price, size=size))
    for day, rows in by_day.items():
        d = root / "l2" / f"date={day}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=TABLE_SCHEMAS["l2"]), d / f"{stem}.parquet",
                       row_group_size=row_group_size)


def _two_day_store(root: Path) -> None:
    frames: list[Frame] = [
        ("c1", 1, T0 - 500 * MS, True, "BTC-USD", [("bid", 100.0, 1.0), ("ask", 101.0, 2.0)]),
        ("c1", 2, T0 - 400 * MS, True, "ETH-USD", [("bid", 10.0, 1.0), ("ask", 11.0, 1.0)]),
        ("c1", 3, T0 + 600 * MS, False, "BTC-USD", [("bid", 100.5, 3.0)]),  # next day
        ("c1", 4, T0 + 700 * MS, False, "ETH-USD", [("ask", 10.5, 4.0)]),
    ]
    write_l2(root, frames)


def test_listing_tables_dates_products(tmp_path: Path) -> None:
    """A store lists its tables, date partitions (optionally in a range) and products."""
    _two_day_store(tmp_path)
    store = open_store(tmp_path)
    assert store.tables() == ["l2"]
    assert store.dates("l2") == ["2026-08-09", "2026-08-10"]
    assert store.dates("l2", start="2026-08-10") == ["2026-08-10"]
    assert store.dates("l2", end="2026-08-10") == ["2026-08-09"]
    assert store.products("l2") == ["BTC-USD", "ETH-USD"]
    assert store.products("l2", start=T0 + 650 * MS) == ["ETH-USD"]


def test_read_filters_product_and_time(tmp_path: Path) -> None:
    """read() returns exactly the product's rows in [start, end), in store order, contract schema."""
    _two_day_store(tmp_path)
    store = Store(tmp_path)
    t = store.read("l2", products="BTC-USD")
    assert t.schema == TABLE_SCHEMAS["l2"]
    assert t.column("price").to_pylist() == [100.0, 101.0, 100.5]
    t = store.read("l2", products=["BTC-USD", "ETH-USD"], start=T0 - 400 * MS, end=T0 + 700 * MS)
    assert t.column("seq").to_pylist() == [2, 2, 3]
    t = store.read("l2", start="2026-08-10", columns=["seq", "time"])
    assert t.column_names == ["seq", "time"]
    assert t.column("time").cast(pa.int64()).to_pylist() == [T0 + 600 * MS, T0 + 700 * MS]


def test_reading_one_date_touches_only_that_dates_files(tmp_path: Path) -> None:
    """Partition pruning: with the other day's file corrupted, reading one day still works."""
    _two_day_store(tmp_path)
    bad = tmp_path / "l2" / "date=2026-08-09" / "seg.parquet"
    bad.write_bytes(b"not parquet at all")
    store = open_store(tmp_path)
    assert store.files("l2", "2026-08-10", "2026-08-11") == [tmp_path / "l2" / "date=2026-08-10" / "seg.parquet"]
    assert store.read("l2", start="2026-08-10").num_rows == 2
    assert store.relation("l2", start="2026-08-10").count("*").fetchall() == [(2,)]
    assert [f.seq for f in store.l2_frames("BTC-USD", start="2026-08-10")] == [3]
    with pytest.raises(DataError, match=r"(?i)parquet"):  # a typed error naming the table, not an Arrow one
        store.read("l2")


def test_relation_and_pandas_faces(tmp_path: Path) -> None:
    """The DuckDB relation and the pandas frame hold the same rows, nanoseconds kept."""
    _two_day_store(tmp_path)
    store = open_store(tmp_path)
    con = duckdb.connect()
    rel = store.relation("l2", products="ETH-USD", start=T0 - 400 * MS, con=con)
    rows = rel.order("seq, side").project("seq, side, price, epoch_ns(time)").fetchall()
    assert rows == [(2, "ask", 11.0, T0 - 400 * MS), (2, "bid", 10.0, T0 - 400 * MS),
                    (4, "ask", 10.5, T0 + 700 * MS)]
    df = store.to_pandas("l2", products="ETH-USD")
    assert str(df["time"].dtype) == "datetime64[ns, UTC]"
    assert df["time"].astype("int64").tolist() == [T0 - 400 * MS] * 2 + [T0 + 700 * MS]


def test_empty_and_missing(tmp_path: Path) -> None:
    """A table with nothing in range reads as an empty table; a missing store or column is a usage error."""
    _two_day_store(tmp_path)
    store = open_store(tmp_path)
    empty = store.read("l2", start="2030-01-01")
    assert empty.num_rows == 0 and empty.schema == TABLE_SCHEMAS["l2"]
    assert store.relation("ticker").count("*").fetchall() == [(0,)]
    with pytest.raises(UsageError, match="no column 'product_id'"):
        store.read("messages", products="BTC-USD")
    with pytest.raises(UsageError, match="no Parquet store"):
        open_store(tmp_path / "nope")


def test_l2_frames_in_conn_seq_order_with_frame_rows_kept(tmp_path: Path) -> None:
    """Frames come grouped by conn and ordered by seq; rows keep their order; snapshots are marked."""
    levels = [("bid", 100.0 - i, float(i + 1)) for i in range(5)] + [("ask", 101.0 + i, 1.0) for i in range(5)]
    frames: list[Frame] = [
        ("a", 0, T0, True, "BTC-USD", levels),
        ("a", 2, T0 + 2 * MS, False, "BTC-USD", [("ask", 101.0, 0.0), ("bid", 100.0, 9.0)]),
        ("a", 1, T0 + 1 * MS, False, "BTC-USD", [("bid", 99.0, 0.0)]),  # out of order in the file
        ("a", 3, T0 + 3 * MS, False, "ETH-USD", [("bid", 1.0, 1.0)]),
        ("a", 4, T0 + 3 * MS, False, "BTC-USD", [("bid", 1.0, 1.0)]),
    ]
    write_l2(tmp_path, frames, stem="seg1")
    write_l2(tmp_path, [("b", 7, T0 + 4 * MS, True, "BTC-USD", [("bid", 5.0, 1.0), ("ask", 6.0, 1.0)])],
             stem="seg2")
    got = list(open_store(tmp_path).l2_frames("BTC-USD"))
    assert [(f.conn, f.seq, f.is_snapshot) for f in got] == [("a", 0, True), ("a", 1, False), ("a", 2, False),
                                                              ("a", 4, False), ("b", 7, True)]
    assert got[0].price.tolist() == [p for _, p, _ in levels]
    assert got[0].side.tolist() == ["bid"] * 5 + ["ask"] * 5
    assert got[2].price.tolist() == [101.0, 100.0] and got[2].size.tolist() == [0.0, 9.0]
    assert got[2].time == T0 + 2 * MS and len(got[2]) == 2


def test_l2_batches_never_split_a_frame(tmp_path: Path) -> None:
    """With tiny row groups and batches, every batch still holds whole frames."""
    frames: list[Frame] = [
        ("a", s, T0 + s * MS, s == 0, "BTC-USD", [("bid", 100.0 + k, float(s)) for k in range(1 + s % 4)])
        for s in range(40)
    ]
    write_l2(tmp_path, frames, row_group_size=3)
    batches = list(open_store(tmp_path).l2_batches("BTC-USD", batch_rows=5))
    assert len(batches) > 5
    seqs = [int(s) for b in batches for s in b.frame_seq]
    assert seqs == list(range(40))
    for b in batches:
        for i, s in enumerate(b.frame_seq.tolist()):
            assert b.starts[i + 1] - b.starts[i] == 1 + s % 4
            assert np.all(b.size[b.starts[i]:b.starts[i + 1]] == float(s))


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-08-09", parse_rfc3339_ns("2026-08-09T00:00:00Z")),
    ("2026-08-09T21:05:48.228568804Z", parse_rfc3339_ns("2026-08-09T21:05:48.228568804Z")),
    ("2026-08-09T21:05:48", parse_rfc3339_ns("2026-08-09T21:05:48Z")),
    (dt.datetime(2026, 8, 9, 21, 5, 48, 5, tzinfo=dt.UTC), parse_rfc3339_ns("2026-08-09T21:05:48.000005Z")),
    (dt.date(2026, 8, 9), parse_rfc3339_ns("2026-08-09T00:00:00Z")),
    (np.datetime64("2026-08-09T21:05:48.000000001"), parse_rfc3339_ns("2026-08-09T21:05:48.000000001Z")),
    (12345, 12345),
    (None, None),
])
def test_time_bounds(value: Any, expected: int | None) -> None:
    """Time bounds accept strings, datetimes, dates, numpy datetimes and integer nanoseconds."""
    assert to_ns(value) == expected


def test_bad_time_bound() -> None:
    """A value that is not a time is a usage error naming it."""
    with pytest.raises(UsageError, match="not a time: 'yesterday'"):
        to_ns("yesterday")


def test_row_groups_pruned_by_statistics(tmp_path: Path) -> None:
    """Level2 reads skip row groups whose time or product statistics rule them out."""
    from mktpred.store.reader import _row_groups

    frames: list[Frame] = [("a", s, T0 + s * MS, s == 0, "BTC-USD" if s < 10 else "ETH-USD",
                            [("bid", 1.0, 1.0), ("ask", 2.0, 1.0)]) for s in range(20)]
    write_l2(tmp_path, frames, row_group_size=10)  # 4 groups: BTC s 0-4, 5-9; ETH s 10-14, 15-19
    store = open_store(tmp_path)
    pf = pq.ParquetFile(store.files("l2")[0])
    assert pf.metadata.num_row_groups == 4
    assert _row_groups(pf, "BTC-USD", None, None) == [0, 1]
    assert _row_groups(pf, "ETH-USD", T0 + 16 * MS, None) == [3]
    assert _row_groups(pf, "BTC-USD", T0 + 5 * MS, T0 + 6 * MS) == [1]
    assert [f.seq for f in store.l2_frames("BTC-USD", T0 + 5 * MS, T0 + 7 * MS)] == [5, 6]
    assert [f.seq for f in store.l2_frames("ETH-USD", conns=["b"])] == []
