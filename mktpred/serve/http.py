"""uvicorn in a background thread with its own event loop; the bound port is known once it starts."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from mktpred.errors import RuntimeFailure
from mktpred.serve.hub import Hub


class HttpServer:
    """Runs ``app`` on ``host:port`` (0 = any free port) until :meth:`stop`."""

    def __init__(self, app: Any, hub: Hub, host: str, port: int) -> None:
        import uvicorn

        self.hub = hub
        self.host = host
        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                                     access_log=False, timeout_graceful_shutdown=2, ws_ping_interval=None)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self._run, name="mktpred-serve-http", daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self.error: BaseException | None = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        self.hub.bind(loop)
        self.hub.abort_client = self._abort
        try:
            loop.run_until_complete(self.server.serve())
        except BaseException as exc:  # bind failures arrive as SystemExit from uvicorn
            self.error = exc
        finally:
            for proto in list(self.server.server_state.connections):  # dropped or stalled peers
                transport = getattr(proto, "transport", None)
                if transport is not None:
                    transport.abort()
            loop.run_until_complete(asyncio.sleep(0))  # let the aborted transports finish
            loop.close()

    def _abort(self, client: tuple[str, int]) -> None:
        """On the loop: abort the connection(s) of peer ``client``."""
        for proto in list(self.server.server_state.connections):
            if getattr(proto, "client", None) == client:
                transport = getattr(proto, "transport", None)
                if transport is not None:
                    transport.abort()

    def start(self, timeout_s: float = 15.0) -> None:
        self.thread.start()
        deadline = threading.Event()
        waited = 0.0
        while not self.server.started and self.thread.is_alive() and waited < timeout_s:
            deadline.wait(0.01)
            waited += 0.01
        if not self.server.started:
            self.stop()
            raise RuntimeFailure(f"cannot serve HTTP on {self.host}:{self.config.port}"
                                 + (" (address in use or not available)" if self.error is not None else ""),
                                 where="--host/--port")
        sockets = [s for srv in self.server.servers for s in srv.sockets]
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.config.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        """End every stream, then stop the server (bounded wait)."""
        loop = self.loop
        if loop is not None and not loop.is_closed() and self.thread.is_alive():
            try:
                loop.call_soon_threadsafe(self.hub.close_all)
            except RuntimeError:
                pass
        self.server.should_exit = True
        self.thread.join(10.0)
