"""Stage 4 models: labels, purged folds, baselines, honesty on zero and planted signal, registry."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mktpred.coinbase.timestamps import parse_rfc3339_ns
from mktpred.errors import DataError, UsageError
from mktpred.models.data import LabelSpec
from mktpred.models.evaluate import evaluate
from mktpred.models.folds import walk_forward
from mktpred.models.metrics import direction_metrics, return_metrics
from mktpred.models.registry import load_model
from mktpred.models.retrain import retrain
from mktpred.models.train import train
from tests.unit.features_synth import FEATURES, T0, make_features

S = 10**9


def auc_se(n: int) -> float:
    """Standard error of the AUC of an uninformative score on n balanced rows (Hanley-McNeil, H0):
    sqrt((n1 + n2 + 1) / (12 n1 n2)) with n1 = n2 = n/2."""
    h = n / 2
    return math.sqrt((2 * h + 1) / (12 * h * h))


def test_direction_labels_drop_no_move_and_three_classes() -> None:
    """Direction drops zero moves; three classes split at ±threshold bps; return is in bps."""
    fwd = np.array([2e-4, -1e-4, 0.0, 5e-5, np.nan])
    y, keep = LabelSpec().labels(fwd)
    assert keep.tolist() == [True, True, False, True, False]
    assert y[keep].tolist() == [1, 0, 1]
    y3, keep3 = LabelSpec("direction", 1.0).labels(np.array([2e-4, -2e-4, 0.0, 5e-5, np.nan]))
    assert y3[keep3].tolist() == [2, 0, 1, 1]
    r, _ = LabelSpec("return").labels(fwd[:2])
    assert r.tolist() == pytest.approx([2.0, -1.0])


def test_walk_forward_blocks_and_purge_by_hand() -> None:
    """1000 s cut into 5 blocks of 200 s; fold k trains before block k minus the purge gap."""
    t = T0 + np.arange(1001) * S  # span [0 s, 1000 s] + 1 ns
    folds = walk_forward(t, 4, 50 * S)
    assert [(f.test_start - T0) // S for f in folds] == [200, 400, 600, 800]
    assert [(f.test_end - T0) // S for f in folds] == [400, 600, 800, 1000]
    assert all(f.train_start == T0 and f.train_end == f.test_start - 50 * S for f in folds)
    with pytest.raises(DataError):
        walk_forward(t, 4, 250 * S)


def test_metrics_by_hand() -> None:
    """R² against zero, IC, hit rate and accuracy/AUC on tiny hand-computed examples."""
    r = return_metrics(np.array([1.0, -2.0, 3.0]), np.array([1.0, -1.0, 1.0]))
    assert r["r2"] == pytest.approx(1 - (0 + 1 + 4) / 14)
    assert r["hit_rate"] == pytest.approx(1.0)
    d = direction_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]))
    assert d["accuracy"] == pytest.approx(0.5)
    assert d["auc"] == pytest.approx(0.75)


def test_zero_signal_no_skill(tmp_path: Path) -> None:
    """No dependence: LightGBM's pooled AUC is within 4 standard errors of 0.5 and of prior's."""
    make_features(tmp_path / "pq", seconds=6000, signal=0.0, seed=3)
    r = train(tmp_path / "pq", tmp_path / "models", name="z", horizon="10s", folds=2)
    m = r.meta["metrics"]["pooled"]
    tol = 4 * auc_se(m["rows"])  # ~0.04 for ~3,700 test rows
    assert abs(m["auc"] - 0.5) <= tol, (m["auc"], tol)
    assert m["auc"] - r.meta["baselines"]["prior"]["pooled"]["auc"] <= tol * math.sqrt(2)
    assert not r.warnings


def test_planted_signal_beats_prior(tmp_path: Path) -> None:
    """imb_1 drives the sign: LightGBM and logistic beat prior by far more than the noise."""
    make_features(tmp_path / "pq", seconds=6000, signal=1.0, seed=4)
    for kind in ("lightgbm", "logistic"):
        r = train(tmp_path / "pq", tmp_path / "models", name=kind, horizon="10s", folds=2, model=kind)
        m, prior = r.meta["metrics"]["pooled"], r.meta["baselines"]["prior"]["pooled"]
        assert m["auc"] - prior["auc"] > 10 * auc_se(m["rows"]), (kind, m["auc"])
        assert r.meta["baselines"]["imbalance"]["pooled"]["auc"] > 0.7


def test_feature_columns_exclude_labels_and_identity(tmp_path: Path) -> None:
    """fwd_* and identity columns are refused as features and never chosen by default."""
    make_features(tmp_path / "pq", seconds=2000, signal=0.5)
    for bad in ("fwd_ret_1s", "time", "conn"):
        with pytest.raises(UsageError, match="refusing"):
            train(tmp_path / "pq", tmp_path / "m", name="x", horizon="10s", folds=1, features=[bad], model="logistic")
    r = train(tmp_path / "pq", tmp_path / "m", name="x", horizon="10s", folds=1, model="logistic")
    assert r.meta["features"] == FEATURES


def test_leaking_feature_is_flagged(tmp_path: Path) -> None:
    """A copy of the label under an innocent name gives AUC > 0.95 and train warns."""
    rng = np.random.default_rng(9)
    n = 3000
    base = make_features(tmp_path / "tmp", seconds=n, signal=0.0, seed=9)
    leak = np.asarray(base.column("fwd_ret_10s").to_numpy()) + rng.normal(0, 1e-6, n)
    make_features(tmp_path / "pq", seconds=n, signal=0.0, seed=9, extra={"leak": leak})
    r = train(tmp_path / "pq", tmp_path / "m", name="x", horizon="10s", folds=1, model="logistic")
    assert r.meta["metrics"]["pooled"]["auc"] > 0.95
    assert any("leak" in w for w in r.warnings)


def test_no_training_row_in_test_block_or_purge(tmp_path: Path) -> None:
    """From evaluation.parquet and model.json: test rows lie in their block, training ends a purge before."""
    make_features(tmp_path / "pq", seconds=4000, signal=0.5)
    r = train(tmp_path / "pq", tmp_path / "m", name="x", horizon="10s", folds=3, model="logistic")
    meta = json.loads((r.path / "model.json").read_text())
    ev = pq.read_table(r.path / "evaluation.parquet")
    t = np.asarray(ev.column("time").cast("int64").to_numpy())
    fold = np.asarray(ev.column("fold").to_numpy())
    assert set(ev.column_names) >= {"time", "product_id", "fold", "label", "prediction", "fwd_ret", "spread_bps",
                                    "baseline_prior", "baseline_imbalance", "baseline_logistic"}
    for f in meta["folds"]:
        ts, te = parse_rfc3339_ns(f["test_start"]), parse_rfc3339_ns(f["test_end"])
        tr_end = parse_rfc3339_ns(f["train_end"])
        assert f["purge_s"] >= 10 + 300
        assert tr_end <= ts - int(f["purge_s"] * S)
        mine = t[fold == f["fold"]]
        assert len(mine) == f["rows_test"] and ((mine >= ts) & (mine < te)).all()
        # the training rows of this fold (all rows before train_end) never reach its test block
        assert parse_rfc3339_ns(f["train_start"]) < tr_end < ts
    assert len(t) == sum(f["rows_test"] for f in meta["folds"])


def test_same_seed_same_metrics(tmp_path: Path) -> None:
    """Two LightGBM runs on the same data and seed give identical metrics and predictions."""
    make_features(tmp_path / "pq", seconds=3000, signal=0.5)
    a = train(tmp_path / "pq", tmp_path / "m", name="x", horizon="10s", folds=1, seed=7)
    b = train(tmp_path / "pq", tmp_path / "m", name="x", horizon="10s", folds=1, seed=7)
    assert (a.version, b.version) == ("v0001", "v0002")
    assert a.meta["metrics"] == b.meta["metrics"] and a.meta["baselines"] == b.meta["baselines"]
    X = np.random.default_rng(0).normal(size=(50, len(a.meta["features"])))
    assert np.array_equal(load_model(a.path).predict(X), load_model(b.path).predict(X))
    assert load_model(tmp_path / "m" / "x").version == "v0002"


def test_evaluate_refuses_overlap(tmp_path: Path) -> None:
    """evaluate refuses the training span unless --allow-overlap; a later period scores."""
    make_features(tmp_path / "pq", seconds=6000, signal=1.0)
    mid = T0 + 3000 * S
    r = train(tmp_path / "pq", tmp_path / "m", name="x", horizon="10s", folds=1, model="logistic", end=mid)
    with pytest.raises(UsageError, match="training span"):
        evaluate(r.path, tmp_path / "pq")
    ov = evaluate(r.path, tmp_path / "pq", allow_overlap=True)
    assert ov.overlap and ov.warnings
    later = evaluate(r.path, tmp_path / "pq", start=mid + 400 * S)
    assert not later.overlap and later.metrics["auc"] > 0.6
    assert later.rows > 2000


def test_retrain_promotes_only_when_better(tmp_path: Path) -> None:
    """No current: promoted; a challenger no better than the current by the margin: not promoted."""
    make_features(tmp_path / "pq", seconds=8000, signal=1.0)
    kw = dict(name="x", window="3000s", holdout="2000s", horizon="10s", model="logistic", folds=1)
    first = retrain(tmp_path / "pq", tmp_path / "m", **kw)  # type: ignore[arg-type]
    assert first.promoted and first.record["current"] is None
    second = retrain(tmp_path / "pq", tmp_path / "m", **kw)  # type: ignore[arg-type]
    assert not second.promoted  # same data, same seed: equal score, below the margin
    assert second.record["challenger"]["auc"] == pytest.approx(second.record["current"]["auc"])
    hist = [json.loads(line) for line in (tmp_path / "m" / "x" / "history.jsonl").read_text().splitlines()]
    assert [h["promoted"] for h in hist] == [True, False]
    assert (tmp_path / "m" / "x" / "current").read_text().strip() == first.record["challenger"]["version"]


def test_bad_model_dirs(tmp_path: Path) -> None:
    """Missing, pointer-less and half-written model directories raise UsageError."""
    with pytest.raises(UsageError):
        load_model(tmp_path / "nothing")
    (tmp_path / "n").mkdir()
    with pytest.raises(UsageError, match="current"):
        load_model(tmp_path / "n")
    (tmp_path / "n" / "v0001").mkdir()
    (tmp_path / "n" / "v0001" / "model.json").write_text(json.dumps(
        {"model": "lightgbm", "target": "direction", "features": ["a"], "horizon_s": 10}))
    with pytest.raises(UsageError, match="missing"):
        load_model(tmp_path / "n" / "v0001")
