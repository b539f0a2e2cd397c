"""`mktpred predict` through the CLI: --json keys, the score table, --import-live, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mktpred.cli.app import app
from tests.unit.features_synth import T0, make_features

runner = CliRunner()
S = 10**9
JSON_KEYS = ["name", "version", "path", "parquet_dir", "span", "products", "rows", "rows_written", "days_written",
             "days_skipped", "outputs", "features_computed", "train_span", "in_sample", "rows_in_train_span",
             "scored_rows", "metrics", "baselines", "warnings", "elapsed_s", "rows_per_s"]


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, Path]:
    """2000 s of synthetic features and a logistic model trained on the first 1000 s."""
    make_features(tmp_path / "pq", seconds=2000, signal=1.0, seed=6)
    res = runner.invoke(app, ["train", "--horizon", "10s", "--model", "logistic", "--folds", "1", "--name", "b",
                              "--models-dir", str(tmp_path / "models"), "--parquet-dir", str(tmp_path / "pq"),
                              "--end", "2025-12-06T06:03:20Z"])
    assert res.exit_code == 0, res.output
    return tmp_path / "pq", tmp_path / "models" / "b"


def test_json_summary_and_rerun(store: tuple[Path, Path]) -> None:
    """--json has the documented keys; a later span scores out-of-sample; a re-run writes nothing."""
    pq_dir, model = store
    args = ["predict", "--model", str(model), "--parquet-dir", str(pq_dir), "--start", "2025-12-06T06:09:00Z", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert list(doc) == JSON_KEYS
    assert doc["rows"] == doc["rows_written"] == 2000 and doc["days_written"] == ["2025-12-06"]
    assert not doc["in_sample"] and doc["metrics"]["auc"] > 0.6 and set(doc["baselines"]) == {"prior", "imbalance"}
    assert doc["span"] == {"start": "2025-12-06T06:09:00.000000000Z", "end": None}
    assert doc["scored_rows"] == doc["metrics"]["rows"] == doc["baselines"]["prior"]["rows"] > 500
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["rows_written"] == 0 and again["days_skipped"] == ["2025-12-06"] and again["metrics"] == doc["metrics"]


def test_table_says_in_sample(store: tuple[Path, Path]) -> None:
    """Over the training span the table title says IN-SAMPLE, a warning explains, exit 0."""
    pq_dir, model = store
    res = runner.invoke(app, ["predict", "--model", str(model), "--parquet-dir", str(pq_dir)])
    assert res.exit_code == 0, res.output
    for text in ("IN-SAMPLE", "model", "prior", "imbalance", "auc", "warning: ", "in-sample"):
        assert text in res.output, text
    assert "2,000 rows predicted, 2,000 written" in res.output


def test_import_live_json(store: tuple[Path, Path], tmp_path: Path) -> None:
    """--import-live alone imports a sealed segment (--json of the import); with --model both run."""
    pq_dir, model = store
    pdir = tmp_path / "preds"
    pdir.mkdir()
    msg = {"time": "2025-12-06T05:46:45.000000000Z", "time_ns": T0 + 5 * S, "product_id": "BTC-USD", "model": "b",
           "version": "v0001", "horizon_s": 10.0, "valid": True, "p_up": 0.5, "latency_us": 100}
    (pdir / "predictions_20251206T054640Z.jsonl").write_text(json.dumps(msg) + "\n")
    res = runner.invoke(app, ["predict", "--import-live", "--predictions-dir", str(pdir), "--parquet-dir", str(pq_dir),
                              "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["rows"] == 1 and doc["rows_with_outcome"] == 1 and doc["segments_imported"] == [
        "predictions_20251206T054640Z.jsonl"]
    res = runner.invoke(app, ["predict", "--import-live", "--model", str(model), "--predictions-dir", str(pdir),
                              "--parquet-dir", str(pq_dir), "--json"])
    assert res.exit_code == 0, res.output
    both = json.loads(res.stdout)
    assert both["rows_written"] == 2000 and both["live"]["segments_skipped"] == ["predictions_20251206T054640Z.jsonl"]


def test_bad_model_dirs_exit_2(store: tuple[Path, Path], tmp_path: Path) -> None:
    """Missing, half-written and incompatible model directories, and no mode at all: one error line, exit 2."""
    pq_dir, model = store
    half = tmp_path / "half" / "v0001"
    half.mkdir(parents=True)
    (half / "model.json").write_text((model / "v0001" / "model.json").read_text())
    odd = tmp_path / "odd" / "v0001"
    odd.mkdir(parents=True)
    meta = json.loads((model / "v0001" / "model.json").read_text())
    meta["features"] = [*meta["features"], "cross_ofi_1"]
    (odd / "model.json").write_text(json.dumps(meta))
    lin = json.loads((model / "v0001" / "model.linear.json").read_text())
    for k in ("mean", "scale"):
        lin[k].append(0.0 if k == "mean" else 1.0)
    lin["coef"] = [[*row, 0.0] for row in lin["coef"]]
    (odd / "model.linear.json").write_text(json.dumps(lin))
    for args, text in ((["--model", str(tmp_path / "none")], "no model directory"),
                       (["--model", str(half)], "missing"),
                       (["--model", str(odd)], "incompatible feature set"),
                       ([], "--model"),
                       (["--import-live", "--predictions-dir", str(tmp_path / "nowhere")], "no predictions directory")):
        res = runner.invoke(app, ["predict", "--parquet-dir", str(pq_dir), *args])
        assert res.exit_code == 2, (args, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], (args, res.output)
    assert not (pq_dir / "predictions").exists()


def test_help_has_an_example() -> None:
    """`mktpred predict --help` has an example, --config and --import-live; the root help lists it."""
    res = runner.invoke(app, ["predict", "--help"], catch_exceptions=False)
    assert res.exit_code == 0 and "Example" in res.output and "mktpred predict" in res.output
    assert "--config" in res.output and "--import-live" in res.output
    assert "predict" in runner.invoke(app, ["--help"], catch_exceptions=False).output


def test_store_without_features_says_it_computes_them(store: tuple[Path, Path], tmp_path: Path) -> None:
    """On a store with only l2, the CLI says it computes the features and --json reports them."""
    from tests.unit.test_predict import _l2_store

    _l2_store(tmp_path / "l2only")
    _, model = store
    res = runner.invoke(app, ["predict", "--model", str(model), "--parquet-dir", str(tmp_path / "l2only"), "--json"])
    assert res.exit_code == 0, res.output
    assert "no features for the span: computing them from l2/trades (1s grid, labels 1s, 10s, 60s)" in res.stderr
    doc = json.loads(res.stdout)
    assert doc["features_computed"]["rows"] == doc["rows"] == doc["rows_written"] >= 35
