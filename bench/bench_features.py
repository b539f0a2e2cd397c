"""How fast is the feature engine?  Run by hand: `python bench/bench_features.py [--updates N]`.

The synthetic BTC-USD-like stream of ``bench_book.py`` (a 46,000-level snapshot, then level updates
in frames of 1-8 rows concentrated near the touch, 40% removals), fed frame by frame through
:class:`mktpred.features.FeatureEngine` on a ``--interval`` grid (one core, no I/O: the frames are
in memory).  Reports level updates/s, grid rows, and where the time goes (cProfile top entries with
``--profile``); peak RSS for a short and a long history shows memory does not grow with history.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import itertools

from bench_book import synth

from mktpred.book import parse_duration
from mktpred.features import FeatureEngine, FeatureSpec


def frames(updates: int, density: float) -> list[tuple[int, int, bool, np.ndarray, np.ndarray, np.ndarray]]:
    tbl = synth(updates, density)
    seq = tbl.column("seq").to_numpy()
    t = tbl.column("time").cast("int64").to_numpy()
    is_ask = np.asarray(tbl.column("side").to_numpy(zero_copy_only=False) == "ask")
    price = tbl.column("price").to_numpy()
    size = tbl.column("size").to_numpy()
    snap = tbl.column("is_snapshot").to_numpy(zero_copy_only=False)
    cut = np.flatnonzero(np.diff(seq)) + 1
    starts = np.concatenate([[0], cut, [len(seq)]])
    return [(int(seq[a]), int(t[a]), bool(snap[a]), is_ask[a:b], price[a:b], size[a:b])
            for a, b in itertools.pairwise(starts)]


def run(fr: list[tuple[int, int, bool, np.ndarray, np.ndarray, np.ndarray]], step: int) -> tuple[float, int, int]:
    eng = FeatureEngine("BTC-USD", FeatureSpec(step))
    eng.on_l2("bench-1", *fr[0])  # the snapshot (not timed)
    rows = 0
    t0 = time.perf_counter()
    for f in fr[1:]:
        rows += len(eng.on_l2("bench-1", *f))  # one call per frame, as serve does
    rows += len(eng.advance(fr[-1][1]))
    return time.perf_counter() - t0, sum(len(f[3]) for f in fr[1:]), rows


def run_batch(fr: list[tuple[int, int, bool, np.ndarray, np.ndarray, np.ndarray]], step: int) -> float:
    """The same frames through ``on_l2_batch`` (one columnar call for the whole stream)."""
    eng = FeatureEngine("BTC-USD", FeatureSpec(step))
    eng.on_l2("bench-1", *fr[0])
    body = fr[1:]
    lens = np.array([len(f[3]) for f in body])
    starts = np.concatenate([[0], np.cumsum(lens)])
    seq = np.array([f[0] for f in body])
    tt = np.array([f[1] for f in body])
    snap = np.zeros(len(body), bool)
    is_ask = np.concatenate([f[3] for f in body])
    price = np.concatenate([f[4] for f in body])
    size = np.concatenate([f[5] for f in body])
    t0 = time.perf_counter()
    eng.on_l2_batch("bench-1", seq, tt, snap, starts, is_ask, price, size)
    eng.advance(int(tt[-1]))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=300_000)
    ap.add_argument("--density", type=float, default=2_000.0, help="level updates per second of data time")
    ap.add_argument("--interval", default="1s")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    step = parse_duration(a.interval)
    fr = frames(a.updates, a.density)
    if a.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(fr, step)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
        return
    secs, n, rows = run(fr, step)
    bsecs = run_batch(fr, step)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"features engine: {n:,} level updates in {len(fr) - 1:,} frames, {rows:,} rows on a {a.interval} grid")
    print(f"  on_l2 per frame: {secs:.2f} s, {n / secs:,.0f} updates/s, {(len(fr) - 1) / secs:,.0f} frames/s")
    print(f"  on_l2_batch:     {bsecs:.2f} s, {n / bsecs:,.0f} updates/s, {(len(fr) - 1) / bsecs:,.0f} frames/s")
    print(f"  peak RSS {rss:,.0f} MiB (the stream itself is held in memory)")


if __name__ == "__main__":
    main()
