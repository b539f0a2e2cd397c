"""What a connection sends: the market model (paced by ``rate``) or a recorded file (replay).

A source is owned by one connection.  The connection asks it for the frames due now
(:meth:`due`), for the snapshots a new subscription gets (:meth:`on_subscribe`) and for when to
wake up next (:meth:`next_due`).  Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Protocol

from mktpred.simulate.frames import Frame, data_frame, go_time, ts_now
from mktpred.simulate.model import MarketModel, Renderer

#: how far behind schedule a source may fall before it skips ahead instead of bursting
MAX_LAG_S = 1.0
PERIODIC_S = 5.0  # candles and ticker_batch updates


class Source(Protocol):
    #: whether the server answers subscribes with ``subscriptions`` acks (a replay has its own)
    acks: bool

    def start(self, now: float) -> None: ...
    def on_subscribe(self, channel: str, products: list[str], oversize_bytes: int = 0) -> list[Frame]: ...
    def due(self, now: float, limit: int) -> list[Frame]: ...
    def next_due(self) -> float: ...
    def rebase(self, now: float) -> None: ...


class ModelSource:
    """The seeded market model, ``rate`` model messages per second (0 = as fast as possible).

    ``rate`` counts the data frames the market produces for a client subscribed to every product's
    level2, ticker and market_trades, whatever this client subscribed to, so the market evolves the
    same way for every connection with the same seed.  Heartbeats come on every whole second of
    server uptime and are not counted.
    """

    acks = True

    def __init__(self, products: list[str], seed: int, depth: int, rate: float,
                 subscriptions: dict[str, list[str]], server_start: float) -> None:
        self.model = MarketModel(products, seed, depth)
        self.render = Renderer(self.model)
        self.rate = rate
        self.subs = subscriptions
        self.server_start = server_start
        self.started = False
        self.t_next = math.inf
        self.next_hb = math.inf
        self.next_periodic = math.inf

    def start(self, now: float) -> None:
        self.started = True
        self.t_next = now
        up = now - self.server_start
        self.next_hb = self.server_start + math.floor(up) + 1.0
        self.next_periodic = now + PERIODIC_S

    def rebase(self, now: float) -> None:
        if self.t_next < now:
            self.t_next = now

    def next_due(self) -> float:
        return min(self.t_next, self.next_hb, self.next_periodic)

    def on_subscribe(self, channel: str, products: list[str], oversize_bytes: int = 0) -> list[Frame]:
        r = self.render
        now_ns = time.time_ns()
        if channel == "level2":
            return [r.l2_snapshot(p, now_ns, oversize_bytes) for p in products]
        if channel in ("ticker", "ticker_batch"):
            return [r.ticker(p, "snapshot", channel) for p in products]
        if channel == "market_trades":
            return [r.trades_snapshot(p) for p in products]
        if channel == "candles":
            return [r.candles(p, "snapshot", now_ns) for p in products]
        if channel == "status":
            return [r.status(products)]
        return []

    def _periodic(self, now: float, out: list[Frame]) -> None:
        if now >= self.next_hb:
            if "heartbeats" in self.subs:
                ns = time.time_ns()
                up = now - self.server_start
                events = (f'[{{"current_time":"{go_time(ns, up)}","heartbeat_counter":{int(up)}}}]')
                out.append(data_frame("heartbeats", ts_now(ns), events))
            self.next_hb += 1.0
            if self.next_hb <= now:
                self.next_hb = self.server_start + math.floor(now - self.server_start) + 1.0
        if now >= self.next_periodic:
            now_ns = time.time_ns()
            out.extend(self.render.candles(p, "update", now_ns) for p in self.subs.get("candles", ()))
            out.extend(self.render.ticker(p, "update", "ticker_batch") for p in self.subs.get("ticker_batch", ()))
            self.next_periodic = max(self.next_periodic + PERIODIC_S, now)

    def due(self, now: float, limit: int) -> list[Frame]:
        out: list[Frame] = []
        if not self.started:
            return out
        self._periodic(now, out)
        if self.rate > 0 and now - self.t_next > MAX_LAG_S:
            self.t_next = now - MAX_LAG_S
        subs = self.subs
        l2 = subs.get("level2", ())
        tick = subs.get("ticker", ())
        trades = subs.get("market_trades", ())
        r = self.render
        step = self.model.step
        steps = 0
        while len(out) < limit and steps < limit and (self.rate <= 0 or self.t_next <= now):
            events = step(time.time_ns())
            steps += 1
            if self.rate > 0:
                self.t_next += len(events) / self.rate
            for ev in events:
                if ev.kind == "l2":
                    if ev.product in l2:
                        out.append(r.l2_update(ev))
                elif ev.kind == "ticker":
                    if ev.product in tick:
                        out.append(r.ticker(ev.product, "update"))
                elif ev.product in trades:
                    out.append(r.trade_update(ev))
        return out


class ReplaySource:
    """Frames read from a recording, paced by their original times divided by ``speed``."""

    acks = False

    def __init__(self, path: Path, speed: float) -> None:
        from mktpred.simulate.replay import read_replay

        self.frames = read_replay(path)
        self.speed = speed
        self.t0_rec: int | None = None
        self.t0 = math.inf
        self.pending: tuple[int, Frame] | None = None
        self.done = False
        self.started = False

    def start(self, now: float) -> None:
        self.started = True
        self.t0 = now
        self._advance()

    def _advance(self) -> None:
        try:
            self.pending = next(self.frames)
        except StopIteration:
            self.pending = None
            self.done = True
            return
        if self.t0_rec is None:
            self.t0_rec = self.pending[0]

    def _due_at(self) -> float:
        if self.pending is None:
            return math.inf
        if self.speed <= 0:
            return self.t0
        assert self.t0_rec is not None
        return self.t0 + (self.pending[0] - self.t0_rec) / 1e9 / self.speed

    def rebase(self, now: float) -> None:
        lag = now - self._due_at()
        if self.speed > 0 and lag > 0 and self.pending is not None:
            self.t0 += lag

    def next_due(self) -> float:
        return self._due_at() if self.started else math.inf

    def on_subscribe(self, channel: str, products: list[str], oversize_bytes: int = 0) -> list[Frame]:
        return []

    def due(self, now: float, limit: int) -> list[Frame]:
        out: list[Frame] = []
        while self.started and self.pending is not None and len(out) < limit and self._due_at() <= now:
            out.append(self.pending[1])
            self._advance()
        return out
