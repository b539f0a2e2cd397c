"""validate over a store made by the real chain: the simulator on 127.0.0.1, the collector, convert.

The clean store passes; then each damage kind of the issue, done alone to a copy of it, fails the
one check for that reason and names the file or range.
"""

from __future__ import annotations

import datetime
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mktpred.book import build_book
from mktpred.collect import Collector, CollectSettings
from mktpred.config import load_config
from mktpred.convert.runner import run_convert
from mktpred.simulate import SimulatedExchange, parse_fault
from mktpred.store.manifest import Manifest
from mktpred.validate import Status, ValidationReport, validate_store

WAIT = 30.0


@dataclass
class Store:
    root: Path  #: the Parquet store
    raw: Path

    def files(self, table: str) -> list[Path]:
        return sorted((self.root / table).glob("date=*/*.parquet"))

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def validate(self) -> ValidationReport:
        return validate_store(self.root, raw_dir=self.raw)


def make_store(base: Path, faults: tuple[str, ...] = (), frames: int = 1200) -> Store:
    """Record ``frames`` frames from the simulator, then convert them."""
    raw, root = base / "raw", base / "parquet"
    with SimulatedExchange(products=["BTC-USD", "ETH-USD"], rate=400.0, seed=5, depth=200,
                           faults=[parse_fault(f) for f in faults]) as sim:
        stop = threading.Event()
        settings = CollectSettings(url=sim.url, products=("BTC-USD", "ETH-USD"),
                                   channels=("level2", "ticker", "market_trades"), raw_dir=raw,
                                   flush_interval_s=0.2, stall_timeout_s=10.0, backoff_initial_s=0.05,
                                   backoff_max_s=0.2)
        collector = Collector(settings, stop=stop)
        thread = threading.Thread(target=collector.run, daemon=True)
        thread.start()
        try:
            assert sim.wait_for(lambda s: sum(st.frames for st in collector.stats) >= frames, WAIT)
        finally:
            stop.set()
            thread.join(WAIT)
        assert not thread.is_alive()
    summary = run_convert(load_config(None, {"paths.raw_dir": raw, "paths.parquet_dir": root}))
    assert summary.converted >= 1 and summary.failed == 0
    return Store(root, raw)


def copy_store(src: Store, dest: Path) -> Store:
    """A copy of a store and its raw dir, the manifest pointing at the copied segments."""
    shutil.copytree(src.raw, dest / "raw")
    shutil.copytree(src.root, dest / "parquet")
    out = Store(dest / "parquet", dest / "raw")
    manifest = Manifest.load(out.root)
    moved = Manifest()
    for source, entry in manifest.entries.items():
        if entry.kind == "raw":  # book entries are keyed book:<product>:<date>, not by a path
            entry.source = str((out.raw / Path(source).name).resolve())
        moved.put(entry)
    moved.save(out.root)
    return out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """One clean store from collect + convert, shared (tests damage copies of it)."""
    return make_store(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture
def store(pristine: Store, tmp_path: Path) -> Store:
    return copy_store(pristine, tmp_path)


def test_clean_store_from_collect_and_convert_passes(store: Store) -> None:
    """Every check passes on what the collector recorded and convert wrote."""
    report = store.validate()
    assert report.ok, [c.to_dict() for c in report.failed]
    assert all(c.status is Status.PASS for c in report.checks if c.name not in ("coverage", "heartbeats"))
    assert report.rows["messages"] >= 1200 and report.rows["l2"] > 0
    assert report.check("sequence").checked == report.rows["messages"]
    assert {r.product for r in report.coverage} == {"BTC-USD", "ETH-USD"}
    assert all(r.rows > 0 and r.conns >= 1 for r in report.coverage)


def _l2(store: Store) -> Path:
    return max(store.files("l2"), key=lambda p: p.stat().st_size)


def _rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    table = pq.read_table(path)
    pq.write_table(change(table).cast(table.schema), path, compression="zstd")


def _set(table: pa.Table, column: str, row: int, value: object) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    i = table.schema.get_field_index(column)
    return table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))


def delete_file(s: Store) -> tuple[str, str]:
    victim = _l2(s)
    victim.unlink()
    return "manifest_outputs", f"{s.rel(victim)}: listed in the manifest"


