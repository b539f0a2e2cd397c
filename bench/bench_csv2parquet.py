"""Benchmark ``mktpred csv2parquet`` on generated Tardis ``incremental_book_L2`` CSV.

    .venv/bin/python bench/bench_csv2parquet.py [--sizes 0.25,1] [--dir /tmp/mktpred-bench-csv]
                                                [--compress none|gz|zst] [--threads 0]

For each size: generate (cached) one Tardis-style book file (two products, a 2,000-level snapshot
per side, then incremental updates with ~30 % removals; values formatted as Tardis does, no
quotes), then run ``mktpred csv2parquet --force --json`` in a child process and print wall
seconds, MB/s of the file as stored, rows/s and the child's peak RSS (GiB).  Peak RSS staying
flat across sizes shows memory does not grow with the input.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
from pathlib import Path

import numpy as np
from _common import run_mktpred_json

HEADER = b"exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"
START_US = 1_786_309_548_228_568


def _block(rng: np.random.Generator, n: int, t0: int, snapshot: bool) -> bytes:
    """``n`` rows as Tardis CSV text (vectorised: numpy formats each column, Python joins lines)."""
    ts = t0 + np.cumsum(rng.integers(0, 2_000, n))
    local = ts + rng.integers(500, 5_000, n)
    prod = rng.integers(0, 2, n)
    side = rng.integers(0, 2, n)
    base = np.where(prod == 0, 65_000.0, 1_900.0)
    price = np.round(base + np.where(side == 0, -1, 1) * rng.integers(1, 2_000, n) * 0.01, 2)
    amount = np.round(rng.random(n) * 3, 8)
    if not snapshot:
        amount[rng.random(n) < 0.3] = 0.0
    sym = np.array(["BTC-USD", "ETH-USD"])[prod]
    sides = np.array(["bid", "ask"])[side]
    snap = "true" if snapshot else "false"
    lines = [f"coinbase,{s},{a},{b},{snap},{d},{p:.2f},{q:.8g}"
             for s, a, b, d, p, q in zip(sym, ts.tolist(), local.tolist(), sides, price.tolist(),
                                         amount.tolist(), strict=True)]
    return ("\n".join(lines) + "\n").encode()


def ensure_csv(directory: Path, gb: float, compress: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    plain = directory / f"coinbase_incremental_book_L2_{gb:g}gb.csv"
    stamp = plain.with_suffix(".stamp")
    if not (plain.is_file() and stamp.is_file()):
        rng = np.random.default_rng(1)
        target = int(gb * 1e9)
        with open(plain, "wb") as fh:
            fh.write(HEADER)
            fh.write(_block(rng, 4_000, START_US, snapshot=True))
            t = START_US + 10_000_000
            while fh.tell() < target:
                fh.write(_block(rng, 200_000, t, snapshot=False))
                t += 200_000 * 1_000
        stamp.write_text("ok")
    if compress == "none":
        return plain
    out = plain.with_name(plain.name + (".gz" if compress == "gz" else ".zst"))
    if not out.is_file():
        if compress == "gz":
            with open(plain, "rb") as src, gzip.open(out, "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
        else:
            import zstandard

            with open(plain, "rb") as src, zstandard.open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
    return out


def run_once(csv: Path, store: Path, threads: int) -> dict[str, float]:
    shutil.rmtree(store, ignore_errors=True)
    run = run_mktpred_json(["csv2parquet", str(csv), "--parquet-dir", str(store), "--force", "--json"], threads)
    doc, wall = run.doc, run.wall_s
    size = doc["input_bytes"]
    rows = doc["rows"].get("l2", 0)
    return {"mb": size / 1e6, "rows": rows, "wall_s": wall, "mb_per_s": size / 1e6 / wall, "rows_per_s": rows / wall,
            "cpu_s": run.cpu_s, "peak_rss_gib": run.peak_rss_gib,
            "parquet_mb": sum(p.stat().st_size for p in store.rglob("*.parquet")) / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="0.25,1", help="CSV sizes in GB (uncompressed), comma separated")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/mktpred-bench-csv"))
    ap.add_argument("--compress", choices=("none", "gz", "zst"), default="none")
    ap.add_argument("--threads", type=int, default=0, help="DuckDB threads (0 = all cores)")
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()}")
    print(f"{'GB':>5} {'stored MB':>9} {'rows':>11} {'wall s':>7} {'MB/s':>6} {'rows/s':>10} {'cpu s':>6} "
          f"{'peak RSS GiB':>12} {'parquet MB':>10}")
    for gb in (float(s) for s in args.sizes.split(",")):
        csv = ensure_csv(args.dir, gb, args.compress)
        r = run_once(csv, args.dir / "store", args.threads)
        print(f"{gb:>5g} {r['mb']:>9.0f} {r['rows']:>11,} {r['wall_s']:>7.1f} {r['mb_per_s']:>6.0f} "
              f"{r['rows_per_s']:>10,.0f} {r['cpu_s']:>6.1f} {r['peak_rss_gib']:>12.2f} {r['parquet_mb']:>10.0f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
