"""Benchmark ``mktpred convert`` on generated raw segments of several sizes.

    .venv/bin/python bench/bench_convert.py [--sizes 0.5,2] [--dir /tmp/mktpred-bench] [--engine cpu]
                                            [--repeat 1] [--threads 0]

For each size: generate (cached) one realistic segment with ``bench/gen_raw.py``, then run
``mktpred convert --force --json`` in a child process and print wall seconds, MB/s of JSONL,
level2 rows/s and the child's peak RSS (GiB).  Peak RSS staying flat across sizes shows memory
does not grow with the input.  The machine's load average is printed too: timings on a shared
machine are only as good as the idle cores.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _common import run_mktpred_json

from mktpred.testing.raw import ensure_segment


def run_once(raw: Path, store: Path, engine: str, threads: int) -> dict[str, float]:
    run = run_mktpred_json(["convert", "--raw-dir", str(raw), "--parquet-dir", str(store), "--engine", engine,
                            "--force", "--json"], threads)
    doc, wall = run.doc, run.wall_s
    size = doc["input_bytes"]
    return {
        "mb": size / 1e6, "wall_s": wall, "convert_s": doc["seconds"], "lines": doc["lines"],
        "l2_rows": doc["rows"]["l2"], "mb_per_s": size / 1e6 / wall, "l2_rows_per_s": doc["rows"]["l2"] / wall,
        "peak_rss_gib": run.peak_rss_gib, "cpu_s": run.cpu_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="0.5,2", help="input sizes in GB, comma separated")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/mktpred-bench"))
    ap.add_argument("--engine", default="cpu")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="engine threads (0 = all cores)")
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()}")
    print(f"{'GB':>5} {'lines':>10} {'l2 rows':>11} {'wall s':>7} {'MB/s':>6} {'l2 rows/s':>10} "
          f"{'cpu s':>6} {'peak RSS GiB':>12}  load")
    for gb in (float(s) for s in args.sizes.split(",")):
        raw = args.dir / f"raw-{gb:g}"
        t0 = time.perf_counter()
        ensure_segment(raw, gb)
        gen_s = time.perf_counter() - t0
        if gen_s > 1:
            print(f"  (generated {gb:g} GB in {gen_s:.0f} s)")
        for _ in range(args.repeat):
            r = run_once(raw, args.dir / f"store-{gb:g}", args.engine, args.threads)
            print(f"{gb:>5g} {r['lines']:>10,} {r['l2_rows']:>11,} {r['wall_s']:>7.2f} {r['mb_per_s']:>6.0f} "
                  f"{r['l2_rows_per_s']:>10,.0f} {r['cpu_s']:>6.1f} {r['peak_rss_gib']:>12.2f}  "
                  f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