def truncate_file(s: Store) -> tuple[str, str]:
    victim = _l2(s)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    return "readable", f"{s.rel(victim)}: cannot be read"


def flip_bytes(s: Store) -> tuple[str, str]:
    victim = _l2(s)
    data = bytearray(victim.read_bytes())
    for i in range(len(data) - 300, len(data) - 8):  # the footer: the file's own metadata
        data[i] ^= 0xFF
    victim.write_bytes(bytes(data))
    return "readable", f"{s.rel(victim)}: cannot be read"


def drop_rows(s: Store) -> tuple[str, str]:
    victim = _l2(s)
    _rewrite(victim, lambda t: t.slice(0, t.num_rows - 7))
    return "rows", "(-7)"


def sequence_gap(s: Store) -> tuple[str, str]:
    victim = s.files("messages")[0]
    table = pq.read_table(victim)
    seq = table.column("seq")[400].as_py()
    conn = table.column("conn")[400].as_py()
    mask = pc.and_(pc.equal(table.column("conn"), conn), pc.greater_equal(table.column("seq"), seq))
    _rewrite(victim, lambda t: t.set_column(3, "seq", pc.if_else(mask, pc.add(t.column("seq"), 5), t.column("seq"))))
    return "sequence", f"conn {conn}: seq {seq}..{seq + 4} missing (5)"


def wrong_partition(s: Store) -> tuple[str, str]:
    victim = _l2(s)
    date = victim.parent.name[len("date="):]
    t0 = pq.read_table(victim).column("time")[3].value
    _rewrite(victim, lambda t: _set(t, "time", 3, pa.scalar(t0 - 86_400 * 10**9, pa.timestamp("ns", tz="UTC"))))
    before = (datetime.date.fromisoformat(date) - datetime.timedelta(days=1)).isoformat()
    return "partitions", f"{s.rel(victim)}: 1 rows dated {before} in partition date={date}"


def write_null(s: Store) -> tuple[str, str]:
    victim = _l2(s)
    _rewrite(victim, lambda t: _set(t, "product_id", 9, None))
    return "nulls", f"{s.rel(victim)}: 1 rows with product_id null (row 9)"


def negative_size(s: Store) -> tuple[str, str]:
    victim = _l2(s)
    _rewrite(victim, lambda t: _set(t, "size", 11, -0.5))
    return "sizes", f"{s.rel(victim)}: 1 rows with size not >= 0 and finite (row 11 = -0.5)"


def temp_file(s: Store) -> tuple[str, str]:
    victim = _l2(s)
    tmp = victim.with_name(victim.name + ".tmp")
    tmp.write_bytes(victim.read_bytes()[:100])
    return "stray_files", f"{s.rel(tmp)}: leftover temporary file"


def unconverted_segment(s: Store) -> tuple[str, str]:
    seg = sorted(s.raw.glob("coinbase_*.jsonl"))[0]
    extra = seg.with_name("coinbase_20991231T000000Z.jsonl")
    extra.write_bytes(seg.read_bytes())
    return "raw_converted", "coinbase_20991231T000000Z.jsonl: sealed segment not converted"


@pytest.mark.parametrize("damage", [delete_file, truncate_file, flip_bytes, drop_rows, sequence_gap,
                                    wrong_partition, write_null, negative_size, temp_file, unconverted_segment],
                         ids=lambda f: f.__name__)
def test_each_damage_fails_its_check_alone(store: Store, damage: Callable[[Store], tuple[str, str]]) -> None:
    """Damage done once to a clean collected store fails exactly one check, which names where."""
    check, where = damage(store)
    report = store.validate()
    assert [c.name for c in report.failed] == [check], [c.to_dict() for c in report.failed]
    assert any(where in loc for loc in report.check(check).locations), report.check(check).locations


def test_collector_gaps_are_known_and_drops_reconnect(tmp_path: Path) -> None:
    """Gaps the simulator injects are recorded by the collector (known: warn); a dropped connection
    reconnects, and the store still passes."""
    store = make_store(tmp_path, faults=("gap:every=300,size=2", "drop:after=700"), frames=1400)
    report = store.validate()
    assert report.ok, [c.to_dict() for c in report.failed]
    seq = report.check("sequence")
    assert seq.status is Status.WARN
    assert report.gaps_total >= 2 and all(g.known and g.missing == 2 for g in report.gaps)
    assert max(r.conns for r in report.coverage) == 2


