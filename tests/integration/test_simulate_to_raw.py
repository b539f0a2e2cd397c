"""`simulate --to-raw` writes what `collect` records from `simulate --start` over a real socket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mktpred.coinbase import parse_rfc3339_ns
from mktpred.collect import CollectSettings, run_collect
from mktpred.config import load_config
from mktpred.convert.runner import run_convert
from mktpred.simulate import SimulatedExchange
from mktpred.simulate.to_raw import write_raw

PRODUCTS = ("BTC-USD", "ETH-USD")
S = 1_000_000_000


def _frames(raw_dir: Path) -> list[str]:
    """The ``msg`` text of every frame record, in file order (events left out)."""
    out = []
    for seg in sorted(raw_dir.glob("coinbase_*.jsonl")):
        for line in seg.read_text().splitlines():
            if '"msg":' in line:
                out.append(line[line.index('"msg":') + 6:-1])
    return out


def _table(store: Path, name: str, last_seq: int) -> list[dict[str, Any]]:
    """A table's rows in store order, without receive times and connection ids, up to ``last_seq``."""
    rows = pq.read_table(store / name).drop_columns(["recv_time", "conn"]).to_pylist()
    return [r for r in rows if r["seq"] <= last_seq]


def test_socket_and_to_raw_give_the_same_frames_and_store(tmp_path: Path) -> None:
    """Same seed and start: the frames collect records from the socket (4x real time) are byte for byte
    the first frames --to-raw writes, and the converted stores agree apart from receive times and
    connection ids."""
    start = parse_rfc3339_ns("2026-02-03T04:05:06Z")
    kw: dict[str, Any] = {"seed": 6, "depth": 100, "rate": 100.0, "signal": 0.5}
    sock, file = tmp_path / "sock", tmp_path / "file"
    with SimulatedExchange(products=list(PRODUCTS), start_ns=start, speed=4.0, port=0, **kw) as sim:
        run_collect(CollectSettings(url=sim.url, products=PRODUCTS, channels=("level2", "ticker", "market_trades"),
                                    raw_dir=sock, duration_s=2.0, flush_interval_s=0.2))
    write_raw(file, products=list(PRODUCTS), span_ns=15 * S, start_ns=start, **kw)
    got, want = _frames(sock), _frames(file)
    assert len(got) > 300, len(got)  # snapshots, acks, about 6 s of market and heartbeats
    assert got == want[: len(got)]
    last_seq = json.loads(got[-1])["sequence_num"]
    for d in (sock, file):
        run_convert(load_config(None, {"paths.raw_dir": d, "paths.parquet_dir": d / "pq"}))
    for table in ("l2", "ticker", "trades", "messages"):
        a, b = _table(sock / "pq", table, last_seq), _table(file / "pq", table, last_seq)
        assert a == b, table
        assert a, table
    events = [pq.read_table(d / "pq" / "events").column("event").to_pylist() for d in (sock, file)]
    assert events[0] == events[1] == ["open", "subscribed", "close"]
