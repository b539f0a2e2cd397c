"""Features on the real 24-s Coinbase capture: against the rebuilt book, the raw trades, and re-runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from mktpred.book import build_book
from mktpred.cli.app import app
from mktpred.features import FeatureSpec
from mktpred.features.batch import compute_product
from mktpred.features.build import build_features
from mktpred.store import open_store

RECORDS = "coinbase-advanced-trade-2026-08-09.records.jsonl.zst"
S = 1_000_000_000
MS = 1_000_000


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import SAMPLES_DIR

    if not (SAMPLES_DIR / RECORDS).is_file():
        pytest.skip("../shared/samples is not present")
    root = tmp_path_factory.mktemp("cap")
    (root / "raw").mkdir()
    shutil.copy(SAMPLES_DIR / RECORDS, root / "raw" / RECORDS)
    res = CliRunner().invoke(app, ["convert", "--raw-dir", str(root / "raw"), "--parquet-dir", str(root / "pq"),
                                   "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return root / "pq"


@pytest.mark.parametrize("step", [S, 100 * MS])
def test_top_of_book_equals_rebuilt_book(capture: Path, tmp_path: Path, step: int) -> None:
    """At 1 s and 100 ms, best bid/ask and sizes equal the book table's level 0 at every grid point."""
    pq = tmp_path / "pq"
    shutil.copytree(capture, pq)
    build_book(pq, depth=10, interval_ns=step)
    store = open_store(pq)
    for product in ("BTC-USD", "ETH-USD"):
        f = compute_product(store, product, FeatureSpec(step, (step,)))
        book = store.read("book", products=product)
        bt = dict(zip(book.column("time").cast(pa.int64()).to_pylist(),
                      zip(book.column("bid_price_0").to_pylist(), book.column("bid_size_0").to_pylist(),
                          book.column("ask_price_0").to_pylist(), book.column("ask_size_0").to_pylist(),
                          strict=True), strict=True))
        ft = f.column("time").cast(pa.int64()).to_pylist()
        assert len(ft) > (20 if step == S else 200)
        got = list(zip(f.column("best_bid").to_pylist(), f.column("bid_size_1").to_pylist(),
                       f.column("best_ask").to_pylist(), f.column("ask_size_1").to_pylist(), strict=True))
        assert [bt[t] for t in ft] == got
        assert f.column("valid").to_pylist()[1:] == [True] * (len(ft) - 1)


def test_buy_volume_is_trades_at_the_ask(capture: Path) -> None:
    """Aggressor buys print at the best ask (Coinbase SELL = taker buy): buy-only intervals' VWAP is above mid."""
    store = open_store(capture)
    f = compute_product(store, "BTC-USD", FeatureSpec(100 * MS))
    d = f.to_pydict()
    buys = [(v, m) for v, m, b, s in zip(d["vwap"], d["mid"], d["buy_volume"], d["sell_volume"], strict=True)
            if b > 0 and s == 0]
    sells = [(v, m) for v, m, b, s in zip(d["vwap"], d["mid"], d["buy_volume"], d["sell_volume"], strict=True)
             if s > 0 and b == 0]
    assert len(buys) >= 10 and len(sells) >= 3
    assert sum(v > m for v, m in buys) >= 0.9 * len(buys)
    assert sum(v < m for v, m in sells) >= 0.8 * len(sells)
    # every non-snapshot trade counted once, split by aggressor
    tr = store.read("trades", products="BTC-USD").to_pydict()
    flow = [(q, sd) for q, sd, snap in zip(tr["size"], tr["side"], tr["is_snapshot"], strict=True) if not snap]
    ts = f.column("time").cast(pa.int64()).to_pylist()
    first, last = ts[0] - 100 * MS, ts[-1]
    t_ok = [first < int(x.timestamp() * 1e9) <= last for x, snap in zip(tr["time"], tr["is_snapshot"], strict=True)
            if not snap]
    buy = sum(q for (q, sd), ok in zip(flow, t_ok, strict=True) if ok and sd == "SELL")
    assert float(np.sum(d["buy_volume"])) == pytest.approx(buy)


def test_incremental_rerun_equals_one_shot(capture: Path, tmp_path: Path) -> None:
    """A second run skips everything; --force recomputes the same bytes of data."""
    pq = tmp_path / "pq"
    shutil.copytree(capture, pq)
    spec = FeatureSpec(S, (S, 10 * S))
    a = build_features(pq, spec)
    assert a.rows == 48 and all(p.dates_written == ["2026-08-09"] for p in a.products)
    one = open_store(pq).read("features").sort_by([("product_id", "ascending"), ("time", "ascending")])
    b = build_features(pq, spec)
    assert b.rows == 0 and all(p.dates_skipped == ["2026-08-09"] for p in b.products)
    build_features(pq, spec, force=True)
    again = open_store(pq).read("features").sort_by([("product_id", "ascending"), ("time", "ascending")])
    assert again.equals(one)
    # the same rows as the engine fed in one go
    direct = compute_product(open_store(pq), "BTC-USD", spec)
    mine = one.filter(pa.compute.equal(one.column("product_id"), "BTC-USD"))
    assert mine.select(direct.column_names).equals(direct.cast(mine.select(direct.column_names).schema))


def test_cross_product_columns_are_lagged(capture: Path) -> None:
    """--cross ETH-USD: BTC-USD rows carry ETH-USD's ret_1 and ofi_1 of the previous grid point; ETH's own are null."""
    store = open_store(capture)
    spec = FeatureSpec(S, (S,), cross="ETH-USD")
    btc = compute_product(store, "BTC-USD", spec)
    eth = compute_product(store, "ETH-USD", FeatureSpec(S, (S,)))
    e = dict(zip(eth.column("time").cast(pa.int64()).to_pylist(),
                 zip(eth.column("ret_1").to_pylist(), eth.column("ofi_1").to_pylist(), strict=True), strict=True))
    got = list(zip(btc.column("cross_ret_1").to_pylist(), btc.column("cross_ofi_1").to_pylist(), strict=True))
    want = [e.get(t - S, (None, None)) for t in btc.column("time").cast(pa.int64()).to_pylist()]
    assert got == want and sum(o is not None for _, o in got) >= 20
    own = compute_product(store, "ETH-USD", spec)
    assert own.column("cross_ofi_1").null_count == own.num_rows
    assert btc.column_names[-3:] == ["cross_ret_1", "cross_ofi_1", "fwd_ret_1s"]
