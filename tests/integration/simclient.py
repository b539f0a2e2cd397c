"""A real websocket-client client of `mktpred simulate`, shared by the simulate integration tests.

Each test module closes what its tests opened with an autouse fixture that calls :func:`close_clients`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import websocket

from mktpred.coinbase import subscribe_message
from mktpred.simulate import SimulatedExchange

_OPEN: list[websocket.WebSocket] = []


def open_client(sim: SimulatedExchange, channels: Sequence[str] = (),
                products: list[str] | None = None) -> websocket.WebSocket:
    """A connection to ``sim`` subscribed to ``channels`` (one message each) for ``products``
    (default ``BTC-USD``)."""
    ws = websocket.create_connection(sim.url, timeout=30, skip_utf8_validation=True)
    _OPEN.append(ws)
    for ch in channels:
        ws.send(subscribe_message(ch, ["BTC-USD"] if products is None else products))
    return ws


def close_clients() -> None:
    """Close every client :func:`open_client` opened, whatever happened."""
    while _OPEN:
        ws = _OPEN.pop()
        with contextlib.suppress(Exception):
            ws.close(timeout=1)
        ws.shutdown()
