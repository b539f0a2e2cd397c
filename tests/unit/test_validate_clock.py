"""Sequence is judged by (conn, seq) in record order: a wall clock that steps back is a clock event
(the ``clock`` warning), never a reversal, while a real reversal still fails ``sequence``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mktpred.testing.store import NS_PER_S, ConnSpec, SyntheticStore, write_synthetic_store
from mktpred.validate import Status, validate_store
from mktpred.validate.frames import record_order
from mktpred.validate.inventory import DataFile

MIDNIGHT = 1763769600 * NS_PER_S  # 2025-11-22T00:00:00Z


def build(tmp_path: Path) -> SyntheticStore:
    return write_synthetic_store(tmp_path / "parquet", [ConnSpec("c1", MIDNIGHT + 10 * NS_PER_S, 40)],
                                 raw_dir=tmp_path / "raw")


def messages_file(store: SyntheticStore) -> Path:
    return next((store.root / "messages").rglob("*.parquet"))


def shift_recv(path: Path, from_row: int, by_ns: int) -> pa.Table:
    """Move ``recv_time`` of every row from ``from_row`` on by ``by_ns`` (the rows stay in order)."""
    table = pq.read_table(path)
    recv = table.column("recv_time").cast(pa.int64()).to_numpy().copy()
    recv[from_row:] += by_ns
    idx = table.schema.get_field_index("recv_time")
    table = table.set_column(idx, table.schema.field(idx), pa.array(recv).cast(table.schema.field(idx).type))
    pq.write_table(table, path, compression="zstd", write_page_checksum=True)
    return table


def test_clock_step_back_is_a_clock_warning_not_a_reversal(tmp_path: Path) -> None:
    """recv_time jumping back 3 s mid-connection: sequence passes, clock warns with the step and time."""
    store = build(tmp_path)
    victim = messages_file(store)
    table = pq.read_table(victim)
    row = 300
    before = table.column("recv_time").cast(pa.int64())[row - 1].as_py()
    after = table.column("recv_time").cast(pa.int64())[row].as_py() - 3 * NS_PER_S
    shift_recv(victim, row, -3 * NS_PER_S)
    report = validate_store(store.root, raw_dir=store.raw_dir)
    assert report.check("sequence").status is Status.PASS, report.check("sequence").details
    assert report.gaps_total == 0
    clock = report.check("clock")
    assert clock.status is Status.WARN and clock.count == 1
    step_s = (before - after) / 1e9
    assert f"stepped back {step_s:,.3f} s" in clock.locations[0]
    assert clock.locations[0].startswith("messages/date=2025-11-22/")
    assert "conn c1" in clock.details
    assert report.ok  # a warning: exit 0


def test_clean_store_clock_passes(tmp_path: Path) -> None:
    """A clean store's clock check passes and counts every frame."""
    store = build(tmp_path)
    report = validate_store(store.root)
    assert report.check("clock").status is Status.PASS
    assert report.check("clock").checked == store.rows["messages"]


def test_reversal_in_record_order_still_fails_with_ordered_receive_times(tmp_path: Path) -> None:
    """Two frames recorded in the wrong sequence order fail sequence even though recv_time is monotone."""
    store = build(tmp_path)
    victim = messages_file(store)
    table = pq.read_table(victim)
    seq = table.column("seq").to_pylist()
    seq[50], seq[51] = seq[51], seq[50]
    table = table.set_column(table.schema.get_field_index("seq"), "seq", pa.array(seq, pa.int64()))
    pq.write_table(table, victim, compression="zstd", write_page_checksum=True)
    assert pc.all(pc.greater_equal(table.column("recv_time")[1:], table.column("recv_time")[:-1])).as_py()
    report = validate_store(store.root)
    assert {c.name for c in report.failed} == {"sequence"}
    assert "1 reversals" in report.check("sequence").details
    assert report.check("clock").status is Status.PASS


def test_record_order_sorts_by_segment_then_date_then_part(tmp_path: Path) -> None:
    """Files sort by their source segment (not a CSV stem's hash), then date, then part number."""
    def f(rel: str, segment: str) -> DataFile:
        table, date_dir, _ = rel.split("/")
        d = DataFile(tmp_path / rel, rel, table, date_dir.removeprefix("date="), 0)
        d.segment = segment
        return d

    files = [
        f("messages/date=2026-08-10/coinbase_20260809T235900Z_ffff0000.parquet", "/csv/coinbase_20260809T235900Z"),
        f("messages/date=2026-08-09/coinbase_20260809T235900Z_0000ffff-1.parquet", "/csv/coinbase_20260809T235900Z"),
        f("messages/date=2026-08-09/coinbase_20260809T235900Z_0000ffff.parquet", "/csv/coinbase_20260809T235900Z"),
        f("messages/date=2026-08-10/coinbase_20260810T000000Z.parquet", "/raw/coinbase_20260810T000000Z.jsonl"),
    ]
    ordered = [x.rel for x in sorted(reversed(files), key=record_order)]
    assert ordered == [files[2].rel, files[1].rel, files[0].rel, files[3].rel]
