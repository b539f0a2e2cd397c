"""How fast is `mktpred serve`, and how quickly does a prediction follow its trigger?  Run by hand:

    python bench/bench_serve.py [--seconds 10] [--rates 1000,0] [--clients 10]

A LightGBM model on a 100 ms grid (trained first on synthetic features, so there are ten grid
points a second to time) serves the simulator's market model (a child process) at each rate in
model frames/s (0 = as fast as the simulator sends, ~10k frames/s here) over loopback, recording
real raw and prediction segments in a temporary directory, with ``--clients`` SSE clients reading
``/stream`` from another child process.

Printed per rate: frames/s recorded and pipelined, trigger-to-publish latency p50/p99/max (the
``latency_us`` of every message), the model call time per prediction, CPU seconds of the serve
process per 100k frames, peak RSS, the pipeline backlog at the end, and whether every SSE client
received every message.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

PRODUCTS = ("BTC-USD", "ETH-USD")


def simulator(rate: float, pipe: Connection) -> None:
    """Child: the market model at ``rate`` frames/s until told to stop."""
    import logging

    logging.disable(logging.WARNING)
    from mktpred.simulate import SimulatedExchange

    with SimulatedExchange(products=list(PRODUCTS), rate=rate, seed=1, depth=2000) as sim:
        pipe.send(sim.url)
        pipe.recv()


def sse_clients(url: str, n: int, pipe: Connection) -> None:
    """Child: ``n`` SSE readers; reports each one's message count once the streams end."""
    import httpx

    counts = [0] * n

    def read(i: int) -> None:
        try:
            with httpx.stream("GET", url + "/stream", timeout=httpx.Timeout(120, read=120)) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        counts[i] += 1
        except httpx.HTTPError:
            pass

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    pipe.send("connected")
    for t in threads:
        t.join()
    pipe.send(counts)


def train_model(root: Path) -> Path:
    """A LightGBM direction model (1 s horizon) on 800 s of random 100-ms features."""
    import pyarrow as pa

    from mktpred.features.engine import FEATURE_COLUMNS
    from mktpred.models.train import train
    from mktpred.store.schemas import TS_NS
    from mktpred.store.writer import PartitionedWriter

    rng = np.random.default_rng(1)
    n = 8000
    t = 1_765_000_000 * 10**9 + np.arange(n, dtype=np.int64) * 10**8
    cols: dict[str, Any] = {"time": pa.array(t, pa.int64()).cast(TS_NS), "product_id": ["BTC-USD"] * n,
                            "valid": np.ones(n, bool)}
    for c in FEATURE_COLUMNS[5:]:
        cols[c] = rng.normal(size=n)
    cols["fwd_ret_1s"] = np.where(rng.uniform(size=n) < 1 / (1 + np.exp(-4 * cols["imb_1"])), 1e-4, -1e-4)
    w = PartitionedWriter(root / "pq", "bench", date_columns=("time",))
    tab = pa.table(cols)
    w.schemas = {"features": tab.schema}
    w.write("features", tab)
    w.commit()
    train(root / "pq", root / "models", name="bench", horizon="1s", folds=1)
    return root / "models" / "bench"


def run(model: Path, rate: float, seconds: float, clients: int, switch: float) -> dict[str, Any]:
    from mktpred.collect import CollectSettings
    from mktpred.serve import ServeRun, ServeSettings

    ctx = mp.get_context("spawn")
    sim_parent, sim_child = ctx.Pipe()
    sim = ctx.Process(target=simulator, args=(rate, sim_child), daemon=True)
    sim.start()
    url = sim_parent.recv()
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    settings = ServeSettings(
        collect=CollectSettings(url=url, products=PRODUCTS, channels=("level2", "market_trades"), raw_dir=work / "raw",
                                flush_interval_s=1.0, stall_timeout_s=5.0, duration_s=seconds),
        model=model, predictions_dir=work / "preds", port=0, switch_interval_s=switch or None)
    run_ = ServeRun(settings)
    cl_parent, cl_child = ctx.Pipe()
    client_proc: Any = None

    cpu0 = t0 = 0.0

    def ready(http: str) -> None:
        nonlocal client_proc, cpu0, t0
        if clients:
            client_proc = ctx.Process(target=sse_clients, args=(http, clients, cl_child), daemon=True)
            client_proc.start()
            cl_parent.recv()
            deadline = time.monotonic() + 30
            while run_.hub.clients < clients and time.monotonic() < deadline:
                time.sleep(0.01)
        cpu0, t0 = time.process_time(), time.perf_counter()  # startup (imports, model load) excluded

    result = run_.run(on_ready=ready)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    sim_parent.send("stop")
    sim.join(30)
    counts = cl_parent.recv() if client_proc is not None else []
    shutil.rmtree(work, ignore_errors=True)
    frames = result.collect.frames
    return {
        "rate": rate or "max", "seconds": wall, "frames": frames, "frames_per_s": frames / wall,  # ~ since ready
        "pipelined_per_s": result.frames / wall, "predictions": result.predictions,
        "latency_us": result.latency_us, "model_call_us": result.model_call_us,
        "cpu_s_per_100k": cpu / max(frames, 1) * 1e5, "cpu_share": cpu / wall,
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "clients": len(counts), "clients_dropped": result.clients_dropped,
        "clients_complete": sum(c == result.predictions for c in counts), "late_frames": result.late_frames,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rates", default="1000,0", help="model frames/s per run (0 = as fast as possible)")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--switch-interval", type=float, default=0.0005,
                    help="sys.setswitchinterval while serving (0 = leave the default 5 ms)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-serve-model-"))
    try:
        t = time.perf_counter()
        model = train_model(root)
        print(f"model trained in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        for rate in (float(r) for r in args.rates.split(",")):
            r = run(model, rate, args.seconds, args.clients, args.switch_interval)
            lat, mc = r["latency_us"], r["model_call_us"]
            print(f"rate {r['rate']}: {r['frames']:,} frames in {r['seconds']:.1f} s = {r['frames_per_s']:,.0f} "
                  f"frames/s recorded ({r['pipelined_per_s']:,.0f}/s through features), {r['predictions']:,} "
                  f"predictions; latency p50 {lat['p50']} µs p99 {lat['p99']} µs max {lat['max']} µs; "
                  f"model call p50 {mc['p50']} µs p99 {mc['p99']} µs per prediction; "
                  f"CPU {r['cpu_s_per_100k']:.2f} s per 100k frames ({r['cpu_share']:.0%} of a core); "
                  f"peak RSS {r['ru_maxrss_mib']:,.0f} MiB; SSE clients {r['clients']} "
                  f"({r['clients_complete']} got every message, {r['clients_dropped']} dropped); "
                  f"late frames {r['late_frames']}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
