"""Batch predictions: equal to an independent computation, fwd_ret joined, incremental, scored
honestly (in-sample flagged), computed features when missing, bad model directories refused."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from mktpred.errors import UsageError
from mktpred.models.registry import load_model
from mktpred.models.train import train
from mktpred.predict.batch import feature_spec_of as predict_feature_spec
from mktpred.predict.batch import predict
from mktpred.predict.rows import MESSAGE_KEYS, predict_rows
from mktpred.store.manifest import Manifest
from mktpred.store.schemas import TABLE_SCHEMAS
from tests.unit.features_synth import FEATURES, T0, make_features

S = 10**9
PRODUCTS = ("BTC-USD", "ETH-USD")


def _features_by_pyarrow(root: Path) -> pa.Table:
    """The whole features table, read file by file with pyarrow.parquet (not the store reader)."""
    files = sorted((root / "features").glob("date=*/*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).sort_by([("time", "ascending"),
                                                                         ("product_id", "ascending")])


def _predictions_by_duckdb(root: Path, where: str = "true") -> list[tuple[Any, ...]]:
    glob = str(root / "predictions" / "*" / "*.parquet")
    return duckdb.connect().execute(
        f"SELECT epoch_ns(time), product_id, model, version, horizon_s, valid, p_down, p_flat, p_up, ret_bps, "
        f"source, latency_us, fwd_ret FROM read_parquet('{glob}', hive_partitioning = false) WHERE {where} "
        f"ORDER BY time, product_id").fetchall()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A two-product synthetic features table (3000 s, planted imb_1 signal) and a LightGBM model
    trained on its first 1500 s."""
    d = tmp_path_factory.mktemp("trained")
    make_features(d / "pq", seconds=3000, signal=1.0, seed=5, products=PRODUCTS)
    r = train(d / "pq", d / "models", name="lgb", horizon="10s", folds=1, end=T0 + 1500 * S)
    return d / "pq", r.path


