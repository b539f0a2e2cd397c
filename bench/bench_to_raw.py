"""Benchmark `mktpred simulate --to-raw`: simulated hours per wall minute on one core.

    .venv/bin/python bench/bench_to_raw.py                    # 6 h of BTC-USD + ETH-USD at the default rate
    .venv/bin/python bench/bench_to_raw.py --span 1h --signal 1

Runs `mktpred simulate --to-raw DIR --span D --json` in a child (one process, one core) into a
temporary directory and prints wall and CPU time, frames, bytes, peak RSS, simulated hours per wall
minute (the issue's target: 6 h of 2 products in under 2 minutes, i.e. at least 3 h/min) and the
oracle's AUC per horizon.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import run_mktpred_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--span", default="6h", help="simulated time to write (default 6h)")
    ap.add_argument("--products", default="BTC-USD,ETH-USD")
    ap.add_argument("--rate", default="50", help="frames per simulated second (default 50, the model's default)")
    ap.add_argument("--signal", default="0")
    ap.add_argument("--seed", default="1")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_to_raw_") as tmp:
        run = run_mktpred_json(["simulate", "--to-raw", str(Path(tmp) / "raw"), "--span", args.span,
                                "--products", args.products, "--rate", args.rate, "--signal", args.signal,
                                "--seed", args.seed, "--json"])
    doc = run.doc
    hours = doc["span_s"] / 3600
    print(f"span {hours:g} h of {', '.join(doc['products'])} at rate {doc['rate']:g}, signal {doc['signal']:g}")
    print(f"frames {doc['frames']:,}  bytes {doc['bytes'] / 2**20:,.0f} MiB  segments {len(doc['segments'])}")
    print(f"wall {run.wall_s:.1f} s  cpu {run.cpu_s:.1f} s  peak RSS {run.peak_rss_gib:.2f} GiB  "
          f"(in-process elapsed {doc['elapsed_s']:.1f} s)")
    print(f"simulated hours per wall minute: {hours / run.wall_s * 60:.2f} "
          f"({doc['frames'] / run.wall_s:,.0f} frames/s)")
    aucs = ", ".join(f"{h} {v['auc']} (rows {v['rows']:,}, se {v['se_h0']})"
                     for h, v in doc["oracle"]["horizons"].items())
    print(f"oracle AUC: {aucs}")


if __name__ == "__main__":
    main()
