"""validate_store on a synthetic store: a clean store passes, and each kind of damage, done alone
to a clean store, fails exactly the check for it and names the file or range."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mktpred.errors import UsageError
from mktpred.testing.store import NS_PER_S, ConnSpec, SyntheticStore, write_synthetic_store
from mktpred.validate import Status, ValidationReport, validate_store

MIDNIGHT = 1763769600 * NS_PER_S  # 2025-11-22T00:00:00Z
D1, D2 = "2025-11-21", "2025-11-22"
ALL_CHECKS = {"readable", "schema", "manifest_outputs", "rows", "quarantine", "stray_files", "partitions", "nulls",
              "prices", "sizes", "sides", "duplicates", "sequence", "clock", "coverage", "heartbeats",
              "raw_converted", "raw_in_progress"}


def clean_conns(**second: object) -> list[ConnSpec]:
    """Two connections of one collector run: 23:58:00-00:00:30, then a reconnect at 00:00:32."""
    return [ConnSpec("20251121T235800Z-1", MIDNIGHT - 120 * NS_PER_S, 150),
            ConnSpec("20251122T000032Z-2", MIDNIGHT + 32 * NS_PER_S, 60, new_segment=False,
                     **second)]  # type: ignore[arg-type]


def build(tmp_path: Path, conns: list[ConnSpec] | None = None) -> SyntheticStore:
    return write_synthetic_store(tmp_path / "parquet", conns or clean_conns(), raw_dir=tmp_path / "raw")


def run(store: SyntheticStore, **kw: object) -> ValidationReport:
    return validate_store(store.root, raw_dir=store.raw_dir, **kw)  # type: ignore[arg-type]


def failing(report: ValidationReport) -> set[str]:
    return {c.name for c in report.failed}


def data_file(store: SyntheticStore, table: str, date: str) -> Path:
    files = sorted((store.root / table / f"date={date}").glob("*.parquet"))
    assert files, f"no {table} file on {date}"
    return files[-1]


def rel(store: SyntheticStore, path: Path) -> str:
    return path.relative_to(store.root).as_posix()


def rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    """Replace a data file by a changed copy (same writer options, same schema)."""
    table = pq.read_table(path)
    new = change(table).cast(table.schema)
    pq.write_table(new, path, compression="zstd", write_page_checksum=True)


def set_value(table: pa.Table, column: str, row: int, value: object) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    idx = table.schema.get_field_index(column)
    return table.set_column(idx, table.schema.field(idx), pa.array(values, table.schema.field(idx).type))


@pytest.fixture
def store(tmp_path: Path) -> SyntheticStore:
    """A clean two-connection store spanning UTC midnight, with its raw dir."""
    return build(tmp_path)


# -- clean -----------------------------------------------------------------------------------------

def test_clean_store_passes_every_check(store: SyntheticStore) -> None:
    """Every check runs and passes on a clean store; coverage covers both days fully."""
    report = run(store)
    assert {c.name for c in report.checks} == ALL_CHECKS
    assert [c for c in report.checks if c.status is not Status.PASS] == []
    assert report.ok and report.status is Status.PASS
    assert report.rows == store.rows
    assert report.files == len(store.files)
    assert {(r.product, r.date) for r in report.coverage} == {
        (p, d) for p in ("BTC-USD", "ETH-USD") for d in (D1, D2)}
    assert all(r.coverage == 1.0 and r.silences == 0 for r in report.coverage)
    frames = report.check("sequence").checked
    assert frames == store.rows["messages"]
    json.dumps(report.to_dict())  # the whole report is JSON


def test_coverage_numbers(store: SyntheticStore) -> None:
    """Coverage rows carry each day's span, rows per product and connections."""
    rows = {(r.product, r.date): r for r in run(store).coverage}
    first_day = rows[("BTC-USD", D1)]
    assert first_day.span_s == pytest.approx(120, abs=0.1)  # 23:58:00 .. midnight
    assert first_day.conns == 1
    second_day = rows[("BTC-USD", D2)]
    assert second_day.span_s == pytest.approx(92, abs=0.2)  # midnight .. 00:01:32
    assert second_day.conns == 2  # the reconnect is within the silence tolerance
    l2 = pq.read_table(store.root / "l2", filters=[("product_id", "=", "BTC-USD")])
    tickers = pq.read_table(store.root / "ticker", filters=[("product_id", "=", "BTC-USD")])
    trades = pq.read_table(store.root / "trades", filters=[("product_id", "=", "BTC-USD")])
    assert first_day.rows + second_day.rows == l2.num_rows + tickers.num_rows + trades.num_rows


