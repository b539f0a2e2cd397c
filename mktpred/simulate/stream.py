"""The model's stream on a simulated clock: every frame stamped with model time, never wall time.

:class:`ModelStream` is what ``mktpred simulate --to-raw`` writes and what the server sends when it
is given a start time (``--start``): the same seed gives the same frames, byte for byte, whether
they go to a file at full speed or over a socket paced in real time.

The clock: a subscription is answered at the current model time (one microsecond between frames);
the first market step comes :data:`SETTLE_NS` after the start, so a client that subscribes to
several channels back to back gets every answer before the first update; then steps follow each
other after exponential waits whose mean makes ``rate`` frames per second on average (counted as
for the live model: level2, ticker and market_trades of every product).  Heartbeats come on every
whole second after the start, candles and ticker_batch updates every 5 s.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mktpred.simulate.frames import Frame, ack_frame, data_frame, go_time, ts_now
from mktpred.simulate.model import MarketModel, ModelEvent, Renderer
from mktpred.simulate.oracle import OracleTracker

NS_PER_S = 1_000_000_000
#: from the connection's open (the run's start) to the stream's clock start (the first answer)
CONNECT_NS = 200_000
#: from the stream's clock start (the subscription answers) to the first market step
SETTLE_NS = 250_000_000
#: between consecutive frames of one step or one subscription answer
FRAME_GAP_NS = 1_000
#: the shortest wait between two steps (their frames never interleave)
MIN_STEP_NS = 10_000
PERIODIC_NS = 5 * NS_PER_S
#: the channel a subscription to each channel name delivers (heartbeats are not per product)
CHANNEL_KEYS = ("level2", "ticker", "ticker_batch", "market_trades", "heartbeats", "candles", "status")


@dataclass(slots=True)
class Out:
    """One frame of the stream: its model time, the subscription it belongs to, its product."""

    time_ns: int
    channel: str  # the subscription channel name: level2, ticker, market_trades, heartbeats, ...
    product: str  # "" for frames that are not per product (heartbeats, status)
    frame: Frame

    def wanted(self, subs: dict[str, list[str]]) -> bool:
        """Whether a client with subscriptions ``subs`` receives this frame."""
        products = subs.get(self.channel)
        return products is not None and (not self.product or self.product in products)


class ModelStream:
    """The seeded market model rendered on a simulated clock that starts at ``start_ns``."""

    def __init__(self, products: list[str], *, seed: int, depth: int, rate: float, signal: float,
                 start_ns: int, oracle: OracleTracker | None = None) -> None:
        if not rate > 0:
            raise ValueError(f"a simulated clock needs rate > 0, got {rate}")
        self.products = list(products)
        self.t0 = start_ns
        self.rate = rate
        self.model = MarketModel(self.products, seed, depth, now_ns=start_ns, signal=signal)
        self.render = Renderer(self.model)
        self.clock = random.Random(f"{seed}:clock")
        self.now = start_ns  # the model time of the last frame made
        self.next_step = start_ns + SETTLE_NS
        self.next_hb = start_ns + NS_PER_S
        self.next_periodic = start_ns + PERIODIC_NS
        self.oracle = oracle
        if oracle is not None:
            for p, pm in self.model.products.items():
                bb, bq, ba, aq = pm.book.top()
                oracle.update(p, start_ns, bb or 0, bq, ba or 0, aq)

    def _tick(self, at_ns: int | None = None) -> int:
        """The next frame time: ``at_ns`` or later, always after the previous frame."""
        self.now = max(self.now + FRAME_GAP_NS, at_ns if at_ns is not None else 0)
        return self.now

    # -- subscription answers ---------------------------------------------------------------------
    def answer(self, channel: str, products: list[str], pad_bytes: int = 0) -> list[Out]:
        """The snapshots a new subscription to ``channel`` for ``products`` gets (no ack)."""
        r = self.render
        out: list[Out] = []
        for p in products if channel != "status" else []:
            t = self._tick()
            if channel == "level2":
                fr = r.l2_snapshot(p, t, pad_bytes, at_ns=t)
            elif channel in ("ticker", "ticker_batch"):
                fr = r.ticker(p, "snapshot", channel, at_ns=t)
            elif channel == "market_trades":
                fr = r.trades_snapshot(p, at_ns=t)
            elif channel == "candles":
                fr = r.candles(p, "snapshot", t, at_ns=t)
            else:
                continue
            out.append(Out(t, channel, p, fr))
        if channel == "status":
            t = self._tick()
            out.append(Out(t, channel, "", r.status(products, at_ns=t)))
        return out

    def ack(self, subs: dict[str, list[str]]) -> Out:
        """The ``subscriptions`` frame listing every current subscription."""
        t = self._tick()
        return Out(t, "", "", ack_frame(subs, t))

    # -- the market ---------------------------------------------------------------------------------
    def peek_ns(self) -> int:
        """About when the next batch is due (its first frame may come a microsecond later)."""
        return min(self.next_hb, self.next_periodic, self.next_step)

    def next_batch(self) -> list[Out]:
        """The next scheduled frames: one heartbeat, the periodic candles/ticker_batch updates, or one
        market step, for every channel and product (the caller filters by subscription)."""
        due = self.peek_ns()
        if due == self.next_hb:
            self.next_hb += NS_PER_S
            t = self._tick(due)
            up = (due - self.t0) / NS_PER_S
            events = f'[{{"current_time":"{go_time(t, up)}","heartbeat_counter":{int(up)}}}]'
            return [Out(t, "heartbeats", "", data_frame("heartbeats", ts_now(t), events))]
        if due == self.next_periodic:
            self.next_periodic += PERIODIC_NS
            out = []
            for p in self.products:
                t = self._tick(due)
                out.append(Out(t, "candles", p, self.render.candles(p, "update", t, at_ns=t)))
            for p in self.products:
                t = self._tick(due)
                out.append(Out(t, "ticker_batch", p, self.render.ticker(p, "update", "ticker_batch", at_ns=t)))
            return out
        return self._step(due)

    def _step(self, due: int) -> list[Out]:
        start = max(due, self.now + FRAME_GAP_NS)
        events = self.model.step(start)
        out = [self._render(ev) for ev in events]
        wait = int(self.clock.expovariate(1.0) * len(events) / self.rate * NS_PER_S)
        self.next_step = start + max(MIN_STEP_NS, wait)
        return out

    def _render(self, ev: ModelEvent) -> Out:
        t = self._tick()
        r = self.render
        if ev.kind == "l2":
            if self.oracle is not None:
                bb, bq, ba, aq = self.model.products[ev.product].book.top()
                self.oracle.update(ev.product, t, bb or 0, bq, ba or 0, aq)
            return Out(t, "level2", ev.product, r.l2_update(ev, at_ns=t))
        if ev.kind == "ticker":
            return Out(t, "ticker", ev.product, r.ticker(ev.product, "update", at_ns=t))
        return Out(t, "market_trades", ev.product, r.trade_update(ev, at_ns=t))
