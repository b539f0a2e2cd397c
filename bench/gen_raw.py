"""Generate a realistic raw segment for benchmarks (seeded; same arguments, same bytes).

    .venv/bin/python bench/gen_raw.py OUT_DIR --gb 0.5 [--seed 1] [--bare] [--snapshot-levels 20000]

Writes ``OUT_DIR/coinbase_20260809T210548Z.jsonl`` (one segment): subscription acks, level2
snapshots of ``2 x snapshot-levels`` levels per product at every (re)connect, then a mix of small
level2 updates (~78% of frames), tickers, trades, candles and heartbeats, wrapped as mktpred raw
records (``--bare``: Coinbase frames as received).  See ``mktpred.testing.raw``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mktpred.testing.raw import ensure_segment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--gb", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bare", action="store_true")
    ap.add_argument("--snapshot-levels", type=int, default=20_000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    path = ensure_segment(args.out_dir, args.gb, seed=args.seed, bare=args.bare, snapshot_levels=args.snapshot_levels)
    print(f"{path}: {path.stat().st_size / 1e6:,.0f} MB in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
