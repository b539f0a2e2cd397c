"""Channel names and message shapes of the Advanced Trade market-data WebSocket."""

from __future__ import annotations

import json
import re
from decimal import Decimal

DEFAULT_URL = "wss://advanced-trade-ws.coinbase.com"

#: subscription name -> the ``channel`` value its data frames carry
CHANNEL_OF_SUBSCRIPTION: dict[str, str] = {
    "level2": "l2_data",
    "ticker": "ticker",
    "ticker_batch": "ticker_batch",
    "market_trades": "market_trades",
    "heartbeats": "heartbeats",
    "candles": "candles",
    "status": "status",
}
SUBSCRIBABLE_CHANNELS = tuple(CHANNEL_OF_SUBSCRIPTION)

#: a Coinbase product id: upper-case letters and digits in two to four dash-separated parts
#: (``BTC-USD``, ``BTC-PERP-INTX``, ``BIT-28JUN24-CDE``).  Product ids name files in the store, so
#: ``convert`` quarantines a frame whose product id is anything else.
PRODUCT_ID_RE = re.compile(r"[A-Z0-9]{1,24}(?:-[A-Z0-9]{1,24}){1,3}\Z")


def is_product_id(value: object) -> bool:
    """Whether ``value`` is a string shaped like a Coinbase product id."""
    return isinstance(value, str) and PRODUCT_ID_RE.match(value) is not None


#: ``market_trades.side`` is the *maker's* side: a ``SELL`` trade printed at the ask, so the taker
#: bought (measured on the real capture: 49 of 50 ``SELL`` at the best ask).  Maps side -> aggressor.
AGGRESSOR_OF_TRADE_SIDE: dict[str, str] = {"SELL": "buy", "BUY": "sell"}


def subscribe_message(channel: str, products: list[str], *, unsubscribe: bool = False) -> str:
    """The compact JSON text of one (un)subscribe message: one channel per message."""
    msg = {"type": "unsubscribe" if unsubscribe else "subscribe", "product_ids": list(products),
           "channel": channel}
    return json.dumps(msg, separators=(",", ":"))


def format_decimal(value: Decimal | float | int | str) -> str:
    """Coinbase's decimal strings: no exponent, trailing zeros trimmed (``"65083.66"``, ``"0"``)."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# -- frames, events and rows: the names the engines, the record checker and the simulator share -----

#: frame keys (a frame is ``{"channel", "timestamp", "sequence_num", "events": [...]}``; some
#: control frames say ``type`` instead of ``channel``)
FRAME_CHANNEL, FRAME_TYPE, FRAME_TIMESTAMP, FRAME_SEQUENCE, FRAME_EVENTS = (
    "channel", "type", "timestamp", "sequence_num", "events")
#: data channels
L2_CHANNEL, TICKER_CHANNEL, TICKER_BATCH_CHANNEL, TRADES_CHANNEL = "l2_data", "ticker", "ticker_batch", "market_trades"
#: data channel -> (the store table its rows feed, the list inside each event that holds the rows)
TABLE_LISTS: dict[str, tuple[str, str]] = {
    L2_CHANNEL: ("l2", "updates"),
    TICKER_CHANNEL: ("ticker", "tickers"),
    TICKER_BATCH_CHANNEL: ("ticker", "tickers"),
    TRADES_CHANNEL: ("trades", "trades"),
}
#: an event's ``type``
SNAPSHOT, UPDATE = "snapshot", "update"
EVENT_TYPES = (SNAPSHOT, UPDATE)
#: level2 ``side`` values; Coinbase says ``offer`` where the store says ``ask`` (``ask`` is accepted too)
L2_SIDES = ("bid", "offer", "ask")
L2_SIDE_OF: dict[str, str] = {"bid": "bid", "offer": "ask", "ask": "ask"}

#: The nested frame as the engines read it, field -> kind: ``str`` (text), ``int``, ``num`` (a decimal
#: string), ``time`` (RFC 3339 text), or a dict (a list of objects with those fields).  Each engine
#: maps the kinds to its own types (DuckDB SQL, Arrow); unknown keys are ignored.
UPDATE_FIELDS: dict[str, str] = {"side": "str", "event_time": "time", "price_level": "num", "new_quantity": "num"}
#: ticker row key -> store ``ticker`` column
TICKER_COLUMNS: dict[str, str] = {
    "price": "price", "volume_24_h": "volume_24h", "low_24_h": "low_24h", "high_24_h": "high_24h",
    "low_52_w": "low_52w", "high_52_w": "high_52w", "price_percent_chg_24_h": "price_pct_chg_24h",
    "best_bid": "best_bid", "best_ask": "best_ask", "best_bid_quantity": "best_bid_size",
    "best_ask_quantity": "best_ask_size",
}
TICKER_FIELDS: dict[str, str] = {"product_id": "str", **dict.fromkeys(TICKER_COLUMNS, "num")}
TRADE_FIELDS: dict[str, str] = {"product_id": "str", "trade_id": "str", "price": "num", "size": "num",
                                "time": "time", "side": "str"}
EVENT_FIELDS: dict[str, str | dict[str, str]] = {"type": "str", "product_id": "str", "updates": UPDATE_FIELDS,
                                                 "tickers": TICKER_FIELDS, "trades": TRADE_FIELDS}
#: the frame timestamp stays text for the engines: they parse all nine fraction digits themselves
FRAME_FIELDS: dict[str, str | dict[str, str | dict[str, str]]] = {
    FRAME_CHANNEL: "str", FRAME_TIMESTAMP: "str", FRAME_SEQUENCE: "int", FRAME_TYPE: "str",
    FRAME_EVENTS: EVENT_FIELDS}
