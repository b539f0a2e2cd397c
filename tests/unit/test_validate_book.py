"""validate on a synthetic store after ``mktpred book``: the ``book`` table is a known table (read,
schema-, partition-, value- and manifest-checked), and ``book_audit`` compares the top of book
rebuilt from l2 with the ticker.  Each damage, done alone, fails the one check for it."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mktpred.book import build_book
from mktpred.errors import UsageError
from mktpred.store.manifest import Manifest
from mktpred.testing.store import NS_PER_S, ConnSpec, SyntheticStore, write_synthetic_store
from mktpred.validate import Status, ValidationReport, validate_store

MIDNIGHT = 1763769600 * NS_PER_S  # 2025-11-22T00:00:00Z
D1, D2 = "2025-11-21", "2025-11-22"
DEPTH = 3


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStore:
    """A clean store over UTC midnight (a reconnect after it), then its book, 3 levels every second."""
    base = tmp_path_factory.mktemp("book-store")
    conns = [ConnSpec("20251121T235800Z-1", MIDNIGHT - 120 * NS_PER_S, 150),
             ConnSpec("20251122T000032Z-2", MIDNIGHT + 32 * NS_PER_S, 60, new_segment=False)]
    st = write_synthetic_store(base / "parquet", conns, raw_dir=base / "raw")
    build_book(st.root, depth=DEPTH, interval_ns=NS_PER_S)
    return st


@pytest.fixture
def store(pristine: SyntheticStore, tmp_path: Path) -> SyntheticStore:
    """A copy of the pristine store to damage (its manifest still names the pristine raw dir)."""
    shutil.copytree(pristine.root, tmp_path / "parquet")
    return dataclasses.replace(pristine, root=tmp_path / "parquet",
                               files=[tmp_path / "parquet" / p.relative_to(pristine.root) for p in pristine.files])


def run(store: SyntheticStore, **kw: object) -> ValidationReport:
    return validate_store(store.root, raw_dir=store.raw_dir, **kw)  # type: ignore[arg-type]


def failing(report: ValidationReport) -> list[str]:
    return [c.name for c in report.failed]


def book_file(store: SyntheticStore, date: str = D2, product: str = "BTC-USD") -> Path:
    path = store.root / "book" / f"date={date}" / f"{product}.parquet"
    assert path.is_file()
    return path


def rel(store: SyntheticStore, path: Path) -> str:
    return path.relative_to(store.root).as_posix()


def rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    table = pq.read_table(path)
    pq.write_table(change(table), path, compression="zstd")


def set_value(table: pa.Table, column: str, row: int, value: object) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    i = table.schema.get_field_index(column)
    return table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))


def test_store_with_book_passes_every_check(store: SyntheticStore) -> None:
    """convert + book: every check passes, book rows are counted, book_audit matches every ticker."""
    report = run(store)
    assert [(c.name, c.status) for c in report.checks if c.status is not Status.PASS] == []
    books = sorted((store.root / "book").glob("date=*/*.parquet"))
    assert len(books) == 4  # 2 products x 2 days
    book_rows = sum(pq.read_metadata(p).num_rows for p in books)
    assert report.rows["book"] == book_rows > 0
    assert report.files == len(store.files) + 4
    assert report.check("schema").checked == report.files
    assert report.check("partitions").checked == sum(report.rows.values())
    entries = [e for e in Manifest.load(store.root).entries.values() if e.kind == "book"]
    assert sum(e.rows["book"] for e in entries) == book_rows
    assert report.check("manifest_outputs").checked == 2 * report.files
    audit = report.check("book_audit")
    tickers = pq.read_table(store.root / "ticker").num_rows
    assert 0.9 * tickers < audit.checked <= tickers  # those before a product's first snapshot are not counted
    assert f"{audit.checked:,}/{audit.checked:,} tickers match" in audit.details and "(100.0%)" in audit.details
    assert list(report.timings)[-2:] == ["book_audit", "raw"]
    assert next(c for c in report.to_dict()["checks"] if c["name"] == "book_audit")["status"] == "pass"
    json.dumps(report.to_dict())


def test_no_book_table_no_book_audit(tmp_path: Path) -> None:
    """Without a book folder the audit check does not run (and is not listed)."""
    st = write_synthetic_store(tmp_path / "pq", [ConnSpec("a", MIDNIGHT + 10 * NS_PER_S, 20)])
    report = validate_store(st.root)
    assert "book_audit" not in {c.name for c in report.checks} and report.ok


def test_truncated_book_file_fails_readable(store: SyntheticStore) -> None:
    """A truncated book file fails readable alone, naming it; its rows are not counted."""
    victim = book_file(store)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    report = run(store)
    assert failing(report) == ["readable"]
    assert report.check("readable").locations[0].startswith(f"{rel(store, victim)}: cannot be read")
    assert report.check("book_audit").status is Status.PASS


def test_missing_book_output_fails_manifest_outputs(store: SyntheticStore) -> None:
    """A book file the manifest lists but the store lacks fails manifest_outputs alone."""
    victim = book_file(store)
    victim.unlink()
    report = run(store)
    assert failing(report) == ["manifest_outputs"]
    assert report.check("manifest_outputs").locations == [
        f"{rel(store, victim)}: listed in the manifest for book:BTC-USD:{D2} but missing"]


def test_book_file_not_in_the_manifest_fails_manifest_outputs(store: SyntheticStore) -> None:
    """A book file no manifest entry lists fails manifest_outputs alone."""
    manifest = Manifest.load(store.root)
    del manifest.entries[f"book:ETH-USD:{D1}"]
    manifest.save(store.root)
    report = run(store)
    assert failing(report) == ["manifest_outputs"]
    assert report.check("manifest_outputs").locations == [
        f"book/date={D1}/ETH-USD.parquet: not in the manifest (written by no recorded conversion)"]


def test_book_rows_against_the_manifest_not_the_frames(store: SyntheticStore) -> None:
    """Book rows are compared with the book's manifest entry (never with messages.n_rows)."""
    victim = book_file(store)
    rewrite(victim, lambda t: t.slice(0, t.num_rows - 2))
    report = run(store)
    assert failing(report) == ["rows"]
    (loc,) = report.check("rows").locations
    assert loc.startswith(f"{rel(store, victim)}: ") and "the manifest recorded" in loc
    assert loc.endswith(f"for book:BTC-USD:{D2} (-2)")


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.drop_columns(["ask_size_2"]), "missing ask_size_2"),
    (lambda t: t.set_column(4, "valid", pc.cast(t.column("valid"), pa.int8())), "valid is int8, expected bool"),
    (lambda t: t.select([c for c in t.column_names if "_price_" not in c and "_size_" not in c]),
     "no level columns (bid_price_0 ...): not a book table"),
], ids=["missing-column", "wrong-type", "no-levels"])
def test_book_schema_is_checked_for_its_depth(store: SyntheticStore, change: Callable[[pa.Table], pa.Table],
                                              message: str) -> None:
    """A book file off the book schema for its depth fails schema, saying what differs."""
    victim = book_file(store)
    rewrite(victim, change)
    report = run(store)
    assert failing(report) == ["schema"]
    assert report.check("schema").locations == [f"{rel(store, victim)}: {message}"]


