"""How fast does `mktpred book` replay level2?  Run by hand: `python bench/bench_book.py [--updates N]`.

A synthetic BTC-USD-like stream: a 46,000-level snapshot (23,000 per side, one-cent ticks around a
random-walk mid), then ``--updates`` level updates in frames of 1-8 rows, concentrated near the
touch (geometric distance in ticks), 40% of them removals (size 0).  The stream is written once
to a temporary store as the l2 table, then replayed with top-``--depth`` snapshots on a
``--interval`` grid, at several feed densities (level updates per second of *data* time: the real
capture has ~200/s for two products; busy BTC-USD minutes reach thousands):

* ``engine``: the replay engine alone on batches already in memory (one core, no I/O);
* ``end-to-end``: ``build_book`` — read Parquet, replay, write the book table (zstd).

Also: the cost of one top-10 extraction on the 46,000-level book, and peak RSS for a short and a
long history (memory follows the book's size, not the history's length).
"""

from __future__ import annotations

import argparse
import gc
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mktpred.book import BookChunk, GapIndex, Replayer, build_book, parse_duration
from mktpred.book.levels import TopBook
from mktpred.store import open_store
from mktpred.store.schemas import TABLE_SCHEMAS

T0 = 1_786_309_548_000_000_000
TICK = 0.01
LEVELS_PER_SIDE = 23_000


