"""A short load test: thousands of frames per second, every one accounted for."""

from __future__ import annotations

import contextlib
import json
import time

import websocket

from mktpred.coinbase import subscribe_message
from mktpred.simulate import SimulatedExchange


def test_a_few_thousand_frames_per_second_for_two_seconds() -> None:
    """At rate 4000 for ~2 s the client gets a contiguous stream equal to what the server logged."""
    with SimulatedExchange(products=["BTC-USD", "ETH-USD"], rate=4000, depth=500, record_sent=True) as sim:
        ws = websocket.create_connection(sim.url, timeout=30, skip_utf8_validation=True)
        try:
            for ch in ("level2", "ticker", "market_trades", "heartbeats"):
                ws.send(subscribe_message(ch, ["BTC-USD", "ETH-USD"]))
            got: list[str] = []
            start = time.monotonic()
            while time.monotonic() - start < 2.0:
                got.append(ws.recv_data()[1].decode())
        finally:
            with contextlib.suppress(Exception):
                ws.close(timeout=1)
            ws.shutdown()
        log = sim.connections()[0]
        assert log.sent[: len(got)] == got
    assert [json.loads(f)["sequence_num"] for f in got] == list(range(len(got)))
    channels = {json.loads(f)["channel"] for f in got}
    assert {"l2_data", "ticker", "market_trades", "heartbeats", "subscriptions"} <= channels
    assert len(got) >= 2000  # counts, not speed: 4000/s for 2 s leaves a wide margin on a loaded machine
