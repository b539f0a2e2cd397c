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
