"""Synthetic ``features`` tables (DESIGN.md stage 3 columns) with a planted or no dependence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from mktpred.store.schemas import TS_NS
from mktpred.store.writer import PartitionedWriter

T0 = 1_765_000_000 * 10**9  # 2025-12-06T05:46:40Z
FEATURES = ["best_bid", "best_ask", "bid_size_1", "ask_size_1", "mid", "spread", "spread_bps", "wmid",
            "imb_1", "imb_5", "imb_10", "depth_bid_10bps", "depth_ask_10bps",
            "ofi_1", "ofi_2", "ofi_3", "ofi_4", "ofi_5", "n_trades", "buy_volume", "sell_volume", "tfi", "vwap",
            "ret_1", "rv_10s", "rv_60s", "rv_300s"]


def schema(horizons: tuple[str, ...] = ("1s", "10s", "60s")) -> pa.Schema:
    fields = [pa.field("time", TS_NS), pa.field("product_id", pa.string()), pa.field("conn", pa.string()),
              pa.field("seq", pa.int64()), pa.field("valid", pa.bool_())]
    fields += [pa.field(c, pa.int64() if c == "n_trades" else pa.float64()) for c in FEATURES]
    fields += [pa.field(f"fwd_ret_{h}", pa.float64()) for h in horizons]
    return pa.schema(fields)


def make_features(root: Path, *, seconds: int, signal: float, seed: int = 1, products: tuple[str, ...] = ("BTC-USD",),
                  extra: dict[str, np.ndarray] | None = None) -> pa.Table:
    """Write ``seconds`` one-second rows per product: ``fwd_ret_10s``'s sign follows ``imb_1``
    through P(up) = sigmoid(signal * 4 * imb_1) (signal 0: independent of everything)."""
    rng = np.random.default_rng(seed)
    sch = schema()
    w = PartitionedWriter(root, "synth", schemas={"features": sch}, date_columns=("time",))
    n = seconds
    out = []
    for p in products:
        t = T0 + np.arange(n, dtype=np.int64) * 10**9
        cols: dict[str, np.ndarray] = {c: rng.normal(size=n) for c in FEATURES}
        cols["imb_1"] = rng.uniform(-1, 1, n)
        cols["spread_bps"] = rng.uniform(0.1, 1.0, n)
        cols["n_trades"] = rng.integers(0, 5, n)
        p_up = 1.0 / (1.0 + np.exp(-signal * 4.0 * cols["imb_1"]))
        up = rng.uniform(size=n) < p_up
        mag = rng.exponential(2e-4, n)
        fwd10 = np.where(up, mag, -mag)
        fwd10[rng.uniform(size=n) < 0.05] = 0.0  # no move
        data: dict[str, object] = {"time": pa.array(t, pa.int64()).cast(TS_NS), "product_id": [p] * n,
                                   "conn": ["c1"] * n, "seq": np.arange(n), "valid": rng.uniform(size=n) > 0.02}
        data.update(cols)
        data["fwd_ret_1s"] = rng.normal(0, 1e-4, n)
        data["fwd_ret_10s"] = fwd10
        data["fwd_ret_60s"] = rng.normal(0, 1e-4, n)
        if extra:
            data.update(extra)
        tab = pa.table(data).cast(sch) if not extra else pa.table(data)
        out.append(tab)
        w.schemas = {"features": tab.schema}
        w.write("features", tab)
    w.commit()
    return pa.concat_tables(out)