def _copy_store(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_predictions_equal_an_independent_computation(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """Every features row gets one prediction equal to the model applied to the pyarrow-read features
    (nulls as NaN), with the identity columns, source batch, null latency and fwd_ret = fwd_ret_10s."""
    root = _copy_store(trained[0], tmp_path / "pq")
    r = predict(trained[1], root)
    feats = _features_by_pyarrow(root)
    m = load_model(trained[1])
    X = np.column_stack([np.asarray(feats.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False),
                                    dtype=np.float64) for c in m.features])
    want = m.predict(X)[:, 0]
    got = _predictions_by_duckdb(root)
    assert r.rows == r.rows_written == feats.num_rows == len(got) == 6000
    assert [g[0] for g in got] == feats.column("time").cast(pa.int64()).to_pylist()
    assert [g[1] for g in got] == feats.column("product_id").to_pylist()
    assert {(g[2], g[3], g[4], g[10], g[11]) for g in got} == {("lgb", "v0001", 10.0, "batch", None)}
    assert [g[5] for g in got] == feats.column("valid").to_pylist()  # invalid rows are predicted too
    assert all(g[6] is None and g[7] is None and g[9] is None for g in got)
    assert np.array_equal(np.array([g[8] for g in got]), want)
    fwd = feats.column("fwd_ret_10s").to_pylist()
    assert [g[12] for g in got] == fwd
    assert sorted(r.outputs) == [f"predictions/date=2025-12-06/batch_lgb_v0001_{p}_2025-12-06.parquet"
                                 for p in PRODUCTS]


def test_score_is_the_independent_auc_and_flags_in_sample(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """After the training span the score is out-of-sample and its AUC equals sklearn's on the same
    rows; over the training span the result says in-sample and warns."""
    root = _copy_store(trained[0], tmp_path / "pq")
    start = T0 + 2000 * S
    r = predict(trained[1], root, start=start)
    assert not r.in_sample and r.rows_in_train_span == 0 and not r.warnings
    feats = _features_by_pyarrow(root)
    t = np.asarray(feats.column("time").cast(pa.int64()).to_numpy())
    fwd = np.asarray(feats.column("fwd_ret_10s").to_numpy(zero_copy_only=False), dtype=np.float64)
    valid = np.asarray(feats.column("valid").to_numpy(zero_copy_only=False), dtype=bool)
    m = load_model(trained[1])
    X = np.column_stack([np.asarray(feats.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False),
                                    dtype=np.float64) for c in m.features])
    keep = (t >= start) & valid & np.isfinite(fwd) & (fwd != 0)
    p = m.predict(X[keep])[:, 0]
    assert r.scored_rows == int(keep.sum()) > 1500
    assert r.metrics["auc"] == pytest.approx(roc_auc_score(fwd[keep] > 0, p), abs=1e-12)
    assert r.metrics["auc"] > r.baselines["prior"]["auc"] + 0.1
    assert r.baselines["prior"]["auc"] == pytest.approx(0.5)
    assert r.rows == 6000  # whole days are predicted and stored; the score covers the span only
    inside = predict(trained[1], root, end=T0 + 1000 * S)
    assert inside.in_sample and inside.rows_in_train_span == inside.scored_rows
    assert any("in-sample" in w for w in inside.warnings)


def test_rerun_writes_nothing_until_features_change(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """A second run writes nothing (same files, same manifest); rewriting the day's features with
    labels filled in rewrites that day's predictions and their fwd_ret."""
    root = _copy_store(trained[0], tmp_path / "pq")
    first = predict(trained[1], root)
    files = sorted((root / "predictions").rglob("*.parquet"))
    stamps = [f.stat().st_mtime_ns for f in files]
    manifest = (root / "_manifest.json").read_text()
    again = predict(trained[1], root)
    assert again.rows_written == 0 and again.days_written == [] and again.days_skipped == ["2025-12-06"]
    assert [f.stat().st_mtime_ns for f in files] == stamps and (root / "_manifest.json").read_text() == manifest
    assert again.metrics == first.metrics
    assert len(_predictions_by_duckdb(root)) == 6000  # no duplicates

    # the day's features are rewritten with new labels (as when the next day completes them)
    ffile = next((root / "features").rglob("*.parquet"))
    tbl = pq.read_table(ffile)
    new_fwd = np.random.default_rng(8).normal(0, 1e-4, tbl.num_rows)
    i = tbl.schema.get_field_index("fwd_ret_10s")
    pq.write_table(tbl.set_column(i, "fwd_ret_10s", pa.array(new_fwd)), ffile)
    os.utime(ffile, ns=(ffile.stat().st_atime_ns, ffile.stat().st_mtime_ns + 10**9))
    third = predict(trained[1], root)
    assert third.rows_written == 6000 and third.days_written == ["2025-12-06"]
    want = dict(zip(zip(tbl.column("time").cast(pa.int64()).to_pylist(), tbl.column("product_id").to_pylist(),
                        strict=True), new_fwd.tolist(), strict=True))
    got = _predictions_by_duckdb(root)
    assert len(got) == 6000 and all(g[12] == want[(g[0], g[1])] for g in got)


def test_three_classes_and_return_fill_their_columns(tmp_path: Path) -> None:
    """A three-class model fills p_down/p_flat/p_up (summing to 1), a return model ret_bps; the other
    output columns stay null in the one table schema."""
    make_features(tmp_path / "pq", seconds=2000, signal=1.0, seed=2)
    three = train(tmp_path / "pq", tmp_path / "m", name="three", horizon="10s", folds=1, model="logistic",
                  threshold_bps=1.0)
    ret = train(tmp_path / "pq", tmp_path / "m", name="ret", horizon="10s", folds=1, model="logistic",
                target="return")
    predict(three.path, tmp_path / "pq")
    predict(ret.path, tmp_path / "pq")
    rows3 = _predictions_by_duckdb(tmp_path / "pq", "model = 'three'")
    rowsr = _predictions_by_duckdb(tmp_path / "pq", "model = 'ret'")
    assert len(rows3) == len(rowsr) == 2000
    assert all(r[9] is None and math.isclose(r[6] + r[7] + r[8], 1.0, abs_tol=1e-12) for r in rows3)
    assert all(r[6] is None and r[7] is None and r[8] is None and r[9] is not None for r in rowsr)
    feats = _features_by_pyarrow(tmp_path / "pq")
    X = np.column_stack([feats.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False) for c in FEATURES])
    assert np.array_equal(np.array([r[9] for r in rowsr]), load_model(ret.path).predict(X)[:, 0])


def test_predict_rows_is_the_batch_prediction(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """predict_rows on feature-row dicts (None for nulls) gives the batch values bit for bit, the
    shared message keys in order and nine-digit UTC times."""
    root = _copy_store(trained[0], tmp_path / "pq")
    predict(trained[1], root)
    feats = _features_by_pyarrow(root).slice(0, 50)
    rows = feats.to_pylist()
    for r in rows:
        r["time"] = int(r["time"].timestamp()) * S  # engine rows carry time as int ns
    rows[3]["imb_5"] = None
    m = load_model(trained[1])
    msgs = predict_rows(m, rows)
    assert list(msgs[0]) == [*MESSAGE_KEYS, "p_up"]
    assert msgs[0]["time"] == "2025-12-06T05:46:40.000000000Z" and msgs[0]["time_ns"] == T0
    assert msgs[0]["horizon_s"] == 10.0 and msgs[0]["model"] == "lgb" and msgs[0]["version"] == "v0001"
    batch = _predictions_by_duckdb(root, f"epoch_ns(time) < {T0 + 25 * S}")
    assert [(mm["time_ns"], mm["product_id"], mm["valid"]) for mm in msgs] == [(b[0], b[1], b[5]) for b in batch]
    for i, (mm, b) in enumerate(zip(msgs, batch, strict=True)):
        if i != 3:
            assert mm["p_up"] == b[8]
    X = np.array([[math.nan if (v := rows[3][c]) is None else float(v) for c in m.features]])
    assert msgs[3]["p_up"] == m.predict(X)[0, 0]
    json.dumps(msgs)  # JSON-ready


def _l2_store(root: Path, seconds: int = 40) -> list[dict[str, Any]]:
    """BTC-USD level2 only: a snapshot, then every 250 ms the best bid and ask move one tick
    (a seeded random walk); returns the rows written."""
    rng = np.random.default_rng(3)
    t0 = T0 + 100_000_000
    rows: list[dict[str, Any]] = []

    def add(seq: int, t: int, snap: bool, levels: list[tuple[str, float, float]]) -> None:
        rows.extend(dict(recv_time=t, time=t, event_time=t // 1000, conn="c", seq=seq, product_id="BTC-USD",
                         is_snapshot=snap, side=s, price=p, size=q) for s, p, q in levels)

    bid = 100.0
    add(0, t0, True, [("bid", bid - k, 1.0 + k) for k in range(6)] + [("ask", bid + 1 + k, 1.0 + k) for k in range(6)])
    for i in range(1, seconds * 4):
        step = float(rng.choice([-1.0, 1.0]))
        new = bid + step
        add(i, t0 + i * 250_000_000, False, [("bid", bid, 0.0), ("ask", bid + 1, 0.0), ("bid", new, 2.0),
                                             ("ask", new + 1, 2.0), ("bid", new - 1, 1.5), ("ask", new + 2, 1.5)])
        bid = new
    d = root / "l2" / "date=2025-12-06"
    d.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=TABLE_SCHEMAS["l2"]), d / "seg.parquet")
    return rows


