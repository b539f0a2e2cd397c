"""The Coinbase Advanced Trade market-data protocol: channels, frame shapes, timestamps, decimals."""

from mktpred.coinbase.protocol import (
    CHANNEL_OF_SUBSCRIPTION,
    DEFAULT_URL,
    SUBSCRIBABLE_CHANNELS,
    format_decimal,
    subscribe_message,
)
from mktpred.coinbase.timestamps import format_rfc3339_ns, parse_rfc3339_ns

__all__ = [
    "CHANNEL_OF_SUBSCRIPTION",
    "DEFAULT_URL",
    "SUBSCRIBABLE_CHANNELS",
    "format_decimal",
    "format_rfc3339_ns",
    "parse_rfc3339_ns",
    "subscribe_message",
]
