"""csv2parquet building blocks: timestamp parsing, format recognition, types, inputs, line finding."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mktpred.errors import DataError, UsageError
from mktpred.ingest.csv_formats import (
    GenericLayout,
    MktpredLayout,
    TardisLayout,
    epoch_to_ns,
    generic_types,
    parse_iso_ns,
    parse_schema_option,
    recognise,
    unify,
)
from mktpred.ingest.csv_formats import Sniffed as S
from mktpred.ingest.csv_import import find_inputs
from mktpred.ingest.csv_read import locate_rows, read_header, strip_csv_suffix
from mktpred.store.schemas import TABLE_SCHEMAS


def test_iso_timestamps_keep_nanoseconds_and_apply_offsets() -> None:
    """Nine digits kept; Z, +02:00 and +0200 applied; no zone is UTC; a bare date is midnight; junk is reported."""
    arr = pa.array(["2026-08-09T21:05:48.228568804Z", "2026-08-09T23:05:48.5+02:00", "2026-08-09 21:05:48",
                    "2026-08-09", None, "2026-13-01T00:00:00Z", "soon", "2026-08-09T23:05:48+0200"])
    ts, bad = parse_iso_ns(arr)
    assert bad.tolist() == [5, 6]
    assert ts.cast(pa.int64()).to_pylist() == [1786309548228568804, 1786309548500000000, 1786309548000000000,
                                               1786233600000000000, None, None, None, 1786309548000000000]


def test_epoch_conversion_rejects_values_nanoseconds_cannot_hold() -> None:
    """Microseconds x1000; values past year 2262 in ns are reported, not wrapped around."""
    ts, bad = epoch_to_ns(pa.array([1786309548228568, 99999999999999999, None, -1], pa.int64()), 1_000)
    assert bad.tolist() == [1]
    assert ts.cast(pa.int64()).to_pylist() == [1786309548228568000, None, None, -1000]


@given(st.integers(min_value=0, max_value=(2**63 - 1) // 1000))
def test_epoch_microseconds_round_trip(us: int) -> None:
    """Any representable microsecond count comes back exactly as nanoseconds."""
    ts, bad = epoch_to_ns(pa.array([us], pa.int64()), 1_000)
    assert bad.size == 0 and ts.cast(pa.int64())[0].as_py() == us * 1000


def test_headers_are_recognised_in_any_column_order() -> None:
    """Each contract table's columns and each Tardis header map to their layout; near misses do not."""
    for table, schema in TABLE_SCHEMAS.items():
        layout = recognise(list(reversed(schema.names)))
        assert isinstance(layout, MktpredLayout) and layout.table == table
    book = recognise("exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount".split(","))
    assert isinstance(book, TardisLayout) and (book.kind, book.table) == ("incremental_book_L2", "l2")
    quotes = recognise("exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount".split(","))
    assert quotes is not None and quotes.table == "ticker"
    assert recognise("exchange,symbol,timestamp,local_timestamp,id,side,price".split(",")) is None
    assert recognise([*TABLE_SCHEMAS["l2"].names, "extra"]) is None


def test_types_unify_and_overrides_win() -> None:
    """Across files ints widen to float64 and anything else mixed becomes text; --schema has the last word."""
    assert unify("int64", "float64") == "float64" and unify("bool", "int64") == "string"
    types = generic_types([S(",", (("a", "int64"), ("b", "bool"))), S(",", (("a", "float64"), ("c", "date")))],
                          {"b": "string"})
    assert types == [("a", "float64"), ("b", "string"), ("c", "date")]
    assert parse_schema_option("a=int, b = Timestamp,c=double") == {"a": "int64", "b": "timestamp", "c": "float64"}
    with pytest.raises(UsageError, match="COL=TYPE"):
        parse_schema_option("a")


def test_generic_layout_key_changes_with_types() -> None:
    """The manifest key of a generic file names its table, time column and every type."""
    a = GenericLayout("generic", "t", "t", pa.schema([("x", pa.int64())]), None, (("x", "int64"),))
    b = GenericLayout("generic", "t", "t", pa.schema([("x", pa.float64())]), None, (("x", "float64"),))
    assert a.key != b.key and a.key == "generic:t time= columns=x:int64"


def test_csv_suffixes_and_headers(tmp_path: Path) -> None:
    """File stems drop .csv/.csv.gz/.csv.zst; headers are read through gzip with a BOM and quotes."""
    assert [strip_csv_suffix(n) for n in ("a.csv", "b.CSV.gz", "c.csv.zst", "d.txt", "e")] == ["a", "b", "c", "d", "e"]
    import gzip

    (tmp_path / "h.csv.gz").write_bytes(gzip.compress('\ufeff"x","y z"\n1,2\n'.encode()))
    assert read_header(tmp_path / "h.csv.gz") == ["x", "y z"]
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataError, match="no header"):
        read_header(tmp_path / "empty.csv")


def test_inputs_from_files_directories_and_globs(tmp_path: Path) -> None:
    """Directories are searched recursively for CSV names only, globs expand, each file comes once,
    and nothing inside the store is taken."""
    for rel in ("d/a.csv", "d/sub/b.csv.gz", "d/sub/c.csv.zst", "d/notes.txt", "e/x.csv", "store/q.csv"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("h\n")
    found = find_inputs([str(tmp_path / "d"), str(tmp_path / "d" / "a.csv"), str(tmp_path / "e" / "*.csv"),
                         str(tmp_path / "st*")], exclude=tmp_path / "store")
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "d/a.csv", "d/sub/b.csv.gz", "d/sub/c.csv.zst", "e/x.csv"]


def test_locate_rows_counts_physical_lines(tmp_path: Path) -> None:
    """Row positions map to line numbers past the header, blank and CRLF-blank lines and rejected lines."""
    lines = ["h1,h2", "r0,0", "", "bad", "r1,1", "\r", "r2,2", "r3,3"]
    path = tmp_path / "x.csv"
    path.write_bytes(("\n".join(lines)).encode())  # no newline at the end
    got = locate_rows(path, [2, 0, 3], [4], rows_expected=4)
    assert {k: (v.line, v.text) for k, v in got.items()} == {0: (2, "r0,0"), 2: (7, "r2,2"), 3: (8, "r3,3")}
    unsure = locate_rows(path, [1], [4], rows_expected=5)
    assert unsure[1].line is None
