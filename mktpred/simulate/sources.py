"""What a connection sends: the market model (paced by ``rate``) or a recorded file (replay).

A source is owned by one connection.  The connection asks it for the frames due now
(:meth:`due`), for the snapshots a new subscription gets (:meth:`on_subscribe`) and for when to
wake up next (:meth:`next_due`).  Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from pathlib import Path
from typing import Protocol

from mktpred.simulate.frames import Frame, ack_frame, data_frame, go_time, ts_now
from mktpred.simulate.model import MarketModel, Renderer

#: how far behind schedule a source may fall before it skips ahead instead of bursting
MAX_LAG_S = 1.0
PERIODIC_S = 5.0  # candles and ticker_batch updates


class Source(Protocol):
    #: whether the server answers subscribes with ``subscriptions`` acks (a replay has its own)
    acks: bool

    def start(self, now: float) -> None: ...
    def ack(self, subscriptions: dict[str, list[str]]) -> Frame: ...
    def on_subscribe(self, channel: str, products: list[str], oversize_bytes: int = 0) -> list[Frame]: ...
    def due(self, now: float, limit: int) -> list[Frame]: ...
    def next_due(self) -> float: ...
    def rebase(self, now: float) -> None: ...
    def close(self) -> None: ...


class ModelSource:
    """The seeded market model, ``rate`` model messages per second (0 = as fast as possible).

    ``rate`` counts the data frames the market produces for a client subscribed to every product's
    level2, ticker and market_trades, whatever this client subscribed to, so the market evolves the
    same way for every connection with the same seed.  Heartbeats come on every whole second of
    server uptime and are not counted.
    """

    acks = True

    def __init__(self, products: list[str], seed: int, depth: int, rate: float,
                 subscriptions: dict[str, list[str]], server_start: float, signal: float = 0.0) -> None:
        self.model = MarketModel(products, seed, depth, signal=signal)
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

    def close(self) -> None:
        pass

    def ack(self, subscriptions: dict[str, list[str]]) -> Frame:
        return ack_frame(subscriptions, None)

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


class LoadSource(ModelSource):
    """``rate=0``: as fast as possible, from a pre-serialised cycle of model frames.

    The cycle is :data:`CYCLE_STEPS` model steps rendered once for this connection's level2 and
    ticker subscriptions, followed by level2 frames that put every touched level back to its size
    at the start of the cycle (and one ticker per product), so the cycle can repeat forever and a
    book rebuilt from the frames still matches every ticker.  At send time only ``timestamp`` (once
    per batch) and ``sequence_num`` are filled in: a few microseconds per frame.  ``event_time``
    inside the updates is the time the cycle was built, and there are no ``market_trades``
    updates in this mode (trades still move the book).  Snapshots, acks and heartbeats are as in
    the model; a new subscription first brings the model's book to where the client's view is.
    """

    CYCLE_STEPS = 4000
    RESTORE_BATCH = 20

    def __init__(self, products: list[str], seed: int, depth: int, rate: float,
                 subscriptions: dict[str, list[str]], server_start: float, signal: float = 0.0) -> None:
        super().__init__(products, seed, depth, rate, subscriptions, server_start, signal)
        #: (head before the timestamp, head after it, tail, channel) per cycle frame
        self.cycle: list[tuple[bytes, bytes, bytes, str]] = []
        #: the level changes each cycle frame carries: (product, side, price, new size)
        self.changes: list[list[tuple[str, int, int, int]]] = []
        self.pos = 0
        self.built_for: object = None

    def _sync(self) -> None:
        """Apply the cycle frames already sent to the model's book and drop the cycle."""
        for changes in self.changes[: self.pos]:
            for product, side, px, size in changes:
                self.model.products[product].book.set(side, px, size)
        self.cycle, self.changes, self.pos, self.built_for = [], [], 0, None

    def on_subscribe(self, channel: str, products: list[str], oversize_bytes: int = 0) -> list[Frame]:
        self._sync()
        return super().on_subscribe(channel, products, oversize_bytes)

    def _build(self) -> None:
        from mktpred.simulate.model import ModelEvent

        l2 = set(self.subs.get("level2", ()))
        tick = set(self.subs.get("ticker", ()))
        r = self.render
        frames: list[tuple[Frame, list[tuple[str, int, int, int]]]] = []
        start: dict[tuple[str, int, int], int] = {}
        for _ in range(self.CYCLE_STEPS):
            for ev in self.model.step(time.time_ns()):
                if ev.kind == "l2":
                    for side, px, _new in ev.changes:
                        start.setdefault((ev.product, side, px), -1)
                    if ev.product in l2:
                        frames.append((r.l2_update(ev), [(ev.product, s, p, q) for s, p, q in ev.changes]))
                elif ev.kind == "ticker" and ev.product in tick:
                    frames.append((r.ticker(ev.product, "update"), []))
        # put every touched level back (the model's book too), a batch of levels per frame
        now = time.time_ns()
        by_product: dict[str, list[tuple[int, int, int]]] = {}
        for (product, side, px) in start:
            size = self._before.get((product, side, px), 0)
            self.model.products[product].book.set(side, px, size)
            by_product.setdefault(product, []).append((side, px, size))
        for product, levels in by_product.items():
            if product in l2:
                for i in range(0, len(levels), self.RESTORE_BATCH):
                    batch = levels[i:i + self.RESTORE_BATCH]
                    frames.append((r.l2_update(ModelEvent("l2", product, now, batch)),
                                   [(product, s, p, q) for s, p, q in batch]))
            if product in tick:
                frames.append((r.ticker(product, "update"), []))
        self.cycle, self.changes = [], []
        for fr, applied in frames:
            ts_at = fr.head.index(b'"timestamp":"') + len(b'"timestamp":"')
            ts_end = fr.head.index(b'"', ts_at)
            self.cycle.append((fr.head[:ts_at], fr.head[ts_end:], fr.tail or b"", fr.channel))
            self.changes.append(applied)
        self.pos = 0

    def due(self, now: float, limit: int) -> list[Frame]:
        out: list[Frame] = []
        if not self.started:
            return out
        self._periodic(now, out)
        key = tuple((k, tuple(v)) for k, v in sorted(self.subs.items()) if k in ("level2", "ticker"))
        if key != self.built_for:
            self._sync()
            self.built_for = key
            self._before = self._sizes()
            self._build()
        if not self.cycle:
            self.t_next = now + 0.05  # nothing to stream for these subscriptions
            return out
        ts = ts_now().encode()
        cycle, pos, n = self.cycle, self.pos, len(self.cycle)
        for _ in range(limit - len(out)):
            a, b, tail, ch = cycle[pos]
            out.append(Frame(a + ts + b, tail, ch))
            pos += 1
            if pos == n:
                pos = 0
        self.pos = pos
        self.t_next = now
        return out

    def _sizes(self) -> dict[tuple[str, int, int], int]:
        """Every level's size now (the cycle restores touched levels to these)."""
        out: dict[tuple[str, int, int], int] = {}
        for product, pm in self.model.products.items():
            out.update(((product, 0, px), q) for px, q in pm.book.bids.items())
            out.update(((product, 1, px), q) for px, q in pm.book.asks.items())
        return out

    _before: dict[tuple[str, int, int], int] = {}  # noqa: RUF012 - replaced per build


