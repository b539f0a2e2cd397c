"""The features build across the UTC day boundary: a new day recomputes the previous day's labels."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mktpred.coinbase.timestamps import parse_rfc3339_ns, utc_date
from mktpred.features import FeatureSpec
from mktpred.features.build import build_features
from mktpred.store import open_store
from mktpred.store.schemas import TABLE_SCHEMAS

MS = 1_000_000
S = 1000 * MS
MIDNIGHT = parse_rfc3339_ns("2026-08-10T00:00:00Z")
SPEC = FeatureSpec(S, (S, 2 * S))


def _l2(seq: int, t: int, levels: list[tuple[str, float, float]], snap: bool = False) -> list[dict[str, Any]]:
    return [dict(recv_time=t, time=t, event_time=t // 1000, conn="c", seq=seq, product_id="BTC-USD",
                 is_snapshot=snap, side=s, price=p, size=q) for s, p, q in levels]


def _write(root: Path, rows: list[dict[str, Any]], name: str) -> None:
    d = root / "l2" / f"date={utc_date(rows[0]['time'])}"
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=TABLE_SCHEMAS["l2"]), d / f"{name}.parquet")


def _days() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A book from 23:59:57.5 on, the bid moving 0.5 every second, crossing into 2026-08-10."""
    day1 = _l2(1, MIDNIGHT - 2500 * MS, [("bid", 100.0, 1.0), ("ask", 101.0, 1.0)], snap=True)
    day2: list[dict[str, Any]] = []
    for k in range(1, 6):
        t = MIDNIGHT - 2500 * MS + k * S
        rows = _l2(k + 1, t, [("bid", 100.0 + 0.5 * k, 1.0), ("bid", 100.0 + 0.5 * (k - 1), 0.0)])
        (day1 if t < MIDNIGHT else day2).extend(rows)
    return day1, day2


def _features(root: Path) -> pa.Table:
    return open_store(root).read("features").sort_by("time")


def test_new_day_completes_previous_labels(tmp_path: Path) -> None:
    """Day 1 alone: its last labels are null; after day 2 arrives they are filled, and all equals a one-shot run."""
    day1, day2 = _days()
    inc = tmp_path / "inc"
    _write(inc, day1, "a")
    r1 = build_features(inc, SPEC)
    assert r1.products[0].dates_written == ["2026-08-09"]
    first = _features(inc)
    assert [int(x) for x in first.column("time").cast(pa.int64()).to_pylist()] == \
        [MIDNIGHT - 2 * S, MIDNIGHT - S]
    assert first.column("fwd_ret_1s").to_pylist()[-1] is None
    _write(inc, day2, "b")
    r2 = build_features(inc, SPEC)
    assert r2.products[0].dates_written == ["2026-08-09", "2026-08-10"]
    got = _features(inc)
    one = tmp_path / "one"
    _write(one, day1, "a")
    _write(one, day2, "b")
    build_features(one, SPEC)
    want = _features(one)
    assert got.equals(want)
    mids = got.column("mid").to_pylist()
    assert mids == [100.5, 100.75, 101.0, 101.25, 101.5]  # the bid walks up (a crossed book is not "fixed")
    lab = got.column("fwd_ret_1s").to_pylist()
    assert lab[1] is not None and lab[-1] is None  # 23:59:59's label now looks into the new day
    assert (inc / "features" / "date=2026-08-10").is_dir()
    shutil.rmtree(one)


def test_store_gap_makes_rows_invalid(tmp_path: Path) -> None:
    """A seq jump in messages invalidates the book until the next snapshot: those rows are valid = false."""
    root = tmp_path / "pq"
    t0 = MIDNIGHT + 100 * MS
    book = [("bid", 100.0, 1.0), ("ask", 101.0, 1.0)]
    rows = (_l2(1, t0, book, snap=True) + _l2(2, t0 + 1 * S, [("bid", 100.0, 2.0)])
            + _l2(5, t0 + 2 * S, [("bid", 100.0, 3.0)]) + _l2(6, t0 + 3 * S, book, snap=True)
            + _l2(7, t0 + 4 * S, [("bid", 100.0, 4.0)]) + _l2(8, t0 + 5 * S, [("bid", 100.0, 5.0)]))
    _write(root, rows, "a")
    d = root / "messages" / "date=2026-08-10"
    d.mkdir(parents=True)
    msgs = [dict(recv_time=t0 + i * MS, time=t0 + i * MS, conn="c", seq=s, channel="l2_data", n_events=1, n_rows=1)
            for i, s in enumerate([1, 2, 5, 6, 7, 8])]
    pq.write_table(pa.Table.from_pylist(msgs, schema=TABLE_SCHEMAS["messages"]), d / "a.parquet")
    build_features(root, SPEC)
    got = _features(root)
    # grid 1s..5s: the first interval began before the snapshot; the gap before seq 5 (at 2.1 s)
    # spoils 3 s; the snapshot at 3.1 s makes 4 s's interval half invalid; 5 s is valid again
    assert got.column("valid").to_pylist() == [False, True, False, False, True]
    assert got.column("fwd_ret_1s").to_pylist() == [0.0, None, None, 0.0, None]
