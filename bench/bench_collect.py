"""How fast does `mktpred collect` ingest, and does it lose anything?  Run by hand:

    python bench/bench_collect.py [--seconds 10] [--scenario model|replay|both]

The simulator runs in a child process (its own GIL and core) and sends as fast as it can over
loopback; the recorder runs in this process, writing real segments to a temporary directory
(fsync every second, as in production).  Scenarios:

* ``model``: the market model at ``rate=0`` (small frames, ~440 B: the frames/s figure);
* ``replay``: the real capture in ../shared/samples at ``speed=0`` (8 KB mean, one 5 MB snapshot),
  each connection closed by the server after the capture (``close:code=1000,after=1029,times=0``)
  and the recorder reconnecting at once: the MB/s figure, reconnects included.

Printed per scenario: frames/s, MB/s of frames received and written, CPU seconds of this process
per 100k frames, peak and steady RSS, and the zero-loss check: on every connection the frames on
disk are exactly the ones the server sent (counts match, ``sequence_num`` 0..n-1 with no gap or
repeat), except that the connection cut by the stop may end early.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

SAMPLE = Path(__file__).resolve().parents[2] / "shared/samples/coinbase-advanced-trade-2026-08-09.frames.jsonl.zst"
PRODUCTS = ("BTC-USD", "ETH-USD")


def serve(kind: str, pipe: Connection) -> None:
    """The child process: a simulator until told to stop, then per-connection counts."""
    import logging

    logging.disable(logging.WARNING)
    from mktpred.simulate import SimulatedExchange, parse_fault

    if kind == "model":
        sim = SimulatedExchange(products=list(PRODUCTS), rate=0, seed=1, depth=2000)
    else:
        sim = SimulatedExchange(products=list(PRODUCTS), replay=SAMPLE, speed=0.0,
                                faults=[parse_fault("close:code=1000,after=1029,times=0")])
    with sim:
        pipe.send(sim.url)
        pipe.recv()
        time.sleep(0.5)  # let the last connection notice the close
        pipe.send([(c.index, c.frames_sent, c.closed) for c in sim.connections()])


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def check_loss(raw_dir: Path, sent: list[tuple[int, int, bool]], conns: list[str]) -> tuple[bool, str]:
    """Compare what is on disk, connection by connection, with what the server sent."""
    seqs: dict[str, list[int]] = {c: [] for c in conns}
    for seg in sorted(raw_dir.glob("coinbase_*.jsonl")):
        with open(seg, "rb") as fh:
            for line in fh:
                if b',"msg":' not in line[:80]:
                    continue
                rec = orjson.loads(line)
                s = rec["msg"].get("sequence_num")
                if s is not None:
                    seqs[rec["conn"]].append(s)
    problems = []
    # the server numbers every frame it sends, so the recorder's connection k is the server's k
    for k, conn in enumerate(conns):
        got = seqs[conn]
        if got != list(range(len(got))):
            problems.append(f"{conn}: sequence not 0..n-1")
        if k < len(sent):
            _, n_sent, _ = sent[k]
            last = k == len(conns) - 1
            if len(got) != n_sent and not (last and len(got) < n_sent):
                problems.append(f"{conn}: {len(got)} on disk, {n_sent} sent")
    lines = sum(len(v) for v in seqs.values())
    return (not problems, f"{lines:,} frames checked on {len(conns)} connection(s)"
            + ("" if not problems else "; " + "; ".join(problems[:5])))


def run(kind: str, seconds: float) -> dict[str, Any]:
    from mktpred.collect import Collector, CollectSettings

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(kind, child), daemon=True)
    proc.start()
    url = parent.recv()
    raw = Path(tempfile.mkdtemp(prefix="bench-collect-"))
    settings = CollectSettings(url=url, products=PRODUCTS, channels=("level2", "ticker", "market_trades"),
                               raw_dir=raw, flush_interval_s=1.0, stall_timeout_s=5.0,
                               backoff_initial_s=0.001, backoff_max_s=0.01, backoff_reset_after_s=0.0,
                               duration_s=seconds)
    collector = Collector(settings)
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            samples.append(rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    rss0 = rss_mib()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    sampler.start()
    result = collector.run()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    done.set()
    parent.send("stop")
    sent = parent.recv()
    proc.join(30)
    ok, detail = check_loss(raw, sent, list(result.connections[0].conns) + list(
        c for s in result.connections[1:] for c in s.conns))
    shutil.rmtree(raw, ignore_errors=True)
    half = samples[len(samples) // 2:] or [rss_mib()]
    return {
        "scenario": kind, "seconds": wall, "frames": result.frames, "frames_per_s": result.frames / wall,
        "mb_in_per_s": result.bytes_received / wall / 1e6, "mb_written_per_s": result.bytes_written / wall / 1e6,
        "cpu_s_per_100k": cpu / max(result.frames, 1) * 1e5, "cpu_share": cpu / wall,
        "rss_start_mib": rss0, "rss_steady_mib": statistics.median(half), "rss_peak_mib": max(samples or [rss0]),
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "reconnects": result.reconnects, "gaps": result.gaps, "buffer_peak_mib": result.buffer_peak_bytes / 2**20,
        "reader_blocked_s": result.reader_blocked_s, "zero_loss": ok, "check": detail,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--scenario", choices=["model", "replay", "both"], default="both")
    args = ap.parse_args()
    kinds = ["model", "replay"] if args.scenario == "both" else [args.scenario]
    if "replay" in kinds and not SAMPLE.is_file():
        print(f"(no {SAMPLE}: skipping the replay scenario)")
        kinds.remove("replay")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.seconds:g} s per scenario")
    for kind in kinds:
        r = run(kind, args.seconds)
        print(f"{kind:<7} {r['frames']:>10,} frames in {r['seconds']:5.1f} s = {r['frames_per_s']:>8,.0f} frames/s, "
              f"{r['mb_in_per_s']:6.1f} MB/s in, {r['mb_written_per_s']:6.1f} MB/s written; "
              f"CPU {r['cpu_s_per_100k']:.2f} s per 100k frames ({r['cpu_share']:.0%} of a core); "
              f"RSS steady {r['rss_steady_mib']:.0f} MiB, peak {r['rss_peak_mib']:.0f} MiB "
              f"(ru_maxrss {r['ru_maxrss_mib']:.0f}); buffer peak {r['buffer_peak_mib']:.1f} MiB, "
              f"readers blocked {r['reader_blocked_s']:.2f} s; reconnects {r['reconnects']}, gaps {r['gaps']}; "
              f"zero loss: {'yes' if r['zero_loss'] else 'NO'} ({r['check']})")


if __name__ == "__main__":
    main()
