"""The market model: a seeded order book per product that touch moves, order churn and trades mutate.

Prices are integer ticks (tick = ``10**-price_decimals``), sizes integer units of ``10**-8``, so
books are exact and formatting is integer arithmetic.  :class:`MarketModel` produces
:class:`ModelEvent` s; :class:`Renderer` turns them into Coinbase frames for one connection's
subscriptions at the moment they happen, so a ticker's best bid/ask always equals the book that the
level2 frames sent before it describe.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import time
from dataclasses import dataclass, field

from mktpred.coinbase import format_decimal
from mktpred.simulate.frames import Frame, data_frame, scaled, ts_now, ts_us

SIZE_DECIMALS = 8
SIZE_UNIT = 10**SIZE_DECIMALS

#: product -> (start price, price decimals, typical size in base units)
PRESETS: dict[str, tuple[float, int, float]] = {
    "BTC-USD": (65000.0, 2, 0.05),
    "ETH-USD": (1900.0, 2, 0.8),
    "SOL-USD": (150.0, 2, 8.0),
}
DEFAULT_PRESET = (100.0, 2, 10.0)
BID, ASK = 0, 1
SIDE_NAME = ("bid", "offer")
TRADE_HISTORY = 100


@dataclass
class Trade:
    trade_id: int
    price: int
    size: int
    time_ns: int
    maker_side: int  # BID: "BUY" (a resting bid was hit), ASK: "SELL"


class Book:
    """One product's order book: price ticks -> size units, with sorted price lists."""

    __slots__ = ("ask_px", "asks", "bid_px", "bids")

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.bid_px: list[int] = []  # ascending; best bid last
        self.ask_px: list[int] = []  # ascending; best ask first

    def set(self, side: int, px: int, size: int) -> None:
        levels, prices = (self.bids, self.bid_px) if side == BID else (self.asks, self.ask_px)
        if size <= 0:
            if px in levels:
                del levels[px]
                del prices[bisect.bisect_left(prices, px)]
        else:
            if px not in levels:
                bisect.insort(prices, px)
            levels[px] = size

    def best_bid(self) -> int | None:
        return self.bid_px[-1] if self.bid_px else None

    def best_ask(self) -> int | None:
        return self.ask_px[0] if self.ask_px else None

    def top(self) -> tuple[int | None, int, int | None, int]:
        bb, ba = self.best_bid(), self.best_ask()
        return bb, self.bids.get(bb, 0) if bb is not None else 0, ba, self.asks.get(ba, 0) if ba is not None else 0


@dataclass
class ModelEvent:
    kind: str  # "l2" | "ticker" | "trade"
    product: str
    time_ns: int
    changes: list[tuple[int, int, int]] = field(default_factory=list)  # (side, price, new size)
    trade: Trade | None = None


#: the top DENSE ticks of each side always hold a level, so every mid move is a whole number of
#: half ticks that does not depend on which side moves (see "The planted rule" in the README)
DENSE = 10
#: chance that a step moves the touch (the mid); the other steps are churn and partial trades
P_MOVE = 0.15
#: with a spread of two ticks or more, chance that a move narrows it (else it widens further)
P_TIGHTEN = 0.75
#: chance that a widening move is an aggressive trade taking the whole touch level (else a cancel)
P_TAKE = 0.7
#: chance that a non-moving step is a partial trade at the touch
P_PARTIAL = 0.08
#: the planted rule's slope per unit of signal: beta = SIGNAL_SLOPE * signal
SIGNAL_SLOPE = 4.0


def p_up(beta: float, bid_size: int, ask_size: int) -> float:
    """The planted rule: the chance that the next mid move (and aggressive trade) goes up, given the
    touch sizes: ``1 / (1 + exp(-beta * imb_1))`` with ``imb_1 = (qb - qa) / (qb + qa)``."""
    if beta == 0.0:
        return 0.5
    total = bid_size + ask_size
    imb = (bid_size - ask_size) / total if total else 0.0
    return 1.0 / (1.0 + math.exp(-beta * imb))