# -- the damage kinds of the issue, each alone -----------------------------------------------------

def test_deleted_file(store: SyntheticStore) -> None:
    """A deleted output fails manifest_outputs alone, naming the file."""
    victim = data_file(store, "l2", D2)
    victim.unlink()
    report = run(store)
    assert failing(report) == {"manifest_outputs"}
    assert any(rel(store, victim) in loc and "missing" in loc for loc in report.check("manifest_outputs").locations)


def test_truncated_file_fails_readable_and_the_rest_goes_on(store: SyntheticStore) -> None:
    """A truncated file is unreadable (named); the other files are still checked."""
    victim = data_file(store, "l2", D2)
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    report = run(store)
    assert failing(report) == {"readable"}
    assert report.check("readable").locations[0].startswith(rel(store, victim) + ": cannot be read")
    other_l2 = data_file(store, "l2", D1)
    assert report.check("partitions").checked >= pq.read_metadata(other_l2).num_rows
    assert report.check("sequence").status is Status.PASS


def test_flipped_byte_in_a_data_page(store: SyntheticStore) -> None:
    """One byte flipped inside a data page is caught (page checksums) and names the file."""
    victim = data_file(store, "l2", D2)
    meta = pq.read_metadata(victim).row_group(0)
    chunk = max((meta.column(i) for i in range(meta.num_columns)), key=lambda c: c.total_compressed_size)
    end = (chunk.dictionary_page_offset or chunk.data_page_offset) + chunk.total_compressed_size
    offset = (chunk.data_page_offset + end) // 2
    data = bytearray(victim.read_bytes())
    data[offset] ^= 0x5A
    victim.write_bytes(bytes(data))
    report = run(store)
    assert failing(report) == {"readable"}
    assert rel(store, victim) in report.check("readable").locations[0]


def test_flipped_bytes_in_the_footer(store: SyntheticStore) -> None:
    """Garbage over the footer makes the file unreadable, named."""
    victim = data_file(store, "trades", D1)
    data = bytearray(victim.read_bytes())
    for i in range(len(data) - 200, len(data) - 8):
        data[i] ^= 0xFF
    victim.write_bytes(bytes(data))
    report = run(store)
    assert failing(report) == {"readable"}
    assert rel(store, victim) in report.check("readable").locations[0]


def test_dropped_rows(store: SyntheticStore) -> None:
    """Rows dropped from a file fail manifest_rows alone with the file and the difference."""
    victim = data_file(store, "l2", D2)
    rewrite(victim, lambda t: t.slice(0, t.num_rows - 5))
    report = run(store)
    assert failing(report) == {"rows"}
    loc = report.check("rows").locations[0]
    assert rel(store, victim) in loc and "(-5)" in loc


def test_inserted_sequence_gap(store: SyntheticStore) -> None:
    """Sequence numbers shifted by 3 after a frame: one gap listed with its range and time."""
    victim = data_file(store, "messages", D2)
    table = pq.read_table(victim)
    conn = table.column("conn")[500].as_py()
    first_seq = table.column("seq")[500].as_py()
    mask = pc.and_(pc.equal(table.column("conn"), conn), pc.greater_equal(table.column("seq"), first_seq))
    rewrite(victim, lambda t: t.set_column(3, "seq", pc.if_else(mask, pc.add(t.column("seq"), 3), t.column("seq"))))
    report = run(store)
    assert failing(report) == {"sequence"}
    assert report.gaps_total == 1
    gap = report.gaps[0]
    assert (gap.conn, gap.first, gap.last, gap.missing, gap.known) == (conn, first_seq, first_seq + 2, 3, False)
    assert gap.before_ns is not None and gap.after_ns is not None and gap.before_ns < gap.after_ns
    loc = report.check("sequence").locations[0]
    assert f"seq {first_seq}..{first_seq + 2} missing (3)" in loc and rel(store, victim) in loc


