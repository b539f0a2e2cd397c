"""--import-live: hand-written prediction segments into the predictions table (sealed only by
default, a torn .part tail never imported, incremental, fwd_ret joined from the features table)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from mktpred.coinbase.timestamps import format_iso_ns
from mktpred.errors import UsageError
from mktpred.predict.live import import_live, read_segment
from mktpred.store.manifest import Manifest
from tests.unit.features_synth import T0, make_features

S = 10**9
SEALED = "predictions_20251206T054640Z.jsonl"
OPEN = "predictions_20251206T060000Z.jsonl.part"


def _msg(t: int, product: str = "BTC-USD", valid: bool = True, p_up: float | None = 0.5, lat: int = 1200,
         **extra: Any) -> str:
    """One message as serve writes it (shared key order)."""
    m: dict[str, Any] = {"time": format_iso_ns(t), "time_ns": t, "product_id": product, "model": "m",
                         "version": "v0001", "horizon_s": 10.0, "valid": valid, "p_up": p_up, "latency_us": lat}
    m.update(extra)
    return json.dumps(m)


def _rows(root: Path) -> list[tuple[Any, ...]]:
    glob = str(root / "predictions" / "*" / "*.parquet")
    return duckdb.connect().execute(
        f"SELECT epoch_ns(time), product_id, model, version, horizon_s, valid, p_down, p_flat, p_up, ret_bps, "
        f"source, latency_us, fwd_ret FROM read_parquet('{glob}', hive_partitioning = false) "
        f"ORDER BY time, product_id").fetchall()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, dict[tuple[int, str], float | None]]:
    """A features table (100 s, BTC-USD) and a predictions folder with one sealed segment (three
    messages and one broken line) and one open .part (two complete lines and a torn one)."""
    feats = make_features(tmp_path / "pq", seconds=100, signal=0.0, seed=4)
    fwd = dict(zip(zip(feats.column("time").cast("int64").to_pylist(), feats.column("product_id").to_pylist(),
                       strict=True), feats.column("fwd_ret_10s").to_pylist(), strict=True))
    pdir = tmp_path / "predictions"
    pdir.mkdir()
    (pdir / SEALED).write_text("\n".join([
        _msg(T0 + 5 * S, p_up=0.61),
        _msg(T0 + 6 * S, valid=False, p_up=0.42, lat=900),
        "{not json",
        _msg(T0 + 500 * S, p_up=None, lat=77),  # beyond the features table: no outcome
    ]) + "\n")
    (pdir / OPEN).write_text(_msg(T0 + 7 * S, p_up=0.7) + "\n" + _msg(T0 + 8 * S, p_up=0.3) + "\n"
                             + _msg(T0 + 9 * S)[:40])
    (pdir / "notes.txt").write_text("not a segment\n")
    return tmp_path / "pq", pdir, fwd


def test_sealed_segments_become_live_rows(setup: tuple[Path, Path, dict[tuple[int, str], float | None]]) -> None:
    """Only the sealed segment is read: its three messages become rows with source live, their
    latency, and fwd_ret joined by (time, product); the broken line is counted, not imported."""
    root, pdir, fwd = setup
    r = import_live(pdir, root)
    assert r.segments_imported == [SEALED] and r.invalid_lines == 1 and r.truncated_lines == 0
    assert r.rows == 3 and r.rows_with_outcome == 2
    assert _rows(root) == [
        (T0 + 5 * S, "BTC-USD", "m", "v0001", 10.0, True, None, None, 0.61, None, "live", 1200, fwd[(T0 + 5 * S, "BTC-USD")]),
        (T0 + 6 * S, "BTC-USD", "m", "v0001", 10.0, False, None, None, 0.42, None, "live", 900, fwd[(T0 + 6 * S, "BTC-USD")]),
        (T0 + 500 * S, "BTC-USD", "m", "v0001", 10.0, True, None, None, None, None, "live", 77, None),
    ]
    assert fwd[(T0 + 5 * S, "BTC-USD")] is not None
    entry = Manifest.load(root).entries[f"predictions:live:{SEALED}"]
    assert entry.rows == {"predictions": 3} and entry.invalid == 1
    assert entry.outputs == ["predictions/date=2025-12-06/live_predictions_20251206T054640Z.parquet"]


def test_rerun_imports_nothing_and_sealing_the_part_replaces_it(
        setup: tuple[Path, Path, dict[tuple[int, str], float | None]]) -> None:
    """A re-run skips everything; --include-latest imports the .part's two complete lines (the torn
    one is counted); once sealed with the third line, its rows are replaced, not duplicated."""
    root, pdir, _ = setup
    import_live(pdir, root)
    again = import_live(pdir, root)
    assert again.segments_imported == [] and again.segments_skipped == [SEALED] and again.rows == 0
    part = import_live(pdir, root, include_latest=True)
    assert part.segments_imported == [OPEN] and part.rows == 2 and part.truncated_lines == 1
    assert [(r[0] - T0) // S for r in _rows(root)] == [5, 6, 7, 8, 500]
    # serve finishes the line and seals the segment at shutdown
    text = (pdir / OPEN).read_text()
    (pdir / OPEN).write_text(text[: text.rfind("\n") + 1] + _msg(T0 + 9 * S, p_up=0.55) + "\n")
    (pdir / OPEN).rename(pdir / OPEN.removesuffix(".part"))
    sealed = import_live(pdir, root)
    assert sealed.segments_imported == [OPEN.removesuffix(".part")] and sealed.rows == 3
    rows = _rows(root)
    assert [(r[0] - T0) // S for r in rows] == [5, 6, 7, 8, 9, 500] and rows[4][8] == 0.55
    assert not Manifest.load(root).entries[f"predictions:live:{OPEN.removesuffix('.part')}"].partial


def test_new_features_fill_the_outcome(tmp_path: Path) -> None:
    """Imported before the features exist, fwd_ret is null; once features are written for that day
    the segment is imported again and fwd_ret filled."""
    pdir = tmp_path / "predictions"
    pdir.mkdir()
    (pdir / SEALED).write_text(_msg(T0 + 5 * S) + "\n")
    first = import_live(pdir, tmp_path / "pq")
    assert first.rows == 1 and first.rows_with_outcome == 0 and _rows(tmp_path / "pq")[0][12] is None
    feats = make_features(tmp_path / "pq", seconds=20, signal=0.0, seed=1)
    second = import_live(pdir, tmp_path / "pq")
    assert second.segments_imported == [SEALED] and second.rows_with_outcome == 1
    assert _rows(tmp_path / "pq")[0][12] == feats.column("fwd_ret_10s")[5].as_py()


def test_read_segment_rules(tmp_path: Path) -> None:
    """A torn tail counts only in a .part; messages without outputs, a non-bool valid or a string
    time_ns are invalid; three-class and return outputs are kept."""
    seg = tmp_path / "x.jsonl"
    seg.write_text("\n".join([
        _msg(T0, p_up=0.2, p_down=0.5, p_flat=0.3),
        json.dumps({"time_ns": T0, "product_id": "B", "model": "m", "version": "v", "horizon_s": 1, "valid": True,
                    "ret_bps": -1.5}),
        json.dumps({"time_ns": T0, "product_id": "B", "model": "m", "version": "v", "horizon_s": 1, "valid": True}),
        _msg(T0, valid="yes"),  # type: ignore[arg-type]
        "[1, 2]",
    ]) + "\n" + _msg(T0))
    rows, lines, invalid, truncated = read_segment(seg, partial=True)
    assert (lines, invalid, truncated) == (5, 3, 1)
    assert (rows[0]["p_down"], rows[0]["p_flat"], rows[0]["p_up"], rows[0]["ret_bps"]) == (0.5, 0.3, 0.2, None)
    assert rows[1]["ret_bps"] == -1.5 and rows[1]["latency_us"] is None and rows[1]["horizon_s"] == 1.0
    rows, lines, invalid, truncated = read_segment(seg, partial=False)
    assert (lines, invalid, truncated, len(rows)) == (6, 3, 0, 3)


def test_missing_predictions_dir_is_a_usage_error(tmp_path: Path) -> None:
    """No predictions folder: UsageError (exit 2), nothing written."""
    with pytest.raises(UsageError, match="no predictions directory"):
        import_live(tmp_path / "none", tmp_path / "pq")
