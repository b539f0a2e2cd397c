"""No name from the network becomes a path: every producer that names files after data stays in the store."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mktpred.book.build import build_book
from mktpred.config import Config
from mktpred.convert.runner import run_convert
from mktpred.features.build import build_features
from mktpred.features.engine import FeatureSpec
from mktpred.store.schemas import TABLE_SCHEMAS
from mktpred.store.writer import PartitionedWriter

S = 1_000_000_000
T0 = 1_786_309_548_000_000_000  # 2026-08-09T21:05:48Z
EVIL = ("../../x", "/tmp/abs")


def _store_with_products(root: Path, products: tuple[str, ...]) -> None:
    """An l2 table with a snapshot and four updates per product, as if another tool had written it."""
    rows: list[dict[str, Any]] = []
    seq = 0
    for p in products:
        for i in range(5):
            t = T0 + i * S // 2
            levels = [("bid", 100.0, 1.0), ("ask", 101.0, 1.0)] if i == 0 else [("bid", 100.0, float(i + 1))]
            rows += [dict(recv_time=t, time=t, event_time=t // 1000, conn="c", seq=seq, product_id=p,
                          is_snapshot=i == 0, side=s, price=px, size=q) for s, px, q in levels]
            seq += 1
    w = PartitionedWriter(root, "seg")
    w.write("l2", pa.Table.from_pylist(rows, schema=TABLE_SCHEMAS["l2"]))
    w.commit()


def _everything(base: Path) -> set[Path]:
    return {p for p in base.rglob("*")}


def test_book_with_hostile_product_ids_writes_nothing_outside_the_store(tmp_path: Path) -> None:
    """Product ids ``../../x`` and ``/tmp/abs`` get encoded file names inside book/date=D/; the rows keep the id."""
    root = tmp_path / "a" / "b" / "store"
    _store_with_products(root, EVIL)
    before = _everything(tmp_path)
    res = build_book(root, depth=1, interval_ns=S)
    new = _everything(tmp_path) - before
    assert new and all(p.is_relative_to(root) for p in new)
    assert not Path("/tmp/abs.parquet").exists()
    names = sorted(p.name for p in (root / "book" / "date=2026-08-09").iterdir())
    assert names == ["%2E.%2F..%2Fx.parquet", "%2Ftmp%2Fabs.parquet"]
    ids = {r["product_id"] for n in names for r in pq.read_table(root / "book" / "date=2026-08-09" / n).to_pylist()}
    assert ids == set(EVIL)
    assert sorted(o for p in res.products for o in p.outputs) == [f"book/date=2026-08-09/{n}" for n in names]


def test_features_with_hostile_product_ids_write_nothing_outside_the_store(tmp_path: Path) -> None:
    """The features file stem is the encoded product id; nothing lands beside or above the store."""
    root = tmp_path / "a" / "b" / "store"
    _store_with_products(root, EVIL)
    before = _everything(tmp_path)
    build_features(root, FeatureSpec(S, (S,)))
    new = _everything(tmp_path) - before
    assert new and all(p.is_relative_to(root) for p in new)
    names = sorted(p.name for p in (root / "features" / "date=2026-08-09").iterdir())
    assert names == ["%2E.%2F..%2Fx_2026-08-09.parquet", "%2Ftmp%2Fabs_2026-08-09.parquet"]


def test_convert_quarantines_frames_whose_product_id_is_not_coinbase(tmp_path: Path) -> None:
    """A level2 frame for ``../../x`` and a trade for ``btc usd`` are quarantined with the reason; the
    good frame is converted."""
    def frame(seq: int, product: str, channel: str = "l2_data") -> dict[str, Any]:
        if channel == "l2_data":
            events = [{"type": "update", "product_id": product, "updates": [
                {"side": "bid", "event_time": "2026-08-09T21:05:48Z", "price_level": "100", "new_quantity": "1"}]}]
        else:
            events = [{"type": "update", "trades": [{"product_id": product, "trade_id": "1", "price": "100",
                                                     "size": "1", "time": "2026-08-09T21:05:48Z", "side": "BUY"}]}]
        return {"recv_ns": T0 + seq, "conn": "c", "msg": {"channel": channel, "timestamp": "2026-08-09T21:05:48Z",
                                                          "sequence_num": seq, "events": events}}

    raw = tmp_path / "raw"
    raw.mkdir()
    lines = [frame(0, "BTC-USD"), frame(1, "../../x"), frame(2, "btc usd", "market_trades")]
    (raw / "coinbase_20260809T210548Z.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = Config()
    cfg = replace(cfg, paths=replace(cfg.paths, raw_dir=raw, parquet_dir=tmp_path / "store"))
    summary = run_convert(cfg)
    assert summary.rows["l2"] == 1 and summary.rows["trades"] == 0 and summary.invalid == 2
    q = [json.loads(x) for x in (tmp_path / "store" / "_quarantine" / "coinbase_20260809T210548Z.jsonl")
         .read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in q] == [
        (2, "product_id is not a Coinbase product id: '../../x'"),
        (3, "product_id is not a Coinbase product id: 'btc usd'")]
