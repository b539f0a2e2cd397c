"""The partitioned atomic Parquet writer and the CSV export."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mktpred.convert.csv_export import export_csv
from mktpred.store.schemas import EVENTS, MESSAGES
from mktpred.store.writer import PartitionedWriter

MIDNIGHT = 1_786_320_000_000_000_000  # 2026-08-10T00:00:00Z


def messages(times: list[int | None], recv: list[int | None], seqs: list[int]) -> pa.Table:
    n = len(seqs)
    return pa.table({
        "recv_time": pa.array(recv, pa.int64()).cast(MESSAGES.field("recv_time").type),
        "time": pa.array(times, pa.int64()).cast(MESSAGES.field("time").type),
        "conn": ["c"] * n, "seq": pa.array(seqs, pa.int64()), "channel": ["l2_data"] * n,
        "n_events": pa.array([1] * n, pa.int32()), "n_rows": pa.array([0] * n, pa.int32()),
    }, schema=MESSAGES)


def test_rows_split_by_utc_date_in_order_and_invisible_until_commit(tmp_path: Path) -> None:
    """Rows go to the partition of their UTC date, keep their order, and appear only at commit."""
    w = PartitionedWriter(tmp_path, "seg", row_group_rows=2)
    w.write("messages", messages([MIDNIGHT - 2, MIDNIGHT + 1, MIDNIGHT - 1, None], [0, 0, 0, MIDNIGHT + 9],
                                 [1, 2, 3, 4]))
    w.write("messages", messages([MIDNIGHT - 5], [0], [5]))
    assert not list(tmp_path.rglob("*.parquet")), "nothing final before commit"
    outputs = w.commit()
    assert outputs == ["messages/date=2026-08-09/seg.parquet", "messages/date=2026-08-10/seg.parquet"]
    day1 = pq.read_table(tmp_path / outputs[0])
    day2 = pq.ParquetFile(tmp_path / outputs[1])
    assert day1.column("seq").to_pylist() == [1, 3, 5]
    assert day2.read().column("seq").to_pylist() == [2, 4]  # seq 4: no time, partitioned by recv_time
    assert pq.ParquetFile(tmp_path / outputs[0]).metadata.num_row_groups == 2  # bounded row groups
    assert w.rows == {"messages": 5} and not list(tmp_path.rglob("*.tmp"))


def test_commit_removes_files_an_earlier_conversion_left(tmp_path: Path) -> None:
    """Reconverting a source whose rows moved to another date leaves no stale file behind."""
    w = PartitionedWriter(tmp_path, "seg")
    w.write("messages", messages([MIDNIGHT + 1], [0], [1]))
    old = w.commit()
    other = PartitionedWriter(tmp_path, "seg-other")  # a different source: must survive
    other.write("messages", messages([MIDNIGHT + 1], [0], [1]))
    kept = other.commit()
    w2 = PartitionedWriter(tmp_path, "seg")
    w2.write("messages", messages([MIDNIGHT - 1], [0], [1]))
    new = w2.commit()
    assert not (tmp_path / old[0]).exists() and (tmp_path / new[0]).exists() and (tmp_path / kept[0]).exists()


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    """Abort removes the temporary files."""
    w = PartitionedWriter(tmp_path, "seg", row_group_rows=1)
    w.write("messages", messages([MIDNIGHT], [0], [1]))
    assert list(tmp_path.rglob("*.tmp"))
    w.abort()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_rows_without_any_time_are_refused(tmp_path: Path) -> None:
    """A row with neither time nor recv_time cannot be partitioned."""
    w = PartitionedWriter(tmp_path, "seg")
    with pytest.raises(ValueError, match="without a timestamp"):
        w.write("messages", messages([None], [None], [1]))


def test_csv_timestamps_are_iso_utc_with_nine_digits_whatever_the_zone(tmp_path: Path) -> None:
    """CSV: header row, timestamps like 2026-08-09T21:05:48.228568804Z even with TZ set elsewhere."""
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        w = PartitionedWriter(tmp_path / "store", "seg")
        ev = pa.table({"recv_time": [1_786_309_548_228_568_804, MIDNIGHT - 1], "time": [1_786_309_548_228_568_804,
                                                                                       MIDNIGHT - 1],
                       "conn": ["c1", "c,2"], "event": ["open", "gap"], "expected": [None, 5], "got": [None, 7],
                       "detail": ['{"url":"x"}', None]})
        ev = ev.cast(EVENTS)
        w.write("events", ev)
        outputs = w.commit()
        csvs = export_csv(tmp_path / "store", outputs, tmp_path / "csv")
    finally:
        if old_tz is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old_tz
        time.tzset()
    assert csvs == ["events/date=2026-08-09/seg.csv"]
    with open(tmp_path / "csv" / csvs[0], newline="") as fh:
        got = list(csv.reader(fh))
    assert got[0] == EVENTS.names
    assert got[1] == ["2026-08-09T21:05:48.228568804Z", "2026-08-09T21:05:48.228568804Z", "c1", "open", "", "",
                      '{"url":"x"}']
    assert got[2][:2] == ["2026-08-09T23:59:59.999999999Z"] * 2 and got[2][2] == "c,2"
    assert not list((tmp_path / "csv").rglob("*.tmp"))
    assert pc.sum(pq.read_table(tmp_path / "store" / outputs[0]).column("got")).as_py() == 7