def test_book_files_of_different_depths_are_a_warning(store: SyntheticStore) -> None:
    """A book file two levels deep among three-level ones is on contract, with a warning."""
    victim = book_file(store)
    rewrite(victim, lambda t: t.drop_columns([f"{k}_2" for k in ("bid_price", "bid_size", "ask_price", "ask_size")]))
    report = run(store)
    assert report.ok and failing(report) == []
    schema = report.check("schema")
    assert schema.status is Status.WARN
    assert schema.locations[0].startswith("book/: files of different depths (2 levels: 1 files")
    assert report.check("prices").status is Status.PASS and report.check("readable").status is Status.PASS


def test_book_row_on_the_wrong_date_fails_partitions(store: SyntheticStore) -> None:
    """A book snapshot whose time is not on its partition's date fails partitions, naming the file."""
    victim = book_file(store)
    t0 = pq.read_table(victim).column("time")[0].value
    rewrite(victim, lambda t: set_value(t, "time", 0, pa.scalar(t0 - 86_400 * NS_PER_S, pa.timestamp("ns", "UTC"))))
    report = run(store)
    assert failing(report) == ["partitions"]
    assert report.check("partitions").locations[0].startswith(
        f"{rel(store, victim)}: 1 rows dated 2025-11-21 in partition date={D2}")