# -- the book table: mktpred book on the simulator's store, and on the real capture ----------------

@pytest.fixture(scope="module")
def booked(pristine: Store, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The clean collected store after ``mktpred book`` (5 levels, every 100 ms)."""
    out = copy_store(pristine, tmp_path_factory.mktemp("booked"))
    result = build_book(out.root, depth=5, interval_ns=100_000_000)
    assert sum(p.snapshots for p in result.products) > 0
    return out


def test_collected_store_with_book_passes(booked: Store, tmp_path: Path) -> None:
    """collect + convert + book: every check passes, and book_audit finds every ticker at the same moment."""
    store = copy_store(booked, tmp_path)
    report = store.validate()
    assert report.ok, [c.to_dict() for c in report.failed]
    assert all(c.status is Status.PASS for c in report.checks if c.name not in ("coverage", "heartbeats"))
    assert report.rows["book"] == sum(pq.read_metadata(p).num_rows for p in store.files("book")) > 0
    audit = report.check("book_audit")
    assert audit.checked > 20
    n = f"{audit.checked:,}"
    assert audit.details.startswith(f"{n}/{n} tickers match the rebuilt top of book within ±500 ms (100.0%), "
                                    f"{n} at the same moment (100.0%)")


def test_collected_store_book_damage(booked: Store, tmp_path: Path) -> None:
    """On the collected store, a truncated book file fails readable alone, and l2 prices rewritten
    for one product fail book_audit alone, naming that product."""
    store = copy_store(booked, tmp_path)
    victim = store.files("book")[0]
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 2])
    report = store.validate()
    assert [c.name for c in report.failed] == ["readable"]
    assert report.check("readable").locations[0].startswith(f"{store.rel(victim)}: cannot be read")
    victim.write_bytes(good)
    l2 = _l2(store)
    eth = pc.equal(pq.read_table(l2).column("product_id"), "ETH-USD")
    _rewrite(l2, lambda t: t.set_column(t.schema.get_field_index("price"), "price",
                                        pc.if_else(eth, pc.add(t.column("price"), 0.5), t.column("price"))))
    report = store.validate()
    assert [c.name for c in report.failed] == ["book_audit"]
    audit = report.check("book_audit")
    assert audit.details.startswith("ETH-USD: 0/") and "BTC-USD" not in audit.details
    assert audit.locations[1].startswith("ETH-USD ") and "no match within ±500 ms" in audit.locations[1]


RECORDS = "coinbase-advanced-trade-2026-08-09.records.jsonl.zst"


def test_real_capture_with_book(samples_dir: Path, tmp_path: Path) -> None:
    """The real capture after convert + book passes (154/154 tickers within ±500 ms, 132 at the same
    moment); with a 0 ms window ETH-USD's 62/84 fails book_audit alone."""
    raw, root = tmp_path / "raw", tmp_path / "parquet"
    raw.mkdir()
    shutil.copy(samples_dir / RECORDS, raw / RECORDS)
    summary = run_convert(load_config(None, {"paths.raw_dir": raw, "paths.parquet_dir": root}))
    assert summary.converted == 1 and summary.failed == 0
    build_book(root, depth=10, interval_ns=1_000_000_000)
    report = validate_store(root, raw_dir=raw)
    assert [(c.name, c.status.value) for c in report.checks if c.status is not Status.PASS] == []
    assert report.check("book_audit").details == (
        "154/154 tickers match the rebuilt top of book within ±500 ms (100.0%), 132 at the same moment (85.7%); "
        "threshold 99.00%")
    assert report.rows["book"] == pq.read_table(root / "book").num_rows > 0
    assert validate_store(root, audit_threshold=1.0).ok
    strict = validate_store(root, raw_dir=raw, audit_window_ms=0)
    assert [c.name for c in strict.failed] == ["book_audit"]
    audit = strict.check("book_audit")
    assert audit.count == 22 and audit.checked == 154
    assert audit.locations[0] == "ETH-USD: 62/84 tickers within ±0 ms (73.8%), below the threshold 99.00%"
    assert all(loc.startswith("ETH-USD 2026-08-09T21:") for loc in audit.locations[1:])