class ProductModel:
    """Book, trade history and 24 h statistics of one product, and the rule that moves its mid.

    Every step either moves the touch (probability :data:`P_MOVE`) or does not.  A move's direction
    is a coin with ``P(up) = p_up(beta, qb, qa)``; its kind and size never depend on the
    direction, and the top :data:`DENSE` ticks of each side are always occupied, so with
    ``signal = 0`` every future mid move is a fair coin independent of everything observable.
    """

    def __init__(self, product: str, seed: int, depth: int, now_ns: int, signal: float = 0.0) -> None:
        start, self.price_decimals, typical = PRESETS.get(product, DEFAULT_PRESET)
        self.product = product
        self.rng = random.Random(f"{seed}:{product}")
        self.depth = max(DENSE, depth)
        self.beta = SIGNAL_SLOPE * signal
        self.tick_per_unit = 10**self.price_decimals
        self.size_mu = math.log(typical * SIZE_UNIT)
        start_ticks = int(start * self.tick_per_unit)
        self.book = Book()
        self._build_book(start_ticks)
        rng = self.rng
        self.open_24h = start_ticks * (1 + rng.uniform(-0.01, 0.01))
        self.low_24h = int(min(self.open_24h, start_ticks) * (1 - rng.uniform(0.001, 0.01)))
        self.high_24h = int(max(self.open_24h, start_ticks) * (1 + rng.uniform(0.001, 0.01)))
        self.low_52w = int(self.low_24h * rng.uniform(0.5, 0.9))
        self.high_52w = int(self.high_24h * rng.uniform(1.1, 2.0))
        self.volume_24h = int(rng.uniform(1000, 5000) * math.exp(self.size_mu) * 200)
        self.next_trade_id = rng.randint(10**8, 10**9)
        self.trades: list[Trade] = []
        t = now_ns - TRADE_HISTORY * 700_000_000
        for _ in range(TRADE_HISTORY):
            t += rng.randint(1_000_000, 1_400_000_000)
            side = rng.randint(0, 1)
            px = start_ticks if side == BID else start_ticks + 1
            self.trades.append(Trade(self._trade_id(), px, self.rand_size(), min(t, now_ns), side))
        self.last_price = self.trades[-1].price
        self.candle_start = now_ns // 1_000_000_000 // 300 * 300
        self._px_text: dict[int, str] = {}

    def px(self, ticks: int) -> str:
        """A price as a decimal string (memoised: the same levels come back again and again)."""
        text = self._px_text.get(ticks)
        if text is None:
            if len(self._px_text) > 200_000:
                self._px_text.clear()
            text = self._px_text[ticks] = scaled(ticks, self.price_decimals)
        return text

    def _trade_id(self) -> int:
        self.next_trade_id += 1
        return self.next_trade_id

    def rand_size(self) -> int:
        """A heavy-tailed order size (log-normal), trimmed to 2-8 decimals as real orders are."""
        rng = self.rng
        units = int(rng.lognormvariate(self.size_mu, 1.6))
        keep = rng.choice((2, 3, 4, 5, 6, 8, 8, 8))
        step = 10 ** (SIZE_DECIMALS - keep)
        return max(step, units - units % step)

    def _build_book(self, mid: int) -> None:
        rng = self.rng
        for side, sign in ((BID, -1), (ASK, 1)):
            px = mid if side == BID else mid + 1
            for i in range(self.depth):
                self.book.set(side, px, self.rand_size())
                gap = 1 if i < DENSE else 1 + int(rng.expovariate(1.0 / (0.5 + 3.0 * i / self.depth)))
                px += sign * gap
                if px <= 0:
                    break

    def up_probability(self) -> float:
        """``P(up)`` of the next move under the planted rule, from the book now."""
        _, bq, _, aq = self.book.top()
        return p_up(self.beta, bq, aq)

    # -- one step of the market --------------------------------------------------------------------
    def step(self, now_ns: int) -> list[ModelEvent]:
        """Advance the market one step: a move of the touch, a partial trade or some order churn."""
        rng, book = self.rng, self.book
        bb, ba = book.best_bid(), book.best_ask()
        assert bb is not None and ba is not None
        if rng.random() < P_MOVE:
            up = rng.random() < self.up_probability()
            if ba - bb >= 2 and rng.random() < P_TIGHTEN:
                return self._tighten(up, bb, ba, now_ns)
            if rng.random() < P_TAKE:
                return self._take(ASK if up else BID, now_ns)
            return self._pull(ASK if up else BID, 1 + min(3, int(rng.expovariate(1.5))), now_ns)
        if rng.random() < P_PARTIAL:
            buy = rng.random() < self.up_probability()
            return self._partial(ASK if buy else BID, now_ns)
        return self._churn(now_ns)

    def _record_trade(self, maker_side: int, px: int, size: int, now_ns: int) -> ModelEvent:
        trade = Trade(self._trade_id(), px, size, now_ns, maker_side)
        self.trades.append(trade)
        if len(self.trades) > TRADE_HISTORY:
            del self.trades[0]
        self.last_price = px
        self.volume_24h += size
        self.low_24h = min(self.low_24h, px)
        self.high_24h = max(self.high_24h, px)
        return ModelEvent("trade", self.product, now_ns, trade=trade)

    def _refill(self, side: int, changes: list[tuple[int, int, int]]) -> None:
        """Put a level on every one of the top :data:`DENSE` ticks of ``side`` that has none."""
        book = self.book
        levels = book.bids if side == BID else book.asks
        touch = book.best_bid() if side == BID else book.best_ask()
        assert touch is not None
        sign = -1 if side == BID else 1
        for d in range(DENSE):
            px = touch + sign * d
            if px > 0 and px not in levels:
                size = self.rand_size()
                book.set(side, px, size)
                changes.append((side, px, size))

    def _take(self, maker_side: int, now_ns: int) -> list[ModelEvent]:
        """An aggressive order takes the whole touch level of ``maker_side`` (the mid moves)."""
        book = self.book
        levels = book.asks if maker_side == ASK else book.bids
        px = book.best_ask() if maker_side == ASK else book.best_bid()
        assert px is not None
        trade = self._record_trade(maker_side, px, levels[px], now_ns)
        book.set(maker_side, px, 0)
        changes = [(maker_side, px, 0)]
        self._refill(maker_side, changes)
        return [trade, ModelEvent("l2", self.product, now_ns, changes), ModelEvent("ticker", self.product, now_ns)]

    def _pull(self, side: int, k: int, now_ns: int) -> list[ModelEvent]:
        """The top ``k`` levels of ``side`` are cancelled (the spread widens, the mid moves)."""
        book = self.book
        prices = book.bid_px[-k:] if side == BID else book.ask_px[:k]
        changes = [(side, px, 0) for px in prices]
        for px in prices:
            book.set(side, px, 0)
        self._refill(side, changes)
        return [ModelEvent("l2", self.product, now_ns, changes), ModelEvent("ticker", self.product, now_ns)]

    def _tighten(self, up: bool, bb: int, ba: int, now_ns: int) -> list[ModelEvent]:
        """A new order one tick inside the spread: a bid above the best bid (up) or an ask below
        the best ask (down)."""
        side, px = (BID, bb + 1) if up else (ASK, ba - 1)
        size = self.rand_size()
        self.book.set(side, px, size)
        changes = [(side, px, size)]
        self._trim(side, changes)
        return [ModelEvent("l2", self.product, now_ns, changes), ModelEvent("ticker", self.product, now_ns)]

    def _partial(self, maker_side: int, now_ns: int) -> list[ModelEvent]:
        """An aggressive order smaller than the touch queue: a trade that leaves the level in place."""
        book = self.book
        levels = book.asks if maker_side == ASK else book.bids
        px = book.best_ask() if maker_side == ASK else book.best_bid()
        assert px is not None
        queue = levels[px]
        size = min(self.rand_size(), queue // 2)
        if size <= 0:
            return self._churn(now_ns)
        trade = self._record_trade(maker_side, px, size, now_ns)
        book.set(maker_side, px, queue - size)
        return [trade, ModelEvent("l2", self.product, now_ns, [(maker_side, px, queue - size)]),
                ModelEvent("ticker", self.product, now_ns)]

    def _trim(self, side: int, changes: list[tuple[int, int, int]]) -> None:
        """Keep the book near its configured depth: drop the deepest level of a side that is over."""
        book = self.book
        levels = book.bids if side == BID else book.asks
        if len(levels) > self.depth * 1.05:
            deep = book.bid_px[0] if side == BID else book.ask_px[-1]
            book.set(side, deep, 0)
            changes.append((side, deep, 0))

    def _churn(self, now_ns: int) -> list[ModelEvent]:
        """New orders and cancels that never empty the touch (so the mid stays where it is)."""
        rng, book = self.rng, self.book
        before = book.top()
        changes: list[tuple[int, int, int]] = []
        for _ in range(rng.randint(1, 3)):
            side = BID if rng.random() < 0.5 else ASK
            d = int(rng.expovariate(0.15))
            if side == BID:
                touch = book.best_bid()
                assert touch is not None
                px = touch - d
                levels = book.bids
            else:
                touch = book.best_ask()
                assert touch is not None
                px = touch + d
                levels = book.asks
            if px <= 0:
                continue
            size = levels.get(px, 0)
            if size and rng.random() < 0.45:  # a cancel
                if d < DENSE:
                    new = size - min(size - 1, self.rand_size())  # shrinks, never empties a dense tick
                    if new == size:
                        continue
                else:
                    new = 0
            else:
                new = size + self.rand_size() if size and rng.random() < 0.5 else self.rand_size()
            book.set(side, px, new)
            changes.append((side, px, new))
            self._trim(side, changes)
        if not changes:
            side = BID if rng.random() < 0.5 else ASK
            touch_px = book.best_bid() if side == BID else book.best_ask()
            assert touch_px is not None
            new = self.rand_size()
            book.set(side, touch_px, new)
            changes.append((side, touch_px, new))
        events = [ModelEvent("l2", self.product, now_ns, changes)]
        if book.top() != before:
            events.append(ModelEvent("ticker", self.product, now_ns))
        return events


class MarketModel:
    """All products' models, stepped in a seeded order."""

    def __init__(self, products: list[str], seed: int, depth: int, now_ns: int | None = None,
                 signal: float = 0.0) -> None:
        now = time.time_ns() if now_ns is None else now_ns
        if signal < 0 or not math.isfinite(signal):
            raise ValueError(f"signal must be a number >= 0, got {signal}")
        self.signal = signal
        self.products = {p: ProductModel(p, seed, depth, now, signal) for p in products}
        self._order = list(self.products.values())
        self.rng = random.Random(seed)

    def step(self, now_ns: int) -> list[ModelEvent]:
        return self.rng.choice(self._order).step(now_ns)


class Renderer:
    """Coinbase frame text for model state and events (one instance per connection).

    ``at_ns`` sets a frame's ``timestamp`` (the simulated exchange clock); by default it is now."""

    def __init__(self, model: MarketModel) -> None:
        self.model = model

    # -- level2 ------------------------------------------------------------------------------------
    @staticmethod
    def _level(side: int, event_time: str, px: str, qty: str) -> str:
        return (f'{{"side":"{SIDE_NAME[side]}","event_time":"{event_time}",'
                f'"price_level":"{px}","new_quantity":"{qty}"}}')

    def l2_snapshot(self, product: str, now_ns: int, pad_bytes: int = 0, at_ns: int | None = None) -> Frame:
        """The whole book in one frame; ``pad_bytes`` adds deep levels (to the model too) until the
        frame is at least that long (the ``oversized`` fault)."""
        pm = self.model.products[product]
        book = pm.book
        et = ts_us(now_ns)
        dec = pm.price_decimals
        lv = self._level

        def levels() -> list[str]:
            rows = [lv(BID, et, scaled(p, dec), scaled(book.bids[p], SIZE_DECIMALS)) for p in reversed(book.bid_px)]
            rows += [lv(ASK, et, scaled(p, dec), scaled(book.asks[p], SIZE_DECIMALS)) for p in book.ask_px]
            return rows

        rows = levels()
        # Pad with deep levels until the encoded rows really reach pad_bytes (level lengths vary with
        # the trimmed digits, so measure rather than estimate).
        while pad_bytes and sum(len(r) + 1 for r in rows) < pad_bytes:
            shortest = min((len(r) for r in rows), default=80)
            extra = (pad_bytes - sum(len(r) + 1 for r in rows)) // shortest + 100
            lo = book.bid_px[0] if book.bid_px else 2
            for i in range(extra):
                if i % 2 == 0 and lo > 1:
                    lo -= 1
                    book.set(BID, lo, pm.rand_size())
                else:
                    hi = book.ask_px[-1] + 1
                    book.set(ASK, hi, pm.rand_size())
            rows = levels()
        events = f'[{{"type":"snapshot","product_id":"{product}","updates":[{",".join(rows)}]}}]'
        return data_frame("l2_data", ts_now(at_ns), events)

    def l2_update(self, ev: ModelEvent, at_ns: int | None = None) -> Frame:
        px = self.model.products[ev.product].px
        et = ts_us(ev.time_ns)
        rows = ",".join(self._level(s, et, px(p), scaled(q, SIZE_DECIMALS)) for s, p, q in ev.changes)
        return data_frame("l2_data", ts_now(at_ns),
                          f'[{{"type":"update","product_id":"{ev.product}","updates":[{rows}]}}]')

    # -- ticker ------------------------------------------------------------------------------------
    def _ticker_obj(self, product: str) -> str:
        pm = self.model.products[product]
        px = pm.px
        bb, bq, ba, aq = pm.book.top()
        chg = (pm.last_price - pm.open_24h) / pm.open_24h * 100
        s = scaled
        return (f'{{"type":"ticker","product_id":"{product}","price":"{px(pm.last_price)}",'
                f'"volume_24_h":"{s(pm.volume_24h, SIZE_DECIMALS)}","low_24_h":"{px(pm.low_24h)}",'
                f'"high_24_h":"{px(pm.high_24h)}","low_52_w":"{px(pm.low_52w)}",'
                f'"high_52_w":"{px(pm.high_52w)}","price_percent_chg_24_h":"{format_decimal(f"{chg:.14f}")}",'
                f'"best_bid":"{px(bb or 0)}","best_ask":"{px(ba or 0)}",'
                f'"best_bid_quantity":"{s(bq, SIZE_DECIMALS)}","best_ask_quantity":"{s(aq, SIZE_DECIMALS)}"}}')

    def ticker(self, product: str, kind: str, channel: str = "ticker", at_ns: int | None = None) -> Frame:
        return data_frame(channel, ts_now(at_ns), f'[{{"type":"{kind}","tickers":[{self._ticker_obj(product)}]}}]')

    # -- market_trades -----------------------------------------------------------------------------
    def _trade_obj(self, product: str, t: Trade) -> str:
        dec = self.model.products[product].price_decimals
        return (f'{{"product_id":"{product}","trade_id":"{t.trade_id}","price":"{scaled(t.price, dec)}",'
                f'"size":"{scaled(t.size, SIZE_DECIMALS)}","time":"{ts_us(t.time_ns)}",'
                f'"side":"{"BUY" if t.maker_side == BID else "SELL"}"}}')

    def trades_snapshot(self, product: str, at_ns: int | None = None) -> Frame:
        pm = self.model.products[product]
        rows = ",".join(self._trade_obj(product, t) for t in reversed(pm.trades))
        return data_frame("market_trades", ts_now(at_ns), f'[{{"type":"snapshot","trades":[{rows}]}}]')

    def trade_update(self, ev: ModelEvent, at_ns: int | None = None) -> Frame:
        assert ev.trade is not None
        return data_frame("market_trades", ts_now(at_ns),
                          f'[{{"type":"update","trades":[{self._trade_obj(ev.product, ev.trade)}]}}]')

    # -- candles, status, heartbeats, acks ---------------------------------------------------------
    def candles(self, product: str, kind: str, now_ns: int, at_ns: int | None = None) -> Frame:
        pm = self.model.products[product]
        dec = pm.price_decimals
        start = now_ns // 1_000_000_000 // 300 * 300
        recent = [t for t in pm.trades if t.time_ns // 1_000_000_000 >= start] or pm.trades[-1:]
        prices = [t.price for t in recent]
        vol = sum(t.size for t in recent)
        candle = (f'{{"start":"{start}","high":"{scaled(max(prices), dec)}","low":"{scaled(min(prices), dec)}",'
                  f'"open":"{scaled(prices[0], dec)}","close":"{scaled(prices[-1], dec)}",'
                  f'"volume":"{scaled(vol, SIZE_DECIMALS)}","product_id":"{product}"}}')
        return data_frame("candles", ts_now(at_ns), f'[{{"type":"{kind}","candles":[{candle}]}}]')

    def status(self, products: list[str], at_ns: int | None = None) -> Frame:
        rows = []
        for p in products:
            pm = self.model.products[p]
            base, _, quote = p.partition("-")
            rows.append({"product_type": "SPOT", "id": p, "base_currency": base, "quote_currency": quote,
                         "base_increment": "0.00000001", "quote_increment": scaled(1, pm.price_decimals),
                         "display_name": p, "status": "online", "status_message": "",
                         "min_market_funds": "1"})
        events = json.dumps([{"type": "snapshot", "products": rows}], separators=(",", ":"))
        return data_frame("status", ts_now(at_ns), events)
