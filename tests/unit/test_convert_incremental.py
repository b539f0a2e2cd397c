"""Incremental and idempotent conversion: skip what is unchanged, repair what a crash left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import mktpred.store.writer as writer_mod
from mktpred.config import Config
from mktpred.convert.runner import run_convert
from mktpred.store.manifest import Manifest
from mktpred.testing.raw import SynthSpec, write_segment

STEMS = ["coinbase_20260809T210548Z", "coinbase_20260809T220000Z", "coinbase_20260809T230000Z"]


def make_raw(raw: Path, n_lines: int = 800, levels: int = 300) -> list[Path]:
    paths = []
    for i, stem in enumerate(STEMS):
        p = raw / f"{stem}.jsonl"
        write_segment(p, SynthSpec(seed=i + 1, snapshot_levels=levels, start_ns=1_786_309_548_000_000_000
                                   + i * 3_600_000_000_000), n_lines=n_lines)
        paths.append(p)
    return paths


def config(raw: Path, store: Path) -> Config:
    cfg = Config()
    return replace(cfg, paths=replace(cfg.paths, raw_dir=raw, parquet_dir=store))


def snapshot(store: Path) -> dict[str, Any]:
    """The store's content: every data file's rows, and the manifest without run-dependent fields."""
    files: dict[str, Any] = {}
    for p in sorted(store.rglob("*")):
        if p.is_file() and not p.name.startswith("_manifest"):
            rel = str(p.relative_to(store))
            if p.suffix == ".parquet":
                t = pq.read_table(p)
                cols = [pc.cast(c, pa.int64()) if pa.types.is_timestamp(c.type) else c for c in t.columns]
                files[rel] = pa.table(cols, names=t.column_names).to_pylist()
            else:
                files[rel] = p.read_bytes()
    entries = {k: {f: v for f, v in e.__dict__.items() if f != "converted_at"}
               for k, e in Manifest.load(store).entries.items()}
    return {"files": files, "manifest": entries}


def test_second_run_converts_nothing_touch_reconverts_one_force_all(tmp_path: Path) -> None:
    """Unchanged segments are skipped; a touched one is redone alone; --force redoes all."""
    raw = tmp_path / "raw"
    paths = make_raw(raw)
    cfg = config(raw, tmp_path / "store")
    first = run_convert(cfg)
    assert (first.converted, first.skipped) == (3, 0)
    before = snapshot(tmp_path / "store")
    assert set(before["manifest"]) == {str(p.resolve()) for p in paths}
    entry = before["manifest"][str(paths[0].resolve())]
    assert entry["hash"].startswith("blake2b:") and entry["engine"] == "cpu" and entry["lines"] == 800

    second = run_convert(cfg)
    assert (second.converted, second.skipped) == (0, 3)
    assert snapshot(tmp_path / "store") == before

    st = paths[1].stat()
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    third = run_convert(cfg)
    assert (third.converted, third.skipped) == (1, 2)
    assert third.segments[0].source == str(paths[1].resolve())

    forced = run_convert(cfg, force=True)
    assert (forced.converted, forced.skipped) == (3, 0)
    after = snapshot(tmp_path / "store")
    assert after["files"] == before["files"]


def test_deleted_output_is_rebuilt(tmp_path: Path) -> None:
    """A segment whose output file disappeared is converted again."""
    raw = tmp_path / "raw"
    make_raw(raw, n_lines=300)
    cfg = config(raw, tmp_path / "store")
    run_convert(cfg)
    victim = tmp_path / "store" / "l2" / "date=2026-08-09" / f"{STEMS[2]}.parquet"
    victim.unlink()
    again = run_convert(cfg)
    assert again.converted == 1 and victim.is_file()


def test_crash_mid_commit_then_rerun_equals_clean_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash half-way through renaming a segment's files leaves nothing a re-run does not repair."""
    raw = tmp_path / "raw"
    make_raw(raw, n_lines=400)
    clean = tmp_path / "clean"
    run_convert(config(raw, clean))

    store = tmp_path / "store"
    calls = {"n": 0}
    real = writer_mod.atomic_replace

    def crashing(tmp: Path, final: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 8:  # segment 2, after some of its files were renamed
            raise KeyboardInterrupt
        real(tmp, final)

    monkeypatch.setattr(writer_mod, "atomic_replace", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_convert(config(raw, store))
    monkeypatch.setattr(writer_mod, "atomic_replace", real)
    assert len(Manifest.load(store).entries) == 1
    # debris a harder crash could leave: a temporary file and a staging folder
    (store / "l2" / "date=2026-08-09" / f"{STEMS[2]}.parquet.tmp").write_bytes(b"half a file")
    (store / "_staging" / "x.123").mkdir(parents=True)

    again = run_convert(config(raw, store))
    assert again.converted == 2 and again.skipped == 1
    assert snapshot(store) == snapshot(clean)
    assert not list(store.rglob("*.tmp")) and not (store / "_staging").exists()


def test_killed_process_then_rerun_equals_clean_run(tmp_path: Path) -> None:
    """SIGKILL in the middle of a run, then a plain re-run: the same store as one clean run."""
    raw = tmp_path / "raw"
    make_raw(raw, n_lines=6000, levels=2000)
    clean = tmp_path / "clean"
    run_convert(config(raw, clean))

    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MKTPRED_")}
    cmd = [sys.executable, "-m", "mktpred", "convert", "--raw-dir", str(raw), "--parquet-dir", str(store), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    manifest = store / "_manifest.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and json.loads(manifest.read_text() or "{}").get("sources"):
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL  # killed, not finished
    assert len(Manifest.load(store).entries) < 3

    again = run_convert(config(raw, store))
    assert again.converted + again.skipped == 3
    assert snapshot(store) == snapshot(clean)


def test_part_segment_then_sealed_takes_over(tmp_path: Path) -> None:
    """A .part converted with --include-latest is replaced by its sealed file: one entry, new rows."""
    raw = tmp_path / "raw"
    stem = STEMS[0]
    part = raw / f"{stem}.jsonl.part"
    write_segment(part, SynthSpec(seed=5, snapshot_levels=50), n_lines=300)
    with open(part, "ab") as fh:
        fh.write(b'{"recv_ns": 1, "conn": "c1", "msg": {"chan')  # torn tail of a crash or a live writer
    cfg = config(raw, tmp_path / "store")
    first = run_convert(cfg, include_latest=True)
    assert (first.converted, first.lines, first.truncated) == (1, 300, 1)
    assert run_convert(cfg, include_latest=True).skipped == 1  # unchanged .part: skipped

    sealed = raw / f"{stem}.jsonl"
    write_segment(sealed, SynthSpec(seed=5, snapshot_levels=50), n_lines=500)
    part.unlink()
    second = run_convert(cfg, include_latest=True)
    assert (second.converted, second.lines, second.truncated) == (1, 500, 0)
    (entry,) = Manifest.load(tmp_path / "store").entries.values()
    assert entry.source == str(sealed.resolve()) and not entry.partial and entry.lines == 500
    msgs = pq.read_table(tmp_path / "store" / "messages" / "date=2026-08-09" / f"{stem}.parquet")
    assert msgs.num_rows == 500 - 2  # two lines are collector events


def test_same_stem_twice_converts_one_and_notes_the_other(tmp_path: Path) -> None:
    """x.jsonl beside an archived x.jsonl.gz: the plain file is converted, the other is noted."""
    raw = tmp_path / "raw"
    write_segment(raw / f"{STEMS[0]}.jsonl", SynthSpec(seed=1, snapshot_levels=50), n_lines=100)
    write_segment(raw / f"{STEMS[0]}.jsonl.gz", SynthSpec(seed=1, snapshot_levels=50), n_lines=100)
    summary = run_convert(config(raw, tmp_path / "store"))
    assert summary.converted == 1 and summary.segments[0].source.endswith(".jsonl")
    assert summary.notes == [f"{STEMS[0]}.jsonl.gz: skipped, {STEMS[0]}.jsonl has the same stem"]


SEG = "coinbase_20260810T000000Z.jsonl"


def _msgs(store: Path) -> list[tuple[str, int]]:
    """(conn, seq) of every messages row in the store, sorted."""
    rows = []
    for p in (store / "messages").rglob("*.parquet"):
        t = pq.read_table(p, columns=["conn", "seq"])
        rows += list(zip(t.column("conn").to_pylist(), t.column("seq").to_pylist(), strict=True))
    return sorted(rows)


def test_two_folders_with_the_same_segment_name_never_collide(tmp_path: Path) -> None:
    """Two recorders' midnight segments of one name, converted into one store, keep both outputs and
    entries; a forced re-convert of one replaces only its own files; a moved folder is still found."""
    a, b, store = tmp_path / "rec-a", tmp_path / "rec-b", tmp_path / "store"
    start = 1_786_320_000_000_000_000  # 2026-08-10T00:00:00Z
    write_segment(a / SEG, SynthSpec(seed=1, snapshot_levels=20, start_ns=start), n_lines=120)
    write_segment(b / SEG, SynthSpec(seed=2, snapshot_levels=20, start_ns=start), n_lines=90)
    one = run_convert(config(a, store))
    only_a = _msgs(store)
    two = run_convert(config(b, store))
    assert (one.converted, two.converted, two.skipped) == (1, 1, 0)
    entries = Manifest.load(store).entries
    assert sorted(entries) == [str((a / SEG).resolve()), str((b / SEG).resolve())]
    ea, eb = entries[str((a / SEG).resolve())], entries[str((b / SEG).resolve())]
    assert not set(ea.outputs) & set(eb.outputs)
    assert all((store / o).is_file() for o in ea.outputs + eb.outputs)
    assert ea.stem == "coinbase_20260810T000000Z" and eb.stem.startswith("coinbase_20260810T000000Z_")
    assert len(_msgs(store)) == one.rows["messages"] + two.rows["messages"]
    assert one.rows["messages"] == len(only_a) and two.rows["messages"] > 0

    before = snapshot(store)
    again = run_convert(config(b, store), force=True)
    assert again.converted == 1
    after = snapshot(store)
    assert after["files"] == before["files"]
    assert set(after["manifest"]) == set(before["manifest"])

    moved = tmp_path / "moved-a"
    a.rename(moved)
    skipped = run_convert(config(moved, store))
    assert (skipped.converted, skipped.skipped) == (0, 1)
    forced = run_convert(config(moved, store), force=True)
    assert forced.converted == 1
    entries = Manifest.load(store).entries
    assert sorted(entries) == sorted([str((moved / SEG).resolve()), str((b / SEG).resolve())])
    assert entries[str((moved / SEG).resolve())].outputs == ea.outputs
    assert snapshot(store)["files"] == before["files"]


def test_a_same_named_segment_after_the_first_folder_was_deleted_is_another_source(tmp_path: Path) -> None:
    """Once recorder A's raw folder is pruned, recorder B's segment of the same name is not taken for
    A's moved file: both sets of rows stay."""
    a, b, store = tmp_path / "rec-a", tmp_path / "rec-b", tmp_path / "store"
    start = 1_786_320_000_000_000_000
    write_segment(a / SEG, SynthSpec(seed=1, snapshot_levels=20, start_ns=start), n_lines=120)
    write_segment(b / SEG, SynthSpec(seed=2, snapshot_levels=20, start_ns=start), n_lines=90)
    one = run_convert(config(a, store))
    (a / SEG).unlink()
    two = run_convert(config(b, store))
    assert (two.converted, two.skipped) == (1, 0)
    assert len(Manifest.load(store).entries) == 2
    assert len(_msgs(store)) == one.rows["messages"] + two.rows["messages"]
