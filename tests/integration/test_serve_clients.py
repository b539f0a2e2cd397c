"""The fan-out on a real uvicorn server: a client that never reads is dropped and counted while
publishing never waits and the reading clients get every message in order."""

from __future__ import annotations

import socket
import time

import orjson

from mktpred.serve.app import create_app
from mktpred.serve.http import HttpServer
from mktpred.serve.hub import Hub
from tests.integration.procs import wait_until
from tests.integration.serve_helpers import SSEClient, WSClient

N = 6000


def test_a_client_that_never_reads_is_dropped_and_publishing_never_waits() -> None:
    """6,000 messages (~9 MB, more than the kernel buffers hold) paced at ~2,000/s: the stalled client (tiny receive buffer, never
    reads) is dropped and counted; no publish call waits for it; SSE and WS readers get all."""
    hub = Hub(client_queue=2048)
    server = HttpServer(create_app(hub, lambda: {"clients": hub.clients}), hub, "127.0.0.1", 0)
    server.start()
    stalled = socket.socket()
    try:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        sse, ws = SSEClient(server.url), WSClient(server.url)
        sse.start()
        ws.start()
        assert wait_until(lambda: hub.clients == 3, 30)
        worst = 0.0
        pad = "x" * 1500
        for i in range(N):
            t = time.perf_counter()
            hub.publish([("BTC-USD", orjson.dumps({"i": i, "pad": pad}))])
            worst = max(worst, time.perf_counter() - t)
            if i % 20 == 19:
                time.sleep(0.01)
        assert wait_until(lambda: hub.clients_dropped == 1, 30), hub.clients_dropped
        # A publish that waited on the stalled client would block until that client read (never);
        # the bound is generous so a loaded 2-core machine's scheduling cannot fail it (the latency
        # figures are bench/bench_serve.py's business).
        assert worst < 2.0, worst
    finally:
        server.stop()
        stalled.close()
    sse.join(30)
    ws.join(30)
    assert sse.error is None and ws.error is None
    assert [m["i"] for m in sse.messages] == list(range(N))
    assert [m["i"] for m in ws.messages] == list(range(N))
    assert hub.clients_total == 3 and hub.messages == N
