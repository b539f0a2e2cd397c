"""`mktpred train` / `evaluate` / `retrain` through the CLI: table, --json, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mktpred.cli.app import app
from tests.unit.features_synth import make_features

runner = CliRunner()



def test_train_json_then_evaluate_and_retrain(tmp_path: Path) -> None:
    """train --json saves a current version; evaluate refuses overlap (exit 2) and scores a later period."""
    pq_dir, models = tmp_path / "pq", tmp_path / "models"
    make_features(pq_dir, seconds=6000, signal=1.0)
    common = ["--parquet-dir", str(pq_dir)]
    res = runner.invoke(app, ["train", "--horizon", "10s", "--model", "logistic", "--folds", "2", "--name", "b",
                              "--models-dir", str(models), "--end", "2025-12-06T06:36:40Z", "--json", *common])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["version"] == "v0001" and doc["promoted"] and doc["metrics"]["pooled"]["auc"] > 0.6
    assert (models / "b" / "current").read_text().strip() == "v0001"
    res = runner.invoke(app, ["evaluate", "--model", str(models / "b"), *common])
    assert res.exit_code == 2 and "training span" in res.output
    res = runner.invoke(app, ["evaluate", "--model", str(models / "b"), "--start", "2025-12-06T06:50:00Z",
                              "--json", *common])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout)
    assert not ev["overlap"] and ev["metrics"]["auc"] > 0.6 and ev["baselines"]["prior"]["rows"] == ev["rows"]
    res = runner.invoke(app, ["retrain", "--name", "b", "--window", "3000s", "--holdout", "1500s",
                              "--models-dir", str(models), *common])
    assert res.exit_code == 0, res.output
    assert "retrain" in res.output and (models / "b" / "history.jsonl").is_file()


def test_train_table_shows_folds_and_baselines(tmp_path: Path) -> None:
    """The Rich table lists every fold and the pooled row for the model and each baseline."""
    make_features(tmp_path / "pq", seconds=3000, signal=0.5)
    res = runner.invoke(app, ["train", "--horizon", "10s", "--model", "logistic", "--folds", "2",
                              "--parquet-dir", str(tmp_path / "pq"), "--models-dir", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    for label in ("1 logistic", "2 prior", "pooled imbalance", "pooled logistic", "auc"):
        assert label in res.stdout


def test_errors_exit_2(tmp_path: Path) -> None:
    """A bad model dir, a fwd_* feature and a missing features table are usage errors, one line."""
    res = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "none"), "--parquet-dir", str(tmp_path)])
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output
    make_features(tmp_path / "pq", seconds=1500, signal=0.0)
    res = runner.invoke(app, ["train", "--horizon", "10s", "--features", "fwd_ret_1s,imb_1",
                              "--parquet-dir", str(tmp_path / "pq"), "--models-dir", str(tmp_path / "m")])
    assert res.exit_code == 2 and "fwd_" in res.output
    res = runner.invoke(app, ["train", "--horizon", "10s", "--parquet-dir", str(tmp_path / "empty")])
    assert res.exit_code == 2
