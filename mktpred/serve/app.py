"""The HTTP API (FastAPI): ``GET /health``, ``GET /predictions/latest``, ``GET /stream`` (Server-Sent
Events), ``WS /ws``; OpenAPI at ``/docs``.  Imported only by ``serve`` (FastAPI is heavy)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from mktpred import __version__
from mktpred.serve.hub import Hub, Subscriber

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class _DroppedClientFilter(logging.Filter):
    """uvicorn reports an aborted response as an error; for a client we dropped on purpose (and
    counted) that is expected, so the line is not shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


class SSEResponse(Response):
    """``text/event-stream``: ``event: prediction`` + ``data: <message JSON>`` per prediction."""

    media_type = "text/event-stream"

    def __init__(self, hub: Hub) -> None:
        super().__init__(headers=SSE_HEADERS, media_type=self.media_type)
        # streamed: no Content-Length (the base class declares 0 for an empty body)
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        sub = self.hub.subscribe("sse", tuple(client) if client else None)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": b": mktpred serve\n\n", "more_body": True})
            await _pump(sub, lambda p: send({"type": "http.response.body",
                                             "body": b"event: prediction\ndata: " + p + b"\n\n", "more_body": True}))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not sub.dropped:
                raise
        except OSError:
            pass  # the client went away
        finally:
            self.hub.unsubscribe(sub)


async def _pump(sub: Subscriber, send_one: Callable[[bytes], Any]) -> None:
    while True:
        payload = await sub.queue.get()
        if payload is None:
            return
        await send_one(payload)
        sub.sent += 1


def create_app(hub: Hub, health: Callable[[], dict[str, Any]]) -> FastAPI:
    """The app; ``health()`` returns the ``/health`` document."""
    log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DroppedClientFilter) for f in log.filters):
        log.addFilter(_DroppedClientFilter())
    app = FastAPI(title="mktpred serve", version=__version__,
                  description="Live predictions of a mktpred model. Each message: `time`, `time_ns`, `product_id`, "
                              "`model`, `version`, `horizon_s`, `valid`, the model's outputs, `latency_us`.")

    @app.get("/health", summary="Status: model and version, counters, clients")
    async def get_health() -> JSONResponse:
        return JSONResponse(health())

    @app.get("/predictions/latest", summary="The latest prediction message of each product")
    async def get_latest(product: str | None = None) -> Response:
        items = hub.latest()
        body = b"[" + b",".join(items) + b"]"
        if product is not None:
            import orjson

            body = orjson.dumps([m for m in orjson.loads(body) if m.get("product_id") == product])
        return Response(body, media_type="application/json")

    @app.get("/stream", summary="Server-Sent Events: one `event: prediction` per message",
             response_class=SSEResponse, status_code=200,
             responses={200: {"description": "`event: prediction` + `data: <message JSON>`, until the server stops",
                              "content": {"text/event-stream": {}}}})
    async def get_stream() -> SSEResponse:
        return SSEResponse(hub)

    @app.websocket("/ws")
    async def ws_stream(websocket: WebSocket) -> None:
        await websocket.accept()
        sub = hub.subscribe("ws", (websocket.client.host, websocket.client.port) if websocket.client else None)
        try:
            await _pump(sub, lambda p: websocket.send_text(p.decode()))
            await websocket.close()
        except asyncio.CancelledError:
            if not sub.dropped:
                raise
        except Exception:  # the client went away mid-send
            pass
        finally:
            hub.unsubscribe(sub)

    return app
