"""One ``serve`` run: the recorder of ``collect`` with a tap, the pipeline thread, the HTTP server,
the prediction segments and the model watcher, started and stopped in order.

Recording never waits on anything here: the recorder's buffer hands each line to an unbounded
queue (a non-blocking put) as it accepts it for writing; the pipeline thread drains that queue,
so a slow model or client only grows the backlog (reported), it never delays a frame being
recorded.  At shutdown the recorder seals its raw segment first, then the pipeline processes every
line left in the queue and seals the prediction segment, then the HTTP server ends its streams.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mktpred.collect import Collector, CollectResult, CollectSettings, CollectStatus
from mktpred.collect.clock import Clock, SystemClock
from mktpred.config import Config
from mktpred.errors import ConfigError, MktpredError
from mktpred.serve.hub import CLIENT_QUEUE, Hub
from mktpred.serve.model import ModelWatcher, ServedModel, load_served, name_dir_of
from mktpred.serve.pipeline import GRACE_NS, Message, Pipeline, percentile
from mktpred.serve.segments import PredictionSegments

#: channels the feature engine needs, whatever ``[collect] channels`` says
NEEDED_CHANNELS = ("level2", "market_trades")
_STOP = object()


@dataclass(frozen=True)
class ServeSettings:
    """Everything one ``serve`` run needs."""

    collect: CollectSettings
    model: Path
    predictions_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    client_queue: int = CLIENT_QUEUE
    grace_ns: int = GRACE_NS
    reload_poll_s: float = 0.25
    #: the interpreter's thread switch interval while serving: CPython's default (5 ms) lets a busy
    #: thread hold the GIL that long while the pipeline waits; None leaves it alone
    switch_interval_s: float | None = 0.0005

    @classmethod
    def from_config(cls, cfg: Config, model: Path, duration_s: float | None = None,
                    grace_ns: int = GRACE_NS) -> ServeSettings:
        c = CollectSettings.from_config(cfg, duration_s=duration_s)
        channels = tuple(dict.fromkeys([*c.channels, *NEEDED_CHANNELS]))
        c = CollectSettings(**{**asdict(c), "channels": channels})
        return cls(collect=c, model=Path(model), predictions_dir=cfg.paths.predictions_dir, host=cfg.serve.host,
                   port=cfg.serve.port, grace_ns=grace_ns)


@dataclass
class ServeStatus:
    """What the status panel shows, every ``status_every_s``."""

    collect: CollectStatus
    url: str
    model: str
    version: str
    frames: int
    predictions: int
    invalid: int
    latency_p50_us: float | None
    latency_p99_us: float | None
    clients: int
    clients_dropped: int
    backlog: int
    reloads: int
    notices: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ServeResult:
    """The ``--json`` summary."""

    url: str
    model: str
    version: str
    versions: list[str]
    products: list[str]
    frames: int
    grid_points: int
    predictions: int
    invalid_predictions: int
    late_frames: int
    undecodable: int
    gaps: int
    reloads: int
    latency_us: dict[str, float | None]
    model_call_us: dict[str, float | None]
    clients_total: int
    clients_dropped: int
    predictions_dir: str
    prediction_segments: list[str]
    prediction_lines: int
    collect: CollectResult

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "collect"}
        d["collect"] = self.collect.to_dict()
        return d


class ServeRun:
    """See the module docstring.  ``on_ready(url)`` is called once the HTTP server listens."""

    def __init__(self, settings: ServeSettings, *, stop: threading.Event | None = None,
                 clock: Clock | None = None) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.clock = clock or SystemClock()
        self.served: ServedModel = load_served(settings.model)  # a bad model fails before connecting
        if settings.client_queue < 1:
            raise ConfigError("the client queue must hold at least one message")
        self.collector = Collector(settings.collect, stop=self.stop, clock=self.clock, tap=self._tap)
        self.hub = Hub(settings.client_queue)
        self.segments = PredictionSegments(settings.predictions_dir, self.clock.now_ns)
        self.pipeline = Pipeline(self.served, settings.collect.products, self._publish,
                                 grace_ns=settings.grace_ns, clock=self.clock.now_ns)
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._errors: list[MktpredError] = []
        self._started = time.monotonic()
        self.url = ""

    # -- threads ----------------------------------------------------------------------------------
    def _tap(self, recv_ns: int, line: bytes) -> None:
        self._q.put((recv_ns, line))

    def _publish(self, msgs: list[Message]) -> None:
        payloads = [(m["product_id"], orjson.dumps(m)) for m in msgs]
        self.hub.publish(payloads)
        self.segments.write(b"".join(p + b"\n" for _, p in payloads), len(payloads))

    def _pipeline_loop(self) -> None:
        q, pipe, now = self._q, self.pipeline, self.clock.now_ns
        try:
            while True:
                deadline = pipe.next_deadline()
                wait = 0.25 if deadline is None else min(0.25, max(0.0, (deadline - now()) / 1e9))
                try:
                    item = q.get(timeout=wait) if wait > 0 else q.get_nowait()
                except queue.Empty:
                    item = None
                if item is _STOP:
                    break
                if item is not None:
                    pipe.on_line(item[1], item[0])
                # The timer rule only with nothing queued: a queued frame has already arrived.
                if q.empty():
                    deadline = pipe.next_deadline()
                    if deadline is not None and now() >= deadline:
                        pipe.on_tick(now())
                self.segments.tick()
        except MktpredError as exc:
            self._errors.append(exc)
            self.stop.set()
        except Exception as exc:  # a bug: stop the run rather than serve nothing silently
            self._errors.append(MktpredError(f"the prediction pipeline failed: {type(exc).__name__}: {exc}"))
            self.stop.set()

    # -- the run ----------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        st, m = self.pipeline.stats, self.pipeline.served.model
        lat = list(self.pipeline.latencies_us)[-10_000:]
        return {"status": "ok", "model": m.name, "version": m.version, "products": self.pipeline.products,
                "uptime_s": round(time.monotonic() - self._started, 3), "frames": st.frames,
                "grid_points": st.grid_points, "predictions": st.predictions, "invalid_predictions": st.invalid,
                "gaps": st.gaps, "reloads": st.reloads, "backlog": self._q.qsize(),
                "latency_us": {"p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99)},
                "clients": self.hub.clients, "clients_total": self.hub.clients_total,
                "clients_dropped": self.hub.clients_dropped}

    def run(self, on_ready: Callable[[str], None] | None = None,
            on_status: Callable[[ServeStatus], None] | None = None, status_every_s: float = 1.0) -> ServeResult:

        s = self.settings
        old_switch = sys.getswitchinterval()
        if s.switch_interval_s is not None:
            sys.setswitchinterval(s.switch_interval_s)
        try:
            return self._run(on_ready, on_status, status_every_s)
        finally:
            sys.setswitchinterval(old_switch)

    def _run(self, on_ready: Callable[[str], None] | None, on_status: Callable[[ServeStatus], None] | None,
             status_every_s: float) -> ServeResult:
        from mktpred.serve.app import create_app
        from mktpred.serve.http import HttpServer

        s = self.settings
        self.segments.open()
        http = HttpServer(create_app(self.hub, self.health), self.hub, s.host, s.port)
        try:
            http.start()
        except BaseException:
            self.segments.close()
            raise
        self.url = http.url
        watcher = None
        name_dir = name_dir_of(s.model)
        if name_dir is not None:
            watcher = ModelWatcher(name_dir, self.served.model.version, self.served.spec, self.pipeline.switch_model,
                                   lambda msg: self.collector.notices.add("warn", msg), s.reload_poll_s)
            watcher.start()
        worker = threading.Thread(target=self._pipeline_loop, name="mktpred-serve-pipeline", daemon=True)
        worker.start()
        collect_result: CollectResult | None = None
        try:
            if on_ready is not None:
                on_ready(self.url)
            collect_result = self.collector.run(
                None if on_status is None else (lambda cs: on_status(self._status(cs))), status_every_s)
        finally:
            if watcher is not None:
                watcher.stop.set()
            self._q.put(_STOP)
            worker.join()
            try:
                self.segments.close()
            finally:
                http.stop()
        if self._errors:
            raise self._errors[0]
        assert collect_result is not None
        return self._result(collect_result)

    def _status(self, cs: CollectStatus) -> ServeStatus:
        st, m = self.pipeline.stats, self.pipeline.served.model
        lat = list(self.pipeline.latencies_us)[-10_000:]
        return ServeStatus(collect=cs, url=self.url, model=m.name, version=m.version, frames=st.frames,
                           predictions=st.predictions, invalid=st.invalid, latency_p50_us=percentile(lat, 0.5),
                           latency_p99_us=percentile(lat, 0.99), clients=self.hub.clients,
                           clients_dropped=self.hub.clients_dropped, backlog=self._q.qsize(), reloads=st.reloads,
                           notices=list(cs.notices))

    def _result(self, cr: CollectResult) -> ServeResult:
        p = self.pipeline
        st, m = p.stats, p.served.model
        lat = list(p.latencies_us)
        calls = list(p.model_call_us)
        return ServeResult(
            url=self.url, model=m.name, version=m.version, versions=list(dict.fromkeys(p.versions)),
            products=p.products, frames=st.frames, grid_points=st.grid_points, predictions=st.predictions,
            invalid_predictions=st.invalid, late_frames=st.late_frames, undecodable=st.undecodable, gaps=st.gaps,
            reloads=st.reloads,
            latency_us={"p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99), "max": max(lat) if lat else None},
            model_call_us={"p50": _r(percentile(calls, 0.5)), "p99": _r(percentile(calls, 0.99))},
            clients_total=self.hub.clients_total, clients_dropped=self.hub.clients_dropped,
            predictions_dir=str(self.settings.predictions_dir),
            prediction_segments=[str(x) for x in self.segments.sealed], prediction_lines=self.segments.lines_total,
            collect=cr)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def run_serve(settings: ServeSettings, *, stop: threading.Event | None = None, clock: Clock | None = None,
              on_ready: Callable[[str], None] | None = None, on_status: Callable[[ServeStatus], None] | None = None,
              status_every_s: float = 1.0) -> ServeResult:
    """Serve until ``stop`` is set or the duration passes; see :class:`ServeRun`."""
    return ServeRun(settings, stop=stop, clock=clock).run(on_ready, on_status, status_every_s)
