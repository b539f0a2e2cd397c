"""A seeded generator of realistic Advanced Trade raw records (tests and benchmarks).

The stream looks like a real capture (``../shared/samples``): subscription acks, then level2
snapshots of tens of thousands of levels, ticker and trade snapshots, then a mix of small level2
updates, tickers, trades, candles and heartbeats on one sequence counter per connection.  Frame
timestamps carry 9 fractional digits with trailing zeros trimmed, ``event_time`` and trade
``time`` 6, numbers are decimal strings -- the same quirks as the real feed.  ``recv_ns`` trails
the frame time by about 20-25 ms and never decreases within a connection (one socket is read in order).
The same seed gives the same bytes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from mktpred.coinbase.protocol import format_decimal
from mktpred.coinbase.timestamps import format_rfc3339_ns

NS_PER_US = 1_000


@dataclass(frozen=True)
class SynthSpec:
    """What to generate."""

    seed: int = 1
    products: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    start_ns: int = 1_786_309_548_228_568_804  # 2026-08-09T21:05:48.228568804Z
    frame_interval_ns: int = 5_000_000  # ~200 frames/s on average
    snapshot_levels: int = 20_000  #: levels per side in a level2 snapshot
    resnapshot_every: int = 400_000  #: frames between reconnects (new snapshots); 0 = never
    wrapped: bool = True  #: mktpred raw records; False = bare Coinbase frames
    conn_prefix: str = "20260809T210548Z"
    events: bool = True  #: write the collector's open/subscribed event records


def _us_text(ns: int) -> str:
    """``event_time`` style: microseconds, trailing zeros trimmed."""
    return format_rfc3339_ns(ns - ns % NS_PER_US)


class _Market:
    def __init__(self, rng: random.Random, product: str) -> None:
        self.rng = rng
        self.product = product
        self.mid = 65_000.0 if product.startswith("BTC") else 1_900.0 + 10 * rng.random()
        self.trade_id = 1_068_572_000 + rng.randrange(1000)

    def qty(self) -> str:
        return format_decimal(round(self.rng.random() * self.rng.choice((0.01, 0.5, 3.0)), 8))

    def level(self, side: str, depth: int) -> str:
        off = depth * 0.01 + 0.01
        px = self.mid - off if side == "bid" else self.mid + off
        return format_decimal(round(px, 2))


class FrameGenerator:
    """Produces the lines of one connection; iterate :meth:`lines`."""

    def __init__(self, spec: SynthSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.markets = [_Market(self.rng, p) for p in spec.products]
        self.now = spec.start_ns
        self.conn_no = 0
        self.seq = 0
        self.frames = 0
        self.last_recv = 0  #: ``recv_ns`` of the connection's last frame

    # -- records ---------------------------------------------------------------------------------
    def _record(self, frame: dict[str, object]) -> bytes:
        self.frames += 1
        if not self.spec.wrapped:
            return orjson.dumps(frame)
        # a collector reads one socket in order: receive times never go back on a connection
        recv = max(self.last_recv, self.now + 20_000_000 + self.rng.randrange(5_000_000))
        self.last_recv = recv
        return (b'{"recv_ns":%d,"conn":"%s-%d","msg":' % (recv, self.spec.conn_prefix.encode(), self.conn_no)
                + orjson.dumps(frame) + b"}")

    def _event(self, name: str, **detail: object) -> bytes:
        rec = {"recv_ns": self.now, "conn": f"{self.spec.conn_prefix}-{self.conn_no}", "event": name, **detail}
        return orjson.dumps(rec)

    def _frame(self, channel: str, events: list[dict[str, object]]) -> dict[str, object]:
        frame = {"channel": channel, "timestamp": format_rfc3339_ns(self.now),
                 "sequence_num": self.seq, "events": events}
        self.seq += 1
        self.now += self.rng.randrange(1, 2 * self.spec.frame_interval_ns)
        return frame

    # -- channels --------------------------------------------------------------------------------
    def _l2_snapshot(self, m: _Market) -> dict[str, object]:
        et = _us_text(self.now - 50_000_000)
        n = self.spec.snapshot_levels
        ups = [{"side": "bid", "event_time": et, "price_level": m.level("bid", i), "new_quantity": m.qty()}
               for i in range(n)]
        ups += [{"side": "offer", "event_time": et, "price_level": m.level("offer", i), "new_quantity": m.qty()}
                for i in range(n)]
        return self._frame("l2_data", [{"type": "snapshot", "product_id": m.product, "updates": ups}])

    def _l2_update(self, m: _Market) -> dict[str, object]:
        rng = self.rng
        m.mid += rng.choice((-0.01, 0.0, 0.01))
        et = _us_text(self.now - rng.randrange(30_000_000, 90_000_000))
        ups = []
        for _ in range(rng.randint(1, 6)):
            side = rng.choice(("bid", "offer"))
            qty = "0" if rng.random() < 0.35 else m.qty()
            ups.append({"side": side, "event_time": et, "price_level": m.level(side, rng.randrange(200)),
                        "new_quantity": qty})
        return self._frame("l2_data", [{"type": "update", "product_id": m.product, "updates": ups}])

    def _ticker(self, m: _Market, kind: str) -> dict[str, object]:
        r = self.rng.random
        t = {"type": "ticker", "product_id": m.product, "price": format_decimal(round(m.mid, 2)),
             "volume_24_h": format_decimal(round(2867 + r(), 8)), "low_24_h": format_decimal(round(m.mid * 0.99, 2)),
             "high_24_h": format_decimal(round(m.mid * 1.01, 2)), "low_52_w": "57717.55", "high_52_w": "126296",
             "price_percent_chg_24_h": format_decimal(round(r() - 0.5, 14)),
             "best_bid": m.level("bid", 0), "best_ask": m.level("offer", 0),
             "best_bid_quantity": m.qty(), "best_ask_quantity": m.qty()}
        return self._frame("ticker", [{"type": kind, "tickers": [t]}])

    def _trades(self, m: _Market, n: int, kind: str) -> dict[str, object]:
        trades = []
        for _ in range(n):
            m.trade_id += 1
            trades.append({"product_id": m.product, "trade_id": str(m.trade_id),
                           "price": format_decimal(round(m.mid + self.rng.choice((-0.01, 0.01)), 2)),
                           "size": m.qty(), "time": _us_text(self.now - 60_000_000),
                           "side": self.rng.choice(("BUY", "SELL"))})
        return self._frame("market_trades", [{"type": kind, "trades": trades}])

    def _heartbeat(self) -> dict[str, object]:
        return self._frame("heartbeats", [{"current_time": "2026-08-09 21:05:48.854840045 +0000 UTC m=+41691.26",
                                           "heartbeat_counter": 41691 + self.frames // 200}])

    def _candle(self, m: _Market) -> dict[str, object]:
        c = {"start": str(self.now // 10**9 // 300 * 300), "high": m.level("offer", 3), "low": m.level("bid", 3),
             "open": m.level("bid", 0), "close": m.level("offer", 0), "volume": m.qty(), "product_id": m.product}
        return self._frame("candles", [{"type": "update", "candles": [c]}])

    def _connect(self) -> Iterator[bytes]:
        self.conn_no += 1
        self.seq = 0
        if self.spec.events and self.spec.wrapped:
            yield self._event("open", url="wss://advanced-trade-ws.coinbase.com")
        for ch in ("level2", "ticker", "market_trades", "heartbeats"):
            products = [m.product for m in self.markets]
            yield self._record(self._frame("subscriptions", [{"subscriptions": {ch: products}}]))
        if self.spec.events and self.spec.wrapped:
            yield self._event("subscribed", channels=["level2", "ticker", "market_trades", "heartbeats"])
        for m in self.markets:
            yield self._record(self._trades(m, 100, "snapshot"))
            yield self._record(self._ticker(m, "snapshot"))
            yield self._record(self._l2_snapshot(m))

    def lines(self) -> Iterator[bytes]:
        """Endless lines (without the newline)."""
        yield from self._connect()
        since = 0
        rng = self.rng
        while True:
            if self.spec.resnapshot_every and since >= self.spec.resnapshot_every:
                since = 0
                yield from self._connect()
            since += 1
            m = rng.choice(self.markets)
            x = rng.random()
            if x < 0.78:
                yield self._record(self._l2_update(m))
            elif x < 0.90:
                yield self._record(self._ticker(m, "update"))
            elif x < 0.96:
                yield self._record(self._trades(m, rng.randint(1, 3), "update"))
            elif x < 0.99:
                yield self._record(self._heartbeat())
            else:
                yield self._record(self._candle(m))


def generate_lines(spec: SynthSpec, *, n_lines: int | None = None, target_bytes: int | None = None) -> Iterator[bytes]:
    """Lines (without newline) until ``n_lines`` lines or ``target_bytes`` bytes were produced."""
    size = 0
    for i, line in enumerate(FrameGenerator(spec).lines()):
        if n_lines is not None and i >= n_lines:
            return
        if target_bytes is not None and size >= target_bytes:
            return
        size += len(line) + 1
        yield line


def write_segment(path: Path, spec: SynthSpec, *, n_lines: int | None = None,
                  target_bytes: int | None = None) -> int:
    """Write a raw segment (``.jsonl``, ``.jsonl.gz`` or ``.jsonl.zst``); returns the line count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf: list[bytes] = []
    n = 0
    with _open_write(path) as fh:
        for line in generate_lines(spec, n_lines=n_lines, target_bytes=target_bytes):
            buf.append(line)
            n += 1
            if len(buf) >= 4096:
                fh.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            fh.write(b"\n".join(buf) + b"\n")
    return n


def _open_write(path: Path) -> BinaryIO:
    name = path.name
    if name.endswith(".gz"):
        import gzip

        return gzip.open(path, "wb", compresslevel=1)  # type: ignore[return-value]
    if name.endswith(".zst"):
        import zstandard

        return zstandard.open(path, "wb")
    return open(path, "wb")


BENCH_STEM = "coinbase_20260809T210548Z"


def ensure_segment(out_dir: Path, gb: float, *, seed: int = 1, bare: bool = False,
                   snapshot_levels: int = 20_000) -> Path:
    """``out_dir/<BENCH_STEM>.jsonl`` of about ``gb`` GB, generated unless an identical one exists."""
    path = out_dir / f"{BENCH_STEM}.jsonl"
    stamp = out_dir / ".synth"
    key = f"gb={gb} seed={seed} bare={bare} levels={snapshot_levels}"
    if path.is_file() and stamp.is_file() and stamp.read_text() == key:
        return path
    spec = SynthSpec(seed=seed, wrapped=not bare, snapshot_levels=snapshot_levels)
    write_segment(path, spec, target_bytes=int(gb * 1e9))
    stamp.write_text(key)
    return path
