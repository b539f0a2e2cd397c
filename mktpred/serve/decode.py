"""One raw record line -> what the feature engine takes, read exactly as ``convert`` writes the
store and :mod:`mktpred.features.batch` reads it back.

Level2 rows are grouped per product within a frame (a frame's rows of one product are one engine
frame, its snapshot flag that of the product's first row); ``bid`` is a bid, anything else an ask;
trades take their ``product_id`` per trade, their direction from the maker ``side`` (Coinbase
``SELL`` = a taker buy, DESIGN.md "Trade direction"); every row's time is the frame's ``timestamp``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from mktpred.coinbase.timestamps import parse_rfc3339_ns


@dataclass(slots=True)
class Rows:
    """The rows of one product in one frame (``a``: is_ask for level2, aggressor for trades)."""

    product: str
    snapshot: bool
    a: list[Any] = field(default_factory=list)
    price: list[float] = field(default_factory=list)
    size: list[float] = field(default_factory=list)


@dataclass(slots=True)
class Record:
    """What the pipeline needs from one raw record line."""

    conn: str
    seq: int | None  #: ``sequence_num`` (one counter per connection, every channel)
    time: int | None  #: the frame's ``timestamp`` in ns (None for events, raw records, no timestamp)
    l2: list[Rows] = field(default_factory=list)
    trades: list[Rows] = field(default_factory=list)


def _aggressor(side: Any) -> int:
    s = str(side).lower()
    return 1 if s == "sell" else -1 if s == "buy" else 0


def decode_record(line: bytes) -> Record | None:
    """The record, or ``None`` for lines that feed nothing (events, ``raw`` frames, non-frames).

    Raises ``ValueError``/``KeyError``/``TypeError`` for a frame ``convert`` would quarantine."""
    rec = orjson.loads(line)
    msg = rec.get("msg") if type(rec) is dict else None
    if type(msg) is not dict:
        return None
    conn = rec.get("conn")
    seq = msg.get("sequence_num")
    ts = msg.get("timestamp")
    out = Record("" if conn is None else str(conn), seq if type(seq) is int else None,
                 parse_rfc3339_ns(ts) if type(ts) is str else None)
    channel = msg.get("channel")
    if out.time is None or channel not in ("l2_data", "market_trades"):
        return out
    events = msg.get("events")
    if type(events) is not list:
        return out
    groups: dict[str, Rows] = {}
    if channel == "l2_data":
        for ev in events:
            updates = ev.get("updates") if type(ev) is dict else None
            if not updates:
                continue
            product = str(ev.get("product_id"))
            g = groups.get(product)
            if g is None:
                g = groups[product] = Rows(product, ev.get("type") == "snapshot")
            for u in updates:
                g.a.append(u["side"] != "bid")
                g.price.append(float(u["price_level"]))
                g.size.append(float(u["new_quantity"]))
        out.l2 = list(groups.values())
    else:
        for ev in events:
            trades = ev.get("trades") if type(ev) is dict else None
            if not trades:
                continue
            snap = ev.get("type") == "snapshot"
            for t in trades:
                product = str(t.get("product_id"))
                g = groups.get(product)
                if g is None:
                    g = groups[product] = Rows(product, snap)
                g.a.append(_aggressor(t.get("side")))
                g.price.append(float(t["price"]))
                g.size.append(float(t["size"]))
        out.trades = list(groups.values())
    return out


def as_arrays(rows: Rows, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, price, size)`` as the engine's numpy arrays (``a``: bool is_ask or int8 aggressor)."""
    a = np.asarray(rows.a, dtype=bool if kind == "l2" else np.int8)
    return a, np.asarray(rows.price, np.float64), np.asarray(rows.size, np.float64)
