"""Benchmark `mktpred train`: N feature rows x ~40 features, 5 purged folds, LightGBM.

    .venv/bin/python bench/bench_train.py                 # 200k rows (quick)
    .venv/bin/python bench/bench_train.py --rows 1000000  # the issue's target: under 60 s on 2 cores

Writes a synthetic features table (one product, 1 s grid, a planted imb_1 dependence) to a
temporary store, runs `mktpred train --json` in a child and prints wall time, CPU time and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from _common import run_mktpred_json

from mktpred.store.schemas import TS_NS
from mktpred.store.writer import PartitionedWriter

T0 = 1_765_000_000 * 10**9


def write_features(root: Path, rows: int, n_features: int, seed: int = 0) -> None:
    """A features table in chunks of 250k rows (bounded memory while generating)."""
    rng = np.random.default_rng(seed)
    names = ["imb_1", "spread_bps"] + [f"x_{i}" for i in range(n_features - 2)]
    w = PartitionedWriter(root, "bench", schemas={"features": pa.schema(
        [pa.field("time", TS_NS), pa.field("product_id", pa.string()), pa.field("valid", pa.bool_())]
        + [pa.field(c, pa.float64()) for c in names] + [pa.field("fwd_ret_10s", pa.float64())])},
        date_columns=("time",))
    for lo in range(0, rows, 250_000):
        n = min(250_000, rows - lo)
        cols = {c: rng.normal(size=n) for c in names}
        cols["imb_1"] = rng.uniform(-1, 1, n)
        up = rng.uniform(size=n) < 1 / (1 + np.exp(-2 * cols["imb_1"]))
        fwd = np.where(up, 1.0, -1.0) * rng.exponential(2e-4, n)
        w.write("features", pa.table({"time": pa.array(T0 + (lo + np.arange(n)) * 10**9, pa.int64()).cast(TS_NS),
                                      "product_id": ["BTC-USD"] * n, "valid": np.ones(n, bool), **cols,
                                      "fwd_ret_10s": fwd}))
    w.commit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--features", type=int, default=40)
    ap.add_argument("--folds", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        write_features(Path(d) / "pq", a.rows, a.features)
        gen = time.perf_counter() - t
        run = run_mktpred_json(["train", "--horizon", "10s", "--folds", str(a.folds), "--name", "bench",
                                "--parquet-dir", f"{d}/pq", "--models-dir", f"{d}/models", "--json"])
    pooled = run.doc["metrics"]["pooled"]
    print(f"train: {a.rows:,} rows x {a.features} features, {a.folds} folds, lightgbm: wall {run.wall_s:.1f} s, "
          f"cpu {run.cpu_s:.1f} s, peak RSS {run.peak_rss_gib:.2f} GiB (data generation {gen:.1f} s); "
          f"pooled AUC {pooled['auc']:.3f} on {pooled['rows']:,} test rows; load average "
          f"{os.getloadavg()[0]:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