def test_store_without_features_computes_them(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """A store with only l2: predict builds the features with the model's spec (1 s grid, labels
    1s/10s/60s), says so, and predicts each of their rows."""
    root = tmp_path / "pq"
    _l2_store(root)
    said: list[str] = []
    r = predict(trained[1], root, info=said.append)
    assert r.features_computed is not None and r.features_computed["interval"] == "1s"
    assert r.features_computed["horizons"] == ["1s", "10s", "60s"]
    assert any("computing them" in s for s in said)
    feats = _features_by_pyarrow(root)
    assert feats.num_rows == r.rows == r.features_computed["rows"] >= 35
    assert {"fwd_ret_1s", "fwd_ret_10s", "fwd_ret_60s"} <= set(feats.column_names)
    got = _predictions_by_duckdb(root)
    assert [g[0] for g in got] == feats.column("time").cast(pa.int64()).to_pylist()
    assert [g[12] for g in got] == feats.column("fwd_ret_10s").to_pylist()
    assert sum(g[12] is not None for g in got) > 20  # the last 10 s have no outcome yet
    again = predict(trained[1], root, info=said.append)
    assert again.features_computed is None and again.rows_written == 0


def test_engine_rows_through_predict_rows_equal_batch(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """The same l2 frames fed one by one to the online FeatureEngine (as serve does) and through
    predict_rows give exactly the batch predictions (DESIGN: serve = predict)."""
    from mktpred.features.engine import FeatureEngine

    root = tmp_path / "pq"
    l2 = _l2_store(root)
    predict(trained[1], root)
    m = load_model(trained[1])
    eng = FeatureEngine("BTC-USD", predict_feature_spec(m))
    rows: list[dict[str, Any]] = []
    for seq in sorted({r["seq"] for r in l2}):
        f = [r for r in l2 if r["seq"] == seq]
        rows += eng.on_l2("c", seq, f[0]["time"], f[0]["is_snapshot"], np.array([r["side"] == "ask" for r in f]),
                          np.array([r["price"] for r in f]), np.array([r["size"] for r in f]))
    rows += eng.advance(max(r["time"] for r in l2))
    live = predict_rows(m, rows)
    batch = _predictions_by_duckdb(root)
    assert len(live) == len(batch) >= 35
    assert [(x["time_ns"], x["valid"], x["p_up"]) for x in live] == [(b[0], b[5], b[8]) for b in batch]


def test_train_records_the_feature_spec(tmp_path: Path) -> None:
    """model.json's feature_spec names the grid, every label horizon of the table and the cross
    product (the one product whose cross_ret_1 is always null)."""
    feats = make_features(tmp_path / "src", seconds=1500, signal=0.5, products=PRODUCTS)
    rng = np.random.default_rng(0)
    is_eth = np.asarray(feats.column("product_id").to_pylist()) == "ETH-USD"
    cross = pa.array(np.where(is_eth, rng.normal(size=feats.num_rows), np.nan), mask=~is_eth)
    feats = feats.append_column("cross_ret_1", cross).append_column("cross_ofi_1", cross)
    d = tmp_path / "pq" / "features" / "date=2025-12-06"
    d.mkdir(parents=True)
    pq.write_table(feats, d / "f.parquet")
    r = train(tmp_path / "pq", tmp_path / "m", name="x", horizon="10s", folds=1, model="logistic")
    assert r.meta["feature_spec"] == {"interval": "1s", "interval_ns": S, "horizons": ["1s", "10s", "60s"],
                                      "horizons_ns": [S, 10 * S, 60 * S], "cross": "BTC-USD"}
    assert "cross_ret_1" in r.meta["features"]
    spec = predict_feature_spec(load_model(r.path))
    assert (spec.interval_ns, spec.horizons_ns, spec.cross) == (S, (S, 10 * S, 60 * S), "BTC-USD")


def test_bad_model_dirs_are_usage_errors(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """A missing directory, a model.json without its model file, and a model whose features the
    table lacks are refused (UsageError, exit 2) before anything is written."""
    root = _copy_store(trained[0], tmp_path / "pq")
    with pytest.raises(UsageError, match="no model directory"):
        predict(tmp_path / "nope", root)
    half = tmp_path / "half" / "v0001"
    half.mkdir(parents=True)
    (half / "model.json").write_text((trained[1] / "model.json").read_text())
    with pytest.raises(UsageError, match="missing"):
        predict(half, root)
    meta = json.loads((trained[1] / "model.json").read_text())
    other = tmp_path / "other" / "v0001"
    other.mkdir(parents=True)
    meta["features"] = [*meta["features"][:-1], "cross_ret_1"]
    (other / "model.json").write_text(json.dumps(meta))
    (other / "model.lgbm.txt").write_text((trained[1] / "model.lgbm.txt").read_text())
    with pytest.raises(UsageError, match=r"cross_ret_1.*incompatible"):
        predict(other, root)
    assert not (root / "predictions").exists()
    assert not any(k.startswith("predictions:") for k in Manifest.load(root).entries)
