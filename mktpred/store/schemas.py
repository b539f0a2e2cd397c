"""The table schemas of the store (DESIGN.md, "Parquet store").  The single source of truth:
engines write exactly these, ``validate`` checks files against them."""

from __future__ import annotations

import pyarrow as pa

TS_NS = pa.timestamp("ns", tz="UTC")
TS_US = pa.timestamp("us", tz="UTC")

_COMMON = [
    pa.field("recv_time", TS_NS),
    pa.field("time", TS_NS),
]

L2 = pa.schema([
    *_COMMON,
    pa.field("event_time", TS_US),
    pa.field("conn", pa.string()),
    pa.field("seq", pa.int64()),
    pa.field("product_id", pa.string()),
    pa.field("is_snapshot", pa.bool_()),
    pa.field("side", pa.string()),
    pa.field("price", pa.float64()),
    pa.field("size", pa.float64()),
])

TICKER = pa.schema([
    *_COMMON,
    pa.field("conn", pa.string()),
    pa.field("seq", pa.int64()),
    pa.field("product_id", pa.string()),
    pa.field("is_snapshot", pa.bool_()),
    pa.field("price", pa.float64()),
    pa.field("volume_24h", pa.float64()),
    pa.field("low_24h", pa.float64()),
    pa.field("high_24h", pa.float64()),
    pa.field("low_52w", pa.float64()),
    pa.field("high_52w", pa.float64()),
    pa.field("price_pct_chg_24h", pa.float64()),
    pa.field("best_bid", pa.float64()),
    pa.field("best_bid_size", pa.float64()),
    pa.field("best_ask", pa.float64()),
    pa.field("best_ask_size", pa.float64()),
])

TRADES = pa.schema([
    *_COMMON,
    pa.field("conn", pa.string()),
    pa.field("seq", pa.int64()),
    pa.field("product_id", pa.string()),
    pa.field("is_snapshot", pa.bool_()),
    pa.field("trade_id", pa.string()),
    pa.field("side", pa.string()),
    pa.field("price", pa.float64()),
    pa.field("size", pa.float64()),
    pa.field("trade_time", TS_US),
    # the taker's direction, "buy"/"sell"/null, whatever the source's ``side`` means (DESIGN.md,
    # "Trade direction"); stores converted before it existed lack it until ``convert --force``
    pa.field("aggressor", pa.string()),
])

MESSAGES = pa.schema([
    *_COMMON,
    pa.field("conn", pa.string()),
    pa.field("seq", pa.int64()),
    pa.field("channel", pa.string()),
    pa.field("n_events", pa.int32()),
    pa.field("n_rows", pa.int32()),
])

#: the collector's own event records (open, subscribed, close, gap, stall); ``time`` is ``recv_ns``
#: (there is no exchange timestamp) so the table partitions like the others.  Gap events carry
#: ``expected``/``got``; every other detail is kept as compact JSON in ``detail``.
EVENTS = pa.schema([
    pa.field("recv_time", TS_NS),
    pa.field("time", TS_NS),
    pa.field("conn", pa.string()),
    pa.field("event", pa.string()),
    pa.field("expected", pa.int64()),
    pa.field("got", pa.int64()),
    pa.field("detail", pa.string()),
])

#: the tables ``convert`` writes, in a stable order
TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "l2": L2,
    "ticker": TICKER,
    "trades": TRADES,
    "messages": MESSAGES,
    "events": EVENTS,
}

#: columns that must never be null, per table (``recv_time``/``conn``/``seq`` may be null for bare
#: frames and for imported CSV, so they are not listed; nor is ``ticker.price``: Tardis quotes carry
#: only the best bid/ask)
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "l2": ("time", "product_id", "is_snapshot", "side", "price", "size"),
    "ticker": ("time", "product_id", "is_snapshot"),
    "trades": ("time", "product_id", "side", "price", "size"),
    "messages": ("channel", "n_events", "n_rows"),
    "events": ("recv_time", "time", "conn", "event"),
}


def schema_for(table: str) -> pa.Schema:
    """The contract schema of a store table; ``KeyError`` for unknown tables."""
    return TABLE_SCHEMAS[table]


#: values of ``trades.aggressor`` (null: the source did not say)
AGGRESSOR_VALUES = ("buy", "sell")


def aggressor_column(side: pa.Array | pa.ChunkedArray, mapping: dict[str, str]) -> pa.Array | pa.ChunkedArray:
    """``trades.aggressor`` from a source's ``side`` column: ``mapping`` gives the aggressor of each
    side value the source uses (Coinbase: :data:`mktpred.coinbase.protocol.AGGRESSOR_OF_TRADE_SIDE`);
    any other value, and null, becomes null."""
    import pyarrow.compute as pc

    keys = list(mapping)
    index = pc.index_in(side, value_set=pa.array(keys, pa.string()))
    return pa.array([mapping[k] for k in keys], pa.string()).take(index)