def synth(updates: int, density: float, seed: int = 1) -> pa.Table:
    """A snapshot then ``updates`` level updates at ``density`` updates per second of data time."""
    rng = np.random.default_rng(seed)
    mid = 6_500_000  # in ticks
    bid_px = mid - 1 - np.cumsum(rng.integers(1, 3, LEVELS_PER_SIDE))
    ask_px = mid + 1 + np.cumsum(rng.integers(1, 3, LEVELS_PER_SIDE))
    snap_n = 2 * LEVELS_PER_SIDE
    # frames of 1..8 rows
    sizes = rng.integers(1, 9, updates // 2 + 16)
    ends = np.cumsum(sizes)
    sizes = sizes[:np.searchsorted(ends, updates) + 1]
    sizes[-1] -= int(sizes.sum() - updates)
    n_frames = len(sizes)
    frame_of_row = np.repeat(np.arange(n_frames), sizes)
    walk = np.cumsum(rng.integers(-1, 2, n_frames) * (rng.random(n_frames) < 0.05))
    side_bid = rng.random(updates) < 0.5
    dist = rng.geometric(0.03, updates)
    center = mid + walk[frame_of_row]
    px = np.where(side_bid, center - dist, center + dist)
    size = np.where(rng.random(updates) < 0.4, 0.0, np.round(rng.random(updates) * 2, 8) + 1e-8)
    frame_time = T0 + 1 + (np.arange(n_frames) * (sizes.mean() / density) * 1e9).astype(np.int64)
    time_col = np.concatenate([np.full(snap_n, T0, np.int64), frame_time[frame_of_row]])
    seq = np.concatenate([np.zeros(snap_n, np.int64), 1 + frame_of_row])
    is_bid = np.concatenate([np.ones(LEVELS_PER_SIDE, bool), np.zeros(LEVELS_PER_SIDE, bool), side_bid])
    price = np.concatenate([bid_px, ask_px, px]) * TICK
    sz = np.concatenate([rng.random(snap_n) + 0.01, size])
    n = len(seq)
    ts = pa.array(time_col, pa.int64()).cast(TABLE_SCHEMAS["l2"].field("time").type)
    return pa.Table.from_arrays([
        ts, ts, pa.array(time_col // 1000, pa.int64()).cast(TABLE_SCHEMAS["l2"].field("event_time").type),
        pa.array(["bench-1"] * n, pa.string()), pa.array(seq, pa.int64()), pa.array(["BTC-USD"] * n, pa.string()),
        pa.array(np.concatenate([np.ones(snap_n, bool), np.zeros(updates, bool)])),
        pa.array(np.where(is_bid, "bid", "ask")), pa.array(price), pa.array(sz),
    ], schema=TABLE_SCHEMAS["l2"])


def write_store(root: Path, table: pa.Table) -> None:
    d = root / "l2" / "date=2026-08-09"
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, d / "bench.parquet", row_group_size=1_000_000, compression="zstd")


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def bench_engine(root: Path, depth: int, interval_ns: int | None) -> tuple[float, float, int, int]:
    """``(wall s, CPU s, updates, snapshots)`` of the engine alone on batches already in memory."""
    batches = list(open_store(root).l2_batches("BTC-USD"))
    rows = [0]

    def sink(c: BookChunk) -> None:
        rows[0] += len(c)

    rep = Replayer("BTC-USD", depth, interval_ns=interval_ns, sink=sink, gaps=GapIndex())
    gc.collect()
    t, c = time.perf_counter(), time.process_time()
    for b in batches:
        rep.feed(b)
    stats = rep.finish()
    return time.perf_counter() - t, time.process_time() - c, stats.updates, rows[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--updates", type=int, default=3_000_000)
    ap.add_argument("--densities", default="200,2000,20000", help="level updates per second of data time")
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--interval", default="100ms")
    args = ap.parse_args()
    interval_ns = parse_duration(args.interval)
    print(f"python {sys.version.split()[0]}, depth {args.depth}, grid {args.interval}, "
          f"{args.updates:,} updates after a {2 * LEVELS_PER_SIDE:,}-level snapshot")

    book = TopBook(args.depth)
    snap = synth(0, 1.0)
    book.load_snapshot(np.asarray(snap.column("side").to_pylist()) == "bid", snap.column("price").to_numpy(),
                       snap.column("size").to_numpy())
    n = 200_000
    c = time.process_time()
    for _ in range(n):
        book.top(args.depth)
    print(f"top-{args.depth} extraction on a {len(book):,}-level book: {(time.process_time() - c) / n * 1e6:.2f} µs CPU")

    for density in [float(x) for x in args.densities.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_store(root, synth(args.updates, density))
            dt, cpu, updates, rows = bench_engine(root, args.depth, interval_ns)
            print(f"density {density:>8,.0f}/s  engine      : {updates / cpu / 1e6:5.2f} M updates per CPU-s "
                  f"({updates / dt / 1e6:.2f} M/s wall; {rows:,} snapshots, {rows / cpu:,.0f} per CPU-s)")
            t, c = time.perf_counter(), time.process_time()
            res = build_book(root, depth=args.depth, interval_ns=interval_ns)
            dt, cpu = time.perf_counter() - t, time.process_time() - c
            print(f"density {density:>8,.0f}/s  end-to-end  : {res.updates / cpu / 1e6:5.2f} M updates per CPU-s "
                  f"({res.updates / dt / 1e6:.2f} M/s wall; Parquet read + replay + write)")
            if density == min(float(x) for x in args.densities.split(",")):
                dt, cpu, updates, rows = bench_engine(root, args.depth, None)
                print(f"density {density:>8,.0f}/s  every-update: {updates / cpu / 1e6:5.2f} M updates per CPU-s "
                      f"({rows:,} snapshots, one per frame)")

    # Memory: peak RSS of a fresh process running build_book on a history and on one 4x longer.
    for k in (1, 4):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_store(root, synth(args.updates * k, 2000.0))
            code = (f"from mktpred.book import build_book\n"
                    f"r = build_book({str(root)!r}, depth={args.depth}, interval_ns={interval_ns})\n"
                    f"hwm = [x for x in open('/proc/self/status') if x.startswith('VmHWM')][0].split()[1]\n"
                    f"print(r.updates, int(hwm) // 1024)")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            updates, mib = out.stdout.split()
            print(f"history {int(updates):>10,} updates: peak RSS {mib} MiB (fresh process, build_book)")


if __name__ == "__main__":
    main()
