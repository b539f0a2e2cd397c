"""Benchmark ``mktpred validate`` on a synthetic store of ~100M rows.

    .venv/bin/python bench/bench_validate.py [--rows 100e6] [--dir /tmp/mktpred-bench-validate]
                                             [--threads 2] [--repeat 1] [--regen]

The store is written (once, then cached) per the contract straight to Parquet by
``mktpred.testing.store``: two products, 42 frames/s on one connection per UTC day (the real
feed's rate), 5 level2 rows per level2 frame, ticker, trades, a heartbeat a second, the
collector's events and a manifest; zstd, 1M-row row groups, page checksums on.  Then
``validate_store`` runs over it (every check, in this process) and the script prints rows, files,
GiB, wall seconds, rows/s, seconds per stage and the load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from mktpred.testing.store import NS_PER_S, ConnSpec, write_synthetic_store
from mktpred.validate import validate_store

DAY0 = 1763683200 * NS_PER_S  # 2025-11-21T00:00:00Z
ROWS_PER_DAY_AT_42 = 86_398 * 42 * 5.1  # measured: ~5.1 rows (all tables) per frame


def build(root: Path, rows: float) -> None:
    marker = root / ".rows"
    if marker.exists() and marker.read_text() == f"{rows:.0f}":
        return
    shutil.rmtree(root, ignore_errors=True)
    days = max(1, round(rows / ROWS_PER_DAY_AT_42))
    seconds = min(86_398.0, rows / 42 / 5.1)
    t0 = time.perf_counter()
    for d in range(days):
        spec = ConnSpec(f"day{d:03d}-1", DAY0 + d * 86_400 * NS_PER_S + NS_PER_S, seconds,
                        frames_per_s=42, l2_rows_per_frame=5)
        write_synthetic_store(root / "parquet", [spec], raw_dir=root / "raw", seed=d)
        print(f"  day {d + 1}/{days} written ({time.perf_counter() - t0:,.0f} s)", flush=True)
    marker.write_text(f"{rows:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=float, default=100e6, help="approximate rows in the store")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/mktpred-bench-validate"))
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads and decode workers")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--regen", action="store_true", help="rebuild the store even if cached")
    args = ap.parse_args()
    if args.regen:
        shutil.rmtree(args.dir, ignore_errors=True)
    print(f"cores: {os.cpu_count()}, building/reusing a store of ~{args.rows:,.0f} rows in {args.dir}")
    build(args.dir, args.rows)
    for i in range(args.repeat):
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        report = validate_store(args.dir / "parquet", raw_dir=args.dir / "raw", threads=args.threads)
        wall = time.perf_counter() - t0
        rows = sum(report.rows.values())
        stages = ", ".join(f"{k} {v:.1f}" for k, v in report.timings.items())
        print(f"run {i + 1}: {rows:,} rows in {report.files} files ({report.bytes / 2**30:.2f} GiB), "
              f"threads {args.threads}: {wall:.1f} s, {rows / wall / 1e6:.2f}M rows/s, status {report.status.value} "
              f"| stages s: {stages} | load before {load:.2f}")
        for c in report.checks:
            if c.status.value != "pass":
                print(f"  {c.name}: {c.status.value}: {c.details}")


if __name__ == "__main__":
    main()
