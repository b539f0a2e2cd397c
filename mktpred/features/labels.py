"""``fwd_ret_<h>`` labels, computed in batch from the emitted mid series (future information)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def label_name(horizon_ns: int) -> str:
    """``fwd_ret_1s``, ``fwd_ret_60s``, ``fwd_ret_100ms``, ... for a horizon in ns (seconds are never
    written as minutes, so ``60s`` stays ``fwd_ret_60s``)."""
    for unit, ns in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if horizon_ns % ns == 0:
            return f"fwd_ret_{horizon_ns // ns}{unit}"
    return f"fwd_ret_{horizon_ns}ns"


def add_labels(table: pa.Table, interval_ns: int, horizons_ns: tuple[int, ...]) -> pa.Table:
    """Append ``fwd_ret_<h> = ln(mid(g+h)/mid(g))`` per horizon to one product's rows (time order).

    Null when ``g+h`` is past the data (or its row is missing), the connection changes, or a row in
    ``(g, g+h]`` is invalid (a row's ``valid`` covers its whole interval)."""
    n = table.num_rows
    t = table.column("time").cast(pa.int64()).to_numpy(zero_copy_only=False)
    mid = table.column("mid").to_numpy(zero_copy_only=False).astype(np.float64)
    mid = np.where(np.isnan(mid), np.nan, mid)
    valid = table.column("valid").to_numpy(zero_copy_only=False).astype(bool)
    conn = pc.dictionary_encode(table.column("conn").combine_chunks()).indices.to_numpy(zero_copy_only=False)
    bad = np.concatenate([[0], np.cumsum(~valid)])  # invalid rows before index i
    for h in horizons_ns:
        m = h // interval_ns
        out = np.full(n, np.nan)
        if m < n:
            i = np.arange(n - m)
            j = i + m
            ok = (t[j] - t[i] == h) & (conn[j] == conn[i]) & (bad[j + 1] - bad[i + 1] == 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.log(mid[j] / mid[i])
            out[: n - m] = np.where(ok, r, np.nan)
        table = table.append_column(label_name(h), pa.array(out, pa.float64(), mask=np.isnan(out)))
    return table
