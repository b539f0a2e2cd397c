"""An independent oracle: counts and sums computed from the JSON with the standard library equal
those of the written Parquet, for generated input (wrapped and bare, several snapshots)."""

from __future__ import annotations

import gzip
import json
import math
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import pytest

from mktpred.config import Config
from mktpred.convert.runner import run_convert
from mktpred.testing.raw import SynthSpec, write_segment


def parse_ns(text: str) -> int:
    """RFC 3339 -> ns, written independently of mktpred (stdlib only)."""
    import calendar

    date, clock = text.rstrip("Z").split("T")
    y, mo, d = map(int, date.split("-"))
    hms, _, frac = clock.partition(".")
    h, mi, s = map(int, hms.split(":"))
    return calendar.timegm((y, mo, d, h, mi, s)) * 10**9 + int(frac.ljust(9, "0") or 0)


def oracle(paths: list[Path]) -> dict[str, Any]:
    """Per-table figures straight from the raw lines."""
    out: dict[str, Any] = {"rows": defaultdict(int), "l2_size": 0.0, "l2_bids": 0, "trade_size": 0.0,
                           "time": {}, "channels": defaultdict(int), "events": 0, "n_rows": 0}
    for path in paths:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                if "event" in rec:
                    out["events"] += 1
                    continue
                frame = rec.get("msg", rec)
                out["channels"][frame["channel"]] += 1
                t = parse_ns(frame["timestamp"])
                for ev in frame.get("events", []):
                    if frame["channel"] == "l2_data":
                        for u in ev["updates"]:
                            out["rows"]["l2"] += 1
                            out["l2_size"] += float(u["new_quantity"])
                            out["l2_bids"] += u["side"] == "bid"
                            lo, hi = out["time"].get(ev["product_id"], (t, t))
                            out["time"][ev["product_id"]] = (min(lo, t), max(hi, t))
                    elif frame["channel"] == "ticker":
                        out["rows"]["ticker"] += len(ev["tickers"])
                    elif frame["channel"] == "market_trades":
                        out["rows"]["trades"] += len(ev["trades"])
                        out["trade_size"] += sum(float(x["size"]) for x in ev["trades"])
                out["rows"]["messages"] += 1
    out["n_rows"] = out["rows"]["l2"] + out["rows"]["ticker"] + out["rows"]["trades"]
    return out


@pytest.mark.parametrize("wrapped", [True, False], ids=["records", "bare"])
def test_parquet_matches_stdlib_oracle(tmp_path: Path, wrapped: bool) -> None:
    """Rows, sums of sizes, bid counts, per-product time range and channel counts all agree."""
    raw = tmp_path / "raw"
    spec = SynthSpec(seed=7, snapshot_levels=300, resnapshot_every=1500, wrapped=wrapped)
    write_segment(raw / "coinbase_20260809T210548Z.jsonl", spec, n_lines=2500)
    write_segment(raw / "coinbase_20260809T220000Z.jsonl.gz", replace(spec, seed=8), n_lines=1500)
    cfg = Config()
    cfg = replace(cfg, paths=replace(cfg.paths, raw_dir=raw, parquet_dir=tmp_path / "store"))
    summary = run_convert(cfg)
    want = oracle(sorted(raw.iterdir()))
    assert summary.invalid == 0 and summary.converted == 2

    con = duckdb.connect()
    root = tmp_path / "store"

    def q(sql: str) -> Any:
        return con.sql(sql.replace("{root}", str(root))).fetchall()

    for table in ("l2", "ticker", "trades", "messages"):
        (n,) = q(f"SELECT count(*) FROM read_parquet('{{root}}/{table}/*/*.parquet')")[0]
        assert n == want["rows"][table] == summary.rows[table], table
    (size, bids), = q("SELECT sum(size), count(*) FILTER (side = 'bid') FROM read_parquet('{root}/l2/*/*.parquet')")
    assert math.isclose(size, want["l2_size"], rel_tol=1e-12)
    assert bids == want["l2_bids"]
    (tsize,), = q("SELECT sum(size) FROM read_parquet('{root}/trades/*/*.parquet')")
    assert math.isclose(tsize, want["trade_size"], rel_tol=1e-12)
    ranges = q("SELECT product_id, min(epoch_ns(time)), max(epoch_ns(time)) "
               "FROM read_parquet('{root}/l2/*/*.parquet') GROUP BY 1")
    assert {p: (lo, hi) for p, lo, hi in ranges} == want["time"]
    chans = q("SELECT channel, count(*) FROM read_parquet('{root}/messages/*/*.parquet') GROUP BY 1")
    assert dict(chans) == dict(want["channels"])
    (n_rows,), = q("SELECT sum(n_rows) FROM read_parquet('{root}/messages/*/*.parquet')")
    assert n_rows == want["n_rows"]
    (events,), = q("SELECT count(*) FROM read_parquet('{root}/events/*/*.parquet')") if wrapped else [(0,)]
    assert events == want["events"] == summary.rows["events"]
    # one Hive-partitioned dataset for DuckDB and for PyArrow
    (n_hive,), = q("SELECT count(*) FROM read_parquet('{root}/l2/**/*.parquet', hive_partitioning=true) "
                   "WHERE date = '2026-08-09'")
    import pyarrow.dataset as ds

    assert ds.dataset(root / "l2", partitioning="hive").count_rows() == n_hive == want["rows"]["l2"]
