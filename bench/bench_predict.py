"""Benchmark `mktpred predict`: batch LightGBM predictions over N feature rows into the store.

    .venv/bin/python bench/bench_predict.py                  # 500k rows x 40 features (quick)
    .venv/bin/python bench/bench_predict.py --rows 2000000

Writes a synthetic features table (one product, 1 s grid, so about 5.8 days of 86,400 rows),
trains a LightGBM direction model on its first 50k rows (`mktpred train`, one fold), then runs
`mktpred predict --json` in a child twice: the first run predicts and writes every row, the second
finds every day up to date (it still predicts in memory to score).  Prints wall time, CPU time,
peak RSS and rows/s for each.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import run_mktpred_json
from bench_train import T0, write_features

from mktpred.coinbase.timestamps import format_iso_ns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--features", type=int, default=40)
    ap.add_argument("--train-rows", type=int, default=50_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        write_features(Path(d) / "pq", a.rows, a.features)
        gen = time.perf_counter() - t
        end = format_iso_ns(T0 + a.train_rows * 10**9)
        tr = run_mktpred_json(["train", "--horizon", "10s", "--folds", "1", "--name", "bench", "--parquet-dir",
                               f"{d}/pq", "--models-dir", f"{d}/models", "--end", end, "--json"])
        args = ["predict", "--model", f"{d}/models/bench", "--parquet-dir", f"{d}/pq", "--json"]
        first = run_mktpred_json(args)
        again = run_mktpred_json(args)
        doc = first.doc
        assert doc["rows"] == a.rows == doc["rows_written"], doc
        assert again.doc["rows_written"] == 0, again.doc
        print(f"predict: {a.rows:,} rows x {a.features} features, lightgbm ({tr.wall_s:.1f} s to train on "
              f"{a.train_rows:,} rows; data generation {gen:.1f} s)")
        for label, run in (("first run (predict + write)", first), ("re-run (all days up to date)", again)):
            print(f"  {label}: wall {run.wall_s:.2f} s, cpu {run.cpu_s:.2f} s, peak RSS {run.peak_rss_gib:.2f} GiB, "
                  f"{a.rows / run.wall_s:,.0f} rows/s end to end, {run.doc['rows_per_s']:,} rows/s inside predict")
        print(f"  AUC {doc['metrics']['auc']:.3f} on {doc['scored_rows']:,} rows ({doc['rows_in_train_span']:,} of "
              f"them in the training span); load average {os.getloadavg()[0]:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