@pytest.mark.parametrize(("column", "value", "check"), [
    ("bid_price_1", -3.0, "prices"), ("ask_size_0", float("nan"), "sizes"), ("product_id", None, "nulls")])
def test_book_values_are_checked(store: SyntheticStore, column: str, value: object, check: str) -> None:
    """Book level prices/sizes must be valid where present, and its key columns not null."""
    victim = book_file(store)
    rewrite(victim, lambda t: set_value(t, column, 5, value))
    report = run(store)
    assert failing(report) == [check]
    assert report.check(check).locations[0].startswith(f"{rel(store, victim)}: 1 rows with {column} ")


def _spoil_tickers(store: SyntheticStore, product: str, every: int) -> int:
    """Raise the best bid of every ``every``-th ticker of ``product`` by 1.0; returns how many."""
    spoiled = 0
    for path in sorted((store.root / "ticker").glob("date=*/*.parquet")):
        table = pq.read_table(path)
        bids = table.column("best_bid").to_pylist()
        products = table.column("product_id").to_pylist()
        mine = [i for i, p in enumerate(products) if p == product]
        for i in mine[every // 2::every]:
            bids[i] += 1.0
            spoiled += 1
        i = table.schema.get_field_index("best_bid")
        pq.write_table(table.set_column(i, table.schema.field(i), pa.array(bids, pa.float64())), path,
                       compression="zstd")
    return spoiled


def test_audit_below_the_threshold_fails_book_audit(store: SyntheticStore) -> None:
    """Tickers the rebuilt book never showed drop the ±500 ms rate below 99%: book_audit fails alone,
    naming the product and the worst mismatches; a lower threshold or no book table passes."""
    spoiled = _spoil_tickers(store, "ETH-USD", every=5)
    report = run(store)
    assert failing(report) == ["book_audit"]
    audit = report.check("book_audit")
    assert audit.count == spoiled > 10
    assert audit.details.startswith("ETH-USD: ") and "below the threshold 99.00%" in audit.details
    assert "BTC-USD" not in audit.details
    first_mismatch = audit.locations[1]
    assert first_mismatch.startswith("ETH-USD 2025-11-2") and "no match within ±500 ms" in first_mismatch
    assert len(audit.locations) == 1 + 10
    assert run(store, audit_threshold=0.75).check("book_audit").status is Status.PASS
    assert run(store, audit_threshold=0.85).check("book_audit").status is Status.FAIL


def test_audit_is_not_run_over_an_unreadable_l2(store: SyntheticStore) -> None:
    """With an l2 file unreadable, readable fails and book_audit says it did not run (a warning)."""
    victim = sorted((store.root / "l2").glob("date=*/*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    report = run(store)
    assert failing(report) == ["readable"]
    audit = report.check("book_audit")
    assert audit.status is Status.WARN and audit.details.startswith(f"not run: {rel(store, victim)} is unreadable")


@pytest.mark.parametrize(("kw", "where"), [({"audit_window_ms": -1}, "book.audit_window_ms"),
                                           ({"audit_threshold": 1.5}, "book.audit_threshold")])
def test_bad_audit_settings_are_usage_errors(store: SyntheticStore, kw: dict[str, object], where: str) -> None:
    """An audit window below 0 or a threshold outside 0..1 is refused, naming the key."""
    with pytest.raises(UsageError) as info:
        run(store, **kw)
    assert info.value.where == where
