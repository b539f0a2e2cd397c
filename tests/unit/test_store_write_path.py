"""The store's one write path: sessions (probe, sweep, manifest commits), writers, safe names."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mktpred.convert.runner as runner_mod
from mktpred.config import Config, load_config
from mktpred.convert.runner import run_convert
from mktpred.errors import OutputNotWritable
from mktpred.ingest.csv_import import run_csv2parquet
from mktpred.naming import safe_name, split_name, unsafe_name
from mktpred.store.manifest import Manifest, SourceEntry
from mktpred.store.quarantine import Quarantine
from mktpred.store.schemas import TABLE_SCHEMAS
from mktpred.store.session import StoreSession, sweep_leftovers
from mktpred.store.writer import PartitionedWriter, SingleFileWriter, write_parquet_file
from mktpred.testing.raw import SynthSpec, write_segment

SEG_A = "coinbase_20260809T210548Z.jsonl"
SEG_B = "coinbase_20260809T220000Z.jsonl"
T0 = 1_786_309_548_228_568_804  # 2026-08-09T21:05:48.228568804Z


def _cfg(raw: Path, store: Path) -> Config:
    cfg = Config()
    return replace(cfg, paths=replace(cfg.paths, raw_dir=raw, parquet_dir=store, csv_dir=store.parent / "csv"))


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _trade(product: str = "BTC-USD", side: str = "SELL") -> dict[str, Any]:
    return dict(recv_time=T0, time=T0, conn="c", seq=1, product_id=product, is_snapshot=False, trade_id="1",
                side=side, price=100.0, size=1.0, trade_time=T0 // 1000, aggressor="buy")


def test_crash_between_two_sources_leaves_the_first_committed(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest is saved after each source: a crash in the second keeps the first, and a re-run
    converts only the second."""
    raw, store = tmp_path / "raw", tmp_path / "store"
    write_segment(raw / SEG_A, SynthSpec(snapshot_levels=20), n_lines=60)
    write_segment(raw / SEG_B, SynthSpec(seed=2, snapshot_levels=20), n_lines=60)
    real = runner_mod.run_job
    calls: list[str] = []

    def crash_on_second(job: Any, **kw: Any) -> Any:
        calls.append(Path(job.source).name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies while the second segment is in flight
        return real(job, **kw)

    monkeypatch.setattr(runner_mod, "run_job", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_convert(_cfg(raw, store))
    assert calls == [SEG_A, SEG_B]
    entries = Manifest.load(store).entries
    assert [Path(k).name for k in entries] == [SEG_A]
    first = next(iter(entries.values()))
    assert first.outputs and all((store / o).is_file() for o in first.outputs)
    assert not [f for f in _files(store) if "220000Z" in f]  # nothing of the second is visible

    monkeypatch.setattr(runner_mod, "run_job", real)
    again = run_convert(_cfg(raw, store))
    assert (again.skipped, again.converted) == (1, 1)
    assert sorted(Path(k).name for k in Manifest.load(store).entries) == [SEG_A, SEG_B]


def test_sweep_removes_every_leftover_any_producer_leaves(tmp_path: Path) -> None:
    """Writers killed before commit (partitioned, single-file, quarantine), convert's staging folder,
    a half-saved manifest and the probe are swept; committed files and other producers' files stay."""
    root = tmp_path / "store"
    session = StoreSession.open(root)
    session.close()
    done = PartitionedWriter(root, "kept")
    done.write("trades", pa.Table.from_pylist([_trade()], schema=TABLE_SCHEMAS["trades"]))
    kept = done.commit()
    session.commit(SourceEntry(source="k", kind="raw", size=1, mtime_ns=1, hash="h", outputs=kept))
    committed = _files(root)

    # what processes killed mid-write leave behind
    part = PartitionedWriter(root, "killed", row_group_rows=1)
    part.write("trades", pa.Table.from_pylist([_trade()], schema=TABLE_SCHEMAS["trades"]))
    single = SingleFileWriter(root, "generic_t", "killed", pa.schema([("x", pa.int64())]), row_group_rows=1)
    single.write("generic_t", pa.table({"x": [1]}))
    quarantine = Quarantine(root, "killed", "killed.jsonl")
    quarantine.add(3, "invalid JSON", b"{")
    # the process dies: the OS closes its files, the temporary names stay
    for f in part._files.values():
        f.close()
    single._file.close()
    assert quarantine._fh is not None
    quarantine._fh.close()
    (root / "_staging" / "killed.123").mkdir(parents=True)
    (root / "_staging" / "killed.123" / "chunk.jsonl").write_bytes(b"{}\n")
    (root / "_manifest.json.tmp").write_text("{half")
    (root / ".mktpred-write-test.tmp").write_bytes(b"")
    (root / "book" / "date=2026-08-09").mkdir(parents=True)
    (root / "book" / "date=2026-08-09" / "BTC-USD.parquet.tmp").write_bytes(b"PAR1")
    left = _files(root) - committed
    assert {"trades/date=2026-08-09/killed.parquet.tmp", "generic_t/killed.parquet.tmp",
            "_staging/killed.123/chunk.jsonl", "_manifest.json.tmp", ".mktpred-write-test.tmp",
            "book/date=2026-08-09/BTC-USD.parquet.tmp", "_quarantine/killed.jsonl.tmp"} <= left

    removed = sweep_leftovers(root)
    assert _files(root) == committed
    assert root / "_staging" in removed and not (root / "_staging").exists()
    assert Manifest.load(root).entries["k"].outputs == kept


def test_two_producers_write_different_tables_into_one_store(tmp_path: Path) -> None:
    """convert and csv2parquet share a store: each keeps its own entries and files, re-runs of either
    skip what is up to date, and a forced re-convert leaves the imported table alone."""
    raw, store = tmp_path / "raw", tmp_path / "store"
    write_segment(raw / SEG_A, SynthSpec(snapshot_levels=20), n_lines=80)
    csv = tmp_path / "fills.csv"
    csv.write_text("fill_id,qty\n1,0.5\n2,1.5\n")
    cfg = load_config(None, {"paths.parquet_dir": store, "paths.raw_dir": raw})

    conv = run_convert(cfg)
    imp = run_csv2parquet(cfg, [str(csv)], fmt="generic", table="fills")
    assert conv.converted == 1 and imp.converted == 1
    kinds = {Path(k).name: e.kind for k, e in Manifest.load(store).entries.items()}
    assert kinds == {SEG_A: "raw", "fills.csv": "csv"}
    fills = [f for f in _files(store) if f.startswith("fills/")]
    assert len(fills) == 1
    assert pq.read_table(store / fills[0]).to_pylist() == [{"fill_id": 1, "qty": 0.5}, {"fill_id": 2, "qty": 1.5}]

    assert run_convert(cfg).skipped == 1
    assert run_csv2parquet(cfg, [str(csv)], fmt="generic", table="fills").skipped == 1
    forced = run_convert(cfg, force=True)
    assert forced.converted == 1
    assert [f for f in _files(store) if f.startswith("fills/")] == fills
    assert {Path(k).name for k in Manifest.load(store).entries} == {SEG_A, "fills.csv"}


def test_commit_removes_outputs_the_new_entry_no_longer_lists(tmp_path: Path) -> None:
    """Re-committing a source that now writes fewer files removes the files it no longer owns."""
    root = tmp_path / "store"
    session = StoreSession.open(root)
    session.close()  # closing ends the run; committing still works
    a, b = root / "t" / "a.parquet", root / "t" / "b.parquet"
    for p in (a, b):
        write_parquet_file(pa.table({"x": [1]}), p)
    session.commit(SourceEntry(source="s", kind="x", size=0, mtime_ns=0, hash="1", outputs=["t/a.parquet", "t/b.parquet"]))
    assert session.unchanged("s", fingerprint="1") and not session.unchanged("s", fingerprint="2")
    session.commit(SourceEntry(source="s", kind="x", size=0, mtime_ns=0, hash="2", outputs=["t/a.parquet"]))
    assert a.is_file() and not b.exists()
    doc = json.loads((root / "_manifest.json").read_text())
    assert doc["sources"]["s"]["outputs"] == ["t/a.parquet"] and doc["sources"]["s"]["mktpred_version"]


def test_unwritable_store_is_a_typed_error(tmp_path: Path) -> None:
    """A store path under a file cannot be created: OutputNotWritable, nothing else."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputNotWritable, match="not writable"):
        StoreSession.open(blocker / "store")


# -- names ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, name", [
    ("BTC-USD", "BTC-USD"), ("../../x", "%2E.%2F..%2Fx"),
    ("/etc/passwd", "%2Fetc%2Fpasswd"), (".hidden", "%2Ehidden"), ("a b%", "a%20b%25"), ("BTC_USD.1", "BTC_USD.1"),
])
def test_safe_name_maps_reversibly_and_never_leaves_the_folder(value: str, name: str) -> None:
    """Letters, digits, - _ . stay; separators, % and a leading dot are encoded; unsafe_name undoes it."""
    assert safe_name(value) == name
    assert unsafe_name(name) == value
    assert "/" not in name and not name.startswith(".") and Path(name).name == name


def test_safe_name_rejects_empty_and_too_long() -> None:
    """An empty value or one whose name exceeds 200 characters is refused."""
    with pytest.raises(ValueError, match="empty"):
        safe_name("")
    with pytest.raises(ValueError, match="too long"):
        safe_name("/" * 100)


def test_writers_refuse_a_stem_that_leaves_the_folder(tmp_path: Path) -> None:
    """A stem with a separator (or ``..``) is a programming error, caught before any write."""
    for stem in ("../x", "a/b", "..", "a\\b", ""):
        with pytest.raises(ValueError, match="not a safe output file stem"):
            PartitionedWriter(tmp_path, stem)
        with pytest.raises(ValueError, match="not a safe output file stem"):
            SingleFileWriter(tmp_path, "t", stem, pa.schema([("x", pa.int64())]))
    assert list(tmp_path.iterdir()) == []


def test_one_segment_naming_rule_for_collect_convert_and_validate() -> None:
    """collect's names (sealed and .part) and archived copies split into the stem the outputs use."""
    from mktpred.collect.segments import segment_name

    name = segment_name(T0)
    assert name == "coinbase_20260809T210548Z.jsonl"
    assert split_name(name) == ("coinbase_20260809T210548Z", ".jsonl")
    assert split_name(name + ".part") == ("coinbase_20260809T210548Z", ".jsonl.part")
    assert split_name(name + ".zst") == ("coinbase_20260809T210548Z", ".jsonl.zst")
    assert split_name("notes.txt") is None and split_name(".jsonl") is None


# -- trade direction --------------------------------------------------------------------------------

def test_aggressor_on_the_real_capture(samples_dir: Path, tmp_path: Path) -> None:
    """Coinbase's side is the maker's: every SELL gets aggressor buy, every BUY sell, and the prices
    agree -- compared with the last ticker before each trade, the 49 trades at the ask were SELLs."""
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(samples_dir / "coinbase-advanced-trade-2026-08-09.records.jsonl.zst",
                raw / "coinbase_20260809T210548Z.jsonl.zst")
    store = tmp_path / "store"
    run_convert(_cfg(raw, store))
    con = duckdb.connect()
    by_side = con.sql(f"SELECT side, aggressor, count(*) FROM read_parquet('{store}/trades/*/*.parquet') "
                      "GROUP BY ALL ORDER BY ALL").fetchall()
    assert by_side == [("BUY", "sell", 125), ("SELL", "buy", 154)]
    touch = con.sql(f"""
        WITH t AS (SELECT * FROM read_parquet('{store}/trades/*/*.parquet') WHERE NOT is_snapshot),
             k AS (SELECT * FROM read_parquet('{store}/ticker/*/*.parquet'))
        SELECT * FROM (
          SELECT CASE WHEN t.price >= k.best_ask THEN 'at ask' WHEN t.price <= k.best_bid THEN 'at bid' END AS place,
                 t.side, t.aggressor, count(*)
          FROM t ASOF JOIN k ON t.product_id = k.product_id AND t.time >= k.time GROUP BY ALL)
        WHERE place IS NOT NULL ORDER BY ALL""").fetchall()
    assert touch == [("at ask", "SELL", "buy", 49), ("at bid", "BUY", "sell", 26), ("at bid", "SELL", "buy", 1)]


def test_aggressor_on_tardis_trades(tmp_path: Path) -> None:
    """Tardis' side is the taker's: buy -> buy, sell -> sell, unknown -> null; side stays as imported."""
    csv = tmp_path / "t.csv"
    csv.write_text("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
                   "binance,btcusdt,1786309548228568,1786309548230001,1,buy,65000.5,0.01\n"
                   "binance,btcusdt,1786309548328568,1786309548330001,2,sell,65000.4,0.02\n"
                   "binance,btcusdt,1786309548428568,1786309548430001,3,unknown,65000.3,0.03\n")
    store = tmp_path / "store"
    run_csv2parquet(load_config(None, {"paths.parquet_dir": store}), [str(csv)])
    got = [(r["trade_id"], r["side"], r["aggressor"])
           for f in sorted(store.glob("trades/*/*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert got == [("1", "BUY", "buy"), ("2", "SELL", "sell"), ("3", "UNKNOWN", None)]


def test_old_mktpred_trades_csv_without_aggressor_is_filled_from_side(tmp_path: Path) -> None:
    """A trades CSV written before the column existed is still recognised; aggressor comes from
    Coinbase's maker side (SELL -> buy)."""
    cols = [n for n in TABLE_SCHEMAS["trades"].names if n != "aggressor"]
    csv = tmp_path / "old.csv"
    csv.write_text(",".join(cols) + "\n"
                   "2026-08-09T21:05:48.228568804Z,2026-08-09T21:05:48.228568804Z,c,1,BTC-USD,false,7,SELL,"
                   "100.5,0.1,2026-08-09T21:05:48.228568Z\n")
    store = tmp_path / "store"
    summary = run_csv2parquet(load_config(None, {"paths.parquet_dir": store}), [str(csv)])
    assert summary.files[0].csv_format == "mktpred:trades"
    [row] = [r for f in store.glob("trades/*/*.parquet") for r in pq.read_table(f).to_pylist()]
    assert (row["side"], row["aggressor"], row["price"]) == ("SELL", "buy", 100.5)


def test_no_sweep_while_another_run_writes_and_commits_merge(tmp_path: Path) -> None:
    """A second producer started during a run leaves the first one's temporary files alone, and
    both producers' manifest entries survive their interleaved commits."""
    root = tmp_path / "store"
    first = StoreSession.open(root)
    in_flight = root / "l2" / "date=2026-08-09" / "seg.parquet.tmp"
    in_flight.parent.mkdir(parents=True)
    in_flight.write_bytes(b"PAR1")
    second = StoreSession.open(root)
    assert not second.swept and in_flight.is_file()
    first.commit(SourceEntry(source="raw-a", kind="raw", size=1, mtime_ns=1, hash="a"))
    second.commit(SourceEntry(source="book:BTC-USD:2026-08-09", kind="book", size=1, mtime_ns=1, hash="b"))
    assert sorted(Manifest.load(root).entries) == ["book:BTC-USD:2026-08-09", "raw-a"]
    first.close()
    second.close()
    with StoreSession.open(root) as third:
        assert third.swept and not in_flight.exists()


def test_disk_full_while_saving_the_manifest_is_exit_3_for_every_producer(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while the manifest is saved (convert, book, csv2parquet, features): one `error:` line,
    exit 3, no `_manifest.json.tmp` left and the previous manifest unchanged."""
    import errno
    import os

    from typer.testing import CliRunner

    import mktpred.store.manifest as manifest_mod
    from mktpred.cli.app import app
    from tests.cli.test_cli_features import _store as features_store

    raw, store = tmp_path / "raw", tmp_path / "store"
    write_segment(raw / SEG_A, SynthSpec(snapshot_levels=20), n_lines=60)
    csv = tmp_path / "in" / "trades.csv"
    csv.parent.mkdir()
    csv.write_text("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
                   "binance,btcusdt,1786309548228568,1786309548230001,1,buy,65000.5,0.01\n")
    fstore = features_store(tmp_path / "fstore")
    (fstore / "_manifest.json").write_text('{"version": 1, "sources": {}}')
    class DiskFullOs:
        """``os`` for the manifest module only, whose ``fsync`` finds the disk full."""

        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        @staticmethod
        def fsync(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    commands = {
        "convert": (["convert", "--raw-dir", str(raw), "--parquet-dir", str(store)], store),
        "csv2parquet": (["csv2parquet", str(csv), "--parquet-dir", str(store)], store),
        "book": (["book", "--parquet-dir", str(fstore)], fstore),
        "features": (["features", "--parquet-dir", str(fstore), "--horizons", "1s"], fstore),
    }
    for name, (args, root) in commands.items():
        before = (root / "_manifest.json").read_bytes() if (root / "_manifest.json").exists() else None
        monkeypatch.setattr(manifest_mod, "os", DiskFullOs())
        result = CliRunner().invoke(app, args)
        monkeypatch.setattr(manifest_mod, "os", os)
        assert result.exit_code == 3, (name, result.output)
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("error: cannot save the manifest: No space left on device"), (name, lines)
        assert not any(line.startswith("Traceback") for line in lines), name
        assert not (root / "_manifest.json.tmp").exists(), name
        after = (root / "_manifest.json").read_bytes() if (root / "_manifest.json").exists() else None
        assert after == before, name