def test_row_shifted_into_the_wrong_partition(store: SyntheticStore) -> None:
    """A row whose time belongs to the day before its partition fails partitions alone."""
    victim = data_file(store, "l2", D2)
    wrong = pa.scalar(MIDNIGHT - NS_PER_S, pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
    rewrite(victim, lambda t: set_value(t, "time", 10, wrong))
    report = run(store)
    assert failing(report) == {"partitions"}
    loc = report.check("partitions").locations[0]
    assert loc.startswith(rel(store, victim)) and f"1 rows dated {D1} in partition date={D2}" in loc
    assert "2025-11-21T23:59:59.000000000Z" in loc


def test_null_in_a_required_column(store: SyntheticStore) -> None:
    """A null price fails nulls alone, with the file, column and row."""
    victim = data_file(store, "l2", D1)
    rewrite(victim, lambda t: set_value(t, "price", 7, None))
    report = run(store)
    assert failing(report) == {"nulls"}
    assert report.check("nulls").locations == [f"{rel(store, victim)}: 1 rows with price null (row 7)"]


def test_negative_size(store: SyntheticStore) -> None:
    """A negative size fails sizes alone, with the file, row and value."""
    victim = data_file(store, "l2", D2)
    rewrite(victim, lambda t: set_value(t, "size", 3, -1.0))
    report = run(store)
    assert failing(report) == {"sizes"}
    assert report.check("sizes").locations == [
        f"{rel(store, victim)}: 1 rows with size not >= 0 and finite (row 3 = -1.0)"]


def test_leftover_temporary_file(store: SyntheticStore) -> None:
    """A leftover .tmp file in a partition fails stray_files alone."""
    victim = data_file(store, "l2", D2)
    tmp = victim.with_name(victim.name + ".tmp")
    tmp.write_bytes(b"half a file")
    report = run(store)
    assert failing(report) == {"stray_files"}
    assert report.check("stray_files").locations == [f"{rel(store, tmp)}: leftover temporary file"]


def test_unconverted_raw_segment(store: SyntheticStore) -> None:
    """A sealed segment with no manifest entry fails raw_converted alone."""
    assert store.raw_dir is not None
    (store.raw_dir / "coinbase_20251122T120000Z.jsonl").write_text('{"recv_ns": 1, "conn": "x", "event": "open"}\n')
    report = run(store)
    assert failing(report) == {"raw_converted"}
    assert report.check("raw_converted").locations == [
        "coinbase_20251122T120000Z.jsonl: sealed segment not converted (45 bytes)"]


# -- more damage -----------------------------------------------------------------------------------

def test_duplicate_row(store: SyntheticStore) -> None:
    """A row overwritten by a copy of its neighbour fails duplicates alone, naming rows."""
    victim = data_file(store, "ticker", D2)

    def dup(t: pa.Table) -> pa.Table:
        return pa.concat_tables([t.slice(0, 21), t.slice(20, 1), t.slice(22)])

    rewrite(victim, dup)
    report = run(store)
    assert failing(report) == {"duplicates"}
    loc = report.check("duplicates").locations[0]
    assert rel(store, victim) in loc and "1 exact duplicate ticker rows" in loc and "row 20 = " in loc


def test_repeated_level_update_within_a_frame_is_not_a_duplicate(store: SyntheticStore) -> None:
    """Identical l2 rows inside one frame are legitimate (a level updated twice in one event)."""
    victim = data_file(store, "l2", D2)
    table = pq.read_table(victim)
    same_frame = next(i for i in range(1, 40) if table.column("seq")[i] == table.column("seq")[i - 1])
    rewrite(victim, lambda t: pa.concat_tables([t.slice(0, same_frame), t.slice(same_frame - 1, 1),
                                                t.slice(same_frame + 1)]))
    assert run(store).ok


def test_frame_written_twice_fails_rows(store: SyntheticStore) -> None:
    """An l2 frame's rows written twice (manifest updated to match) disagree with messages.n_rows."""
    victim = data_file(store, "l2", D2)
    table = pq.read_table(victim)
    seq = table.column("seq")[0]
    block = table.filter(pc.equal(table.column("seq"), seq))
    rewrite(victim, lambda t: pa.concat_tables([block, t]))
    manifest = json.loads((store.root / "_manifest.json").read_text())
    for entry in manifest["sources"].values():
        if rel(store, victim) in entry["outputs"]:
            entry["rows"]["l2"] += block.num_rows
    (store.root / "_manifest.json").write_text(json.dumps(manifest))
    report = run(store)
    assert failing(report) == {"rows"}
    assert report.check("rows").locations == [
        f"{rel(store, victim)}: {table.num_rows + block.num_rows:,} l2 rows, the frames of "
        f"{victim.stem}.jsonl in messages carried {table.num_rows:,} (+{block.num_rows})"]


def test_reversed_frames(store: SyntheticStore) -> None:
    """Two frames whose sequence numbers are swapped: a reversal, no gap."""
    victim = data_file(store, "messages", D1)

    def swap(t: pa.Table) -> pa.Table:
        seq = t.column("seq").to_pylist()
        seq[100], seq[101] = seq[101], seq[100]
        return t.set_column(3, "seq", pa.array(seq, pa.int64()))

    rewrite(victim, swap)
    report = run(store)
    assert failing(report) == {"sequence"}
    assert report.gaps_total == 0
    assert "1 reversals" in report.check("sequence").details
    assert report.check("sequence").locations[0].startswith(f"{rel(store, victim)}: conn ")
    assert "received after" in report.check("sequence").locations[0]


def test_duplicate_frame_sequence(store: SyntheticStore) -> None:
    """A frame number received twice is a duplicate (and the number it replaced a gap)."""
    victim = data_file(store, "messages", D1)
    table = pq.read_table(victim)
    seq = table.column("seq")[200].as_py()
    rewrite(victim, lambda t: set_value(t, "seq", 201, seq))
    report = run(store)
    assert failing(report) == {"sequence"}
    text = " ".join(report.check("sequence").locations)
    assert f"seq {seq} received twice" in text and f"seq {seq + 1} missing (1)" in text


@pytest.mark.parametrize(("column", "value", "check"), [
    ("price", float("nan"), "prices"), ("price", 0.0, "prices"), ("price", float("inf"), "prices"),
    ("size", float("nan"), "sizes"), ("side", "offer", "sides")])
def test_bad_values(store: SyntheticStore, column: str, value: object, check: str) -> None:
    """NaN, zero and infinite prices, NaN sizes and sides other than bid/ask each fail their check."""
    victim = data_file(store, "l2", D1)
    rewrite(victim, lambda t: set_value(t, column, 5, value))
    report = run(store)
    assert failing(report) == {check}
    assert report.check(check).locations[0].startswith(f"{rel(store, victim)}: 1 rows with {column}")


@pytest.mark.parametrize(("field", "message"), [
    (pa.field("time", pa.timestamp("us", tz="UTC")), "time is timestamp[us, tz=UTC], expected timestamp[ns, tz=UTC]"),
    (pa.field("time", pa.timestamp("ns")), "time is timestamp[ns], expected timestamp[ns, tz=UTC]"),
    (pa.field("price", pa.float32()), "price is float, expected double"),
])
def test_schema_mismatch(store: SyntheticStore, field: pa.Field, message: str) -> None:
    """A file whose column type, unit or time zone differs fails schema alone, saying what differs."""
    victim = data_file(store, "l2", D1)
    table = pq.read_table(victim)
    schema = table.schema.set(table.schema.get_field_index(field.name), field)
    pq.write_table(table.cast(schema, safe=False), victim, compression="zstd")
    report = run(store)
    assert failing(report) == {"schema"}
    assert report.check("schema").locations == [f"{rel(store, victim)}: {message}"]


def test_missing_column(store: SyntheticStore) -> None:
    """A file missing a column fails schema, naming the column."""
    victim = data_file(store, "trades", D2)
    pq.write_table(pq.read_table(victim).drop_columns(["trade_id"]), victim)
    report = run(store)
    assert failing(report) == {"schema"}
    assert "missing trade_id" in report.check("schema").locations[0]


def test_file_not_in_manifest(store: SyntheticStore) -> None:
    """A data file no conversion recorded fails manifest_outputs (and its rows are not counted)."""
    src = data_file(store, "ticker", D2)
    extra = src.with_name("coinbase_20251122T090000Z.parquet")
    extra.write_bytes(src.read_bytes())
    report = run(store)
    assert "manifest_outputs" in failing(report)
    assert f"{rel(store, extra)}: not in the manifest" in report.check("manifest_outputs").locations[0]


def test_manifest_missing_or_invalid(store: SyntheticStore) -> None:
    """No manifest, or an invalid one, fails manifest_outputs; the data checks still run."""
    manifest = store.root / "_manifest.json"
    manifest.write_text("{not json")
    report = run(store)
    assert "manifest_outputs" in failing(report)
    assert "manifest is not valid" in report.check("manifest_outputs").details
    assert report.check("sequence").status is Status.PASS
    manifest.unlink()
    report = run(store)
    assert report.check("manifest_outputs").locations[0].startswith("_manifest.json: missing")


def test_unknown_table_folder_is_a_warning(store: SyntheticStore) -> None:
    """A folder that is not a contract table is listed as a warning, not checked."""
    (store.root / "features").mkdir()
    report = run(store)
    assert report.ok
    assert report.check("stray_files").status is Status.WARN


def test_stray_files(store: SyntheticStore) -> None:
    """A non-Parquet file in a partition and a file outside any partition are stray."""
    (store.root / "l2" / f"date={D1}" / "notes.txt").write_text("x")
    (store.root / "l2" / "loose.parquet").write_bytes(b"x")
    report = run(store)
    assert failing(report) == {"stray_files"}
    assert sorted(report.check("stray_files").locations) == [
        f"l2/date={D1}/notes.txt: not a Parquet data file", "l2/loose.parquet: file outside a date= partition"]


# -- warnings: known gaps, silences, heartbeats, in-progress segments ------------------------------

def test_known_gap_is_a_warning(tmp_path: Path) -> None:
    """A gap the collector recorded as a gap event is reported as known: warn, exit-worthy 0."""
    report = run(build(tmp_path, clean_conns(gaps=((300, 4),))))
    assert report.ok
    assert report.check("sequence").status is Status.WARN
    assert [(g.first, g.last, g.known) for g in report.gaps] == [(300, 303, True)]
    assert "1 known gaps recorded by the collector (4 frames)" in report.check("sequence").details


def test_unrecorded_gap_fails(tmp_path: Path) -> None:
    """The same gap without the collector's event fails."""
    report = run(build(tmp_path, clean_conns(gaps=((300, 4),), gaps_recorded=False)))
    assert failing(report) == {"sequence"}
    assert [(g.first, g.last, g.known) for g in report.gaps] == [(300, 303, False)]


def test_reconnect_silence_is_listed(tmp_path: Path) -> None:
    """A 20 s disconnect between two connections is a silence with start, end and cause."""
    conns = [ConnSpec("a", MIDNIGHT + 10 * NS_PER_S, 30),
             ConnSpec("b", MIDNIGHT + 60 * NS_PER_S, 30, new_segment=False)]
    report = run(build(tmp_path, conns))
    assert report.ok and report.check("coverage").status is Status.WARN
    assert report.silences_total == 2  # one per product
    s = report.silences[0]
    assert 19.9 < s.seconds < 20.1 and s.cause == "collector events: close, open, subscribed"
    row = next(r for r in report.coverage if r.product == s.product)
    assert row.silences == 1
    assert row.coverage == pytest.approx(60 / 80, abs=0.01)
    assert row.longest_silence_s == pytest.approx(s.seconds)


def test_silence_on_an_open_connection_and_missing_heartbeats(tmp_path: Path) -> None:
    """12 s without any frame on a live connection: a silence and ~12 missing heartbeat seconds."""
    conns = [ConnSpec("a", MIDNIGHT + 10 * NS_PER_S, 60, silent=((20.0, 32.0),))]
    report = run(build(tmp_path, conns), max_silence_s=5.0)
    assert report.ok
    assert report.check("coverage").status is Status.WARN
    assert report.silences[0].cause == "no frames on an open connection"
    hb = report.check("heartbeats")
    assert hb.status is Status.WARN
    assert "seconds without a heartbeat" in hb.locations[0]
    assert 11 <= next(r for r in report.coverage).missing_heartbeat_s <= 12
    assert run(build(tmp_path / "again", conns), max_silence_s=15.0).check("coverage").status is Status.PASS


def test_part_segment_listed_in_progress(store: SyntheticStore) -> None:
    """A .part segment is listed as in progress and is not a failure."""
    assert store.raw_dir is not None
    (store.raw_dir / "coinbase_20251122T000200Z.jsonl.part").write_text("{}\n")
    report = run(store)
    assert report.ok
    assert report.in_progress == ["coinbase_20251122T000200Z.jsonl.part: in progress (3 bytes, not converted yet)"]
    assert report.check("raw_in_progress").status is Status.PASS


def test_changed_raw_segment_fails(store: SyntheticStore) -> None:
    """A sealed segment that grew after conversion is not fully converted."""
    assert store.raw_dir is not None
    seg = sorted(store.raw_dir.glob("*.jsonl"))[0]
    with open(seg, "a") as fh:
        fh.write("{}\n")
    report = run(store)
    assert failing(report) == {"raw_converted"}
    assert "changed since it was converted" in report.check("raw_converted").locations[0]


def test_parts_of_one_segment_are_checked_together(tmp_path: Path) -> None:
    """Files split into -k parts are one segment: rows and duplicates are judged across parts."""
    store = write_synthetic_store(tmp_path / "parquet", clean_conns(), raw_dir=tmp_path / "raw",
                                  max_rows_per_file=50)
    parts = sorted((store.root / "ticker" / f"date={D2}").glob("*-1.parquet"))
    assert parts
    report = run(store)
    assert report.ok and report.check("duplicates").status is Status.PASS
    first = parts[0].with_name(parts[0].name.replace("-1.parquet", ".parquet"))
    row = pq.read_table(first).slice(0, 1)
    rewrite(parts[0], lambda t: pa.concat_tables([row, t.slice(1)]))
    assert failing(run(store)) == {"duplicates"}


# -- usage errors ----------------------------------------------------------------------------------

def test_missing_store_is_a_usage_error(tmp_path: Path) -> None:
    """No directory, or an empty one, is a UsageError (exit 2), not a report."""
    with pytest.raises(UsageError, match="no Parquet store"):
        validate_store(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no Parquet store"):
        validate_store(tmp_path / "empty")


def test_missing_raw_dir_is_a_usage_error(store: SyntheticStore, tmp_path: Path) -> None:
    """--raw-dir naming a missing folder is a UsageError."""
    with pytest.raises(UsageError, match="raw directory not found"):
        validate_store(store.root, raw_dir=tmp_path / "nope")


def test_unreadable_permissions_are_reported(store: SyntheticStore) -> None:
    """A file that cannot be opened is unreadable, named (skipped when running as root)."""
    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    victim = data_file(store, "ticker", D1)
    victim.chmod(0)
    try:
        report = run(store)
    finally:
        victim.chmod(0o644)
    assert failing(report) == {"readable"}
    assert rel(store, victim) in report.check("readable").locations[0]
