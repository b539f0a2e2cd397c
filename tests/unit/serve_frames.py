"""Hand-written raw record lines and a hand-written model for the serve unit tests."""

from __future__ import annotations

import json
from pathlib import Path

from mktpred.coinbase.timestamps import format_rfc3339_ns
from mktpred.models.registry import set_current

S = 1_000_000_000
MS = 1_000_000
T0 = 1_765_000_000 * S  # a whole second: grid points are T0 + k s


def l2(seq: int, t: int, updates: list[tuple[str, float, float]], snapshot: bool = False,
       product: str = "BTC-USD", conn: str = "c1") -> bytes:
    """A raw record of one ``l2_data`` frame: ``(side, price, size)`` updates."""
    ev = {"type": "snapshot" if snapshot else "update", "product_id": product,
          "updates": [{"side": s, "event_time": format_rfc3339_ns(t), "price_level": str(p), "new_quantity": str(q)}
                      for s, p, q in updates]}
    msg = {"channel": "l2_data", "client_id": "", "timestamp": format_rfc3339_ns(t), "sequence_num": seq,
           "events": [ev]}
    return json.dumps({"recv_ns": 0, "conn": conn, "msg": msg}).encode() + b"\n"


def heartbeat(seq: int, t: int, conn: str = "c1") -> bytes:
    msg = {"channel": "heartbeats", "timestamp": format_rfc3339_ns(t), "sequence_num": seq,
           "events": [{"current_time": "x", "heartbeat_counter": seq}]}
    return json.dumps({"recv_ns": 0, "conn": conn, "msg": msg}).encode() + b"\n"


def trades(seq: int, t: int, rows: list[tuple[str, float, float]], product: str = "BTC-USD",
           conn: str = "c1") -> bytes:
    """A ``market_trades`` update: ``(maker side, price, size)``."""
    msg = {"channel": "market_trades", "timestamp": format_rfc3339_ns(t), "sequence_num": seq,
           "events": [{"type": "update", "trades": [
               {"product_id": product, "trade_id": str(i), "price": str(p), "size": str(q), "side": s,
                "time": format_rfc3339_ns(t)} for i, (s, p, q) in enumerate(rows)]}]}
    return json.dumps({"recv_ns": 0, "conn": conn, "msg": msg}).encode() + b"\n"


def write_model(name_dir: Path, version: str, features: list[str] | None = None, interval_ns: int | None = S,
                coef: float = 1.0, promote: bool = True) -> Path:
    """A hand-written linear ``return`` model: ``ret_bps = coef * features[0]`` (mean 0, scale 1)."""
    feats = features or ["mid"]
    d = name_dir / version
    d.mkdir(parents=True)
    (d / "model.linear.json").write_text(json.dumps(
        {"mean": [0.0] * len(feats), "scale": [1.0] * len(feats), "coef": [[coef] + [0.0] * (len(feats) - 1)],
         "intercept": [0.0]}))
    (d / "model.json").write_text(json.dumps(
        {"name": name_dir.name, "version": version, "model": "logistic", "target": "return", "threshold_bps": None,
         "horizon": "10s", "horizon_s": 10.0, "interval_ns": interval_ns, "features": feats,
         "products": ["BTC-USD"]}))
    if promote:
        set_current(name_dir, version)
    return d