class StreamSource:
    """The model on a simulated clock (:class:`~mktpred.simulate.stream.ModelStream`): the connection
    counts as opened at ``start_ns``, and model time advances ``speed`` times as fast as real time
    (0 = at once) from the first subscribe.  A client that subscribes like ``collect`` gets the frames
    that ``--to-raw`` writes for the same seed and start."""

    acks = True

    def __init__(self, products: list[str], seed: int, depth: int, rate: float, signal: float, start_ns: int,
                 speed: float, subscriptions: dict[str, list[str]]) -> None:
        from mktpred.simulate.stream import CONNECT_NS, ModelStream, Out

        self.stream = ModelStream(products, seed=seed, depth=depth, rate=rate, signal=signal,
                                  start_ns=start_ns + CONNECT_NS)
        self.speed = speed
        self.subs = subscriptions
        self.mono0 = math.inf
        self.pending: list[Out] = []
        self.started = False

    def _due_at(self, t_ns: int) -> float:
        if self.speed <= 0:
            return self.mono0
        return self.mono0 + (t_ns - self.stream.t0) / 1e9 / self.speed

    def start(self, now: float) -> None:
        self.started = True
        self.mono0 = now

    def rebase(self, now: float) -> None:
        lag = now - self.next_due()
        if self.started and self.speed > 0 and lag > 0:
            self.mono0 += lag  # after a stall: carry on from where the stream was, no burst

    def next_due(self) -> float:
        if not self.started:
            return math.inf
        return self._due_at(self.pending[0].time_ns if self.pending else self.stream.peek_ns())

    def close(self) -> None:
        pass

    def ack(self, subscriptions: dict[str, list[str]]) -> Frame:
        return self.stream.ack(subscriptions).frame

    def on_subscribe(self, channel: str, products: list[str], oversize_bytes: int = 0) -> list[Frame]:
        return [o.frame for o in self.stream.answer(channel, products, oversize_bytes)]

    def due(self, now: float, limit: int) -> list[Frame]:
        out: list[Frame] = []
        if not self.started:
            return out
        while len(out) < limit:
            if not self.pending:
                if self._due_at(self.stream.peek_ns()) > now:
                    break
                self.pending = self.stream.next_batch()
                self.pending.reverse()  # popped from the end
            o = self.pending[-1]
            if self._due_at(o.time_ns) > now:
                break
            self.pending.pop()
            if o.wanted(self.subs):
                out.append(o.frame)
        return out


class ReplaySource:
    """Frames read from a recording, paced by their original times divided by ``speed``."""

    acks = False

    def __init__(self, path: Path, speed: float) -> None:
        from mktpred.simulate.replay import read_replay

        self.frames: Generator[tuple[int, Frame], None, None] = read_replay(path)
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

    def close(self) -> None:
        """Close the recording (the connection ended before its end)."""
        self.frames.close()

    def ack(self, subscriptions: dict[str, list[str]]) -> Frame:
        return ack_frame(subscriptions, None)

    def on_subscribe(self, channel: str, products: list[str], oversize_bytes: int = 0) -> list[Frame]:
        return []

    def due(self, now: float, limit: int) -> list[Frame]:
        out: list[Frame] = []
        while self.started and self.pending is not None and len(out) < limit and self._due_at() <= now:
            out.append(self.pending[1])
            self._advance()
        return out
