"""Frames -> features -> predictions, with the emission rule (DESIGN.md "Predictions").

Every recorded line goes through :meth:`Pipeline.on_line`; the run loop also calls
:meth:`Pipeline.on_tick` when :meth:`Pipeline.next_deadline` passes.  Grid point ``g`` is published
for every product with a book

- once the first frame with exchange ``time > g`` arrives (any channel, any product): the rows are
  closed *before* that frame is applied, so they hold exactly the frames with ``time <= g``; or
- once the exchange clock estimated from the last frame (its ``time`` plus the local time elapsed
  since it arrived) passes ``g + grace`` (50 ms) -- never the bare local clock, so replaying old
  frames at any speed gives the same predictions.

The engine is fed exactly as :mod:`mktpred.features.batch` feeds it from the store (level2 and
trades per product in arrival = ``seq`` order; a sequence gap on a connection invalidates a
product's book at its next non-snapshot level2 frame), so the live rows equal the ``features``
table's.  ``latency_us`` is the local time from the trigger (the triggering frame's arrival, or the
moment the estimated clock passed ``g + grace``) to publication.  Times passed in (``arrival_ns``,
``now_ns``, the ``clock``) are one local monotonic clock in ns, injected for tests.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mktpred.coinbase.timestamps import format_iso_ns
from mktpred.features.engine import FeatureEngine
from mktpred.serve.decode import as_arrays, decode_record
from mktpred.serve.model import CROSS_FEATURES, ServedModel

GRACE_NS = 50_000_000
#: how many recent latencies and model-call times the percentiles are taken over
WINDOW = 100_000

Message = dict[str, Any]
Publish = Callable[[list[Message]], None]


@dataclass
class PipelineStats:
    """Counters the status panel and the ``--json`` summary read (written by the pipeline thread only)."""

    lines: int = 0
    frames: int = 0  #: records with a frame timestamp
    undecodable: int = 0  #: frames ``convert`` would quarantine (not fed)
    gaps: int = 0  #: sequence jumps seen
    late_frames: int = 0  #: product frames older than a grid point already published for it
    grid_points: int = 0
    predictions: int = 0
    invalid: int = 0  #: predictions with ``valid = false``
    frame_triggers: int = 0
    timer_triggers: int = 0
    reloads: int = 0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1, nearest rank) or ``None`` when empty."""
    if not values:
        return None
    s = sorted(values)
    return float(s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))])


class Pipeline:
    """The online feature engines of ``products`` and the model; see the module docstring."""

    def __init__(self, served: ServedModel, products: Sequence[str], publish: Publish, *,
                 grace_ns: int = GRACE_NS, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.served = served
        self.spec = served.spec
        self.step = served.spec.interval_ns
        self.products = list(dict.fromkeys(products))
        self.engines = {p: FeatureEngine(p, self.spec) for p in self.products}
        self.publish = publish
        self.grace_ns = grace_ns
        self.clock = clock
        self.stats = PipelineStats()
        self.latencies_us: deque[int] = deque(maxlen=WINDOW)
        self.model_call_us: deque[float] = deque(maxlen=WINDOW)
        self.versions: list[str] = [served.model.version]
        self.last_time: int | None = None  #: exchange time of the last frame
        self.last_arrival: int = 0  #: its local arrival
        self._last_seq: dict[str, int] = {}
        self._gap_pending: dict[tuple[str, str], bool] = {}  #: (product, conn) -> a seq went missing since its last l2
        self._last_l2_conn: dict[str, set[str]] = {p: set() for p in self.products}
        self._cross: dict[int, tuple[Any, Any]] = {}
        self._pending: ServedModel | None = None
        self._lock = threading.Lock()
        self._plan(served)

    # -- model ------------------------------------------------------------------------------------
    def _plan(self, served: ServedModel) -> None:
        m = served.model
        self._features = list(m.features)
        self._cross_idx = [(j, CROSS_FEATURES.index(f)) for j, f in enumerate(self._features) if f in CROSS_FEATURES]
        self._head = {"model": m.name, "version": m.version, "horizon_s": float(m.horizon_s)}

    def switch_model(self, served: ServedModel) -> None:
        """Use ``served`` from the next grid point on (thread-safe; the spec must be the same)."""
        if served.spec != self.spec:
            raise ValueError("a hot-reloaded model must use the same feature spec")
        with self._lock:
            self._pending = served

    # -- input ------------------------------------------------------------------------------------
    def on_line(self, line: bytes, arrival_ns: int) -> None:
        """One recorded line (frame, event or raw record), in recording order."""
        st = self.stats
        st.lines += 1
        try:
            rec = decode_record(line)
        except (ValueError, KeyError, TypeError, AttributeError):
            st.undecodable += 1
            return
        if rec is None:
            return
        conn = rec.conn
        if rec.seq is not None:
            last = self._last_seq.get(conn)
            if last is not None and rec.seq > last + 1:
                st.gaps += 1
                for p in self.products:
                    self._gap_pending[(p, conn)] = True
            if last is None or rec.seq > last:
                self._last_seq[conn] = rec.seq
        t = rec.time
        if t is None:
            return
        st.frames += 1
        if self.last_time is None or t >= self.last_time:
            self.last_time = t
            self.last_arrival = arrival_ns
        self._emit(t, lambda g: arrival_ns, "frame")  # every grid point g < t
        seq = -1 if rec.seq is None else rec.seq
        for rows in rec.l2:
            eng = self.engines.get(rows.product)
            if eng is None:
                continue
            self._late(eng, t)
            key = (rows.product, conn)
            seen = self._last_l2_conn[rows.product]
            if conn in seen and not rows.snapshot and self._gap_pending.get(key):
                self._publish_rows(eng.on_gap(conn, t), lambda g: arrival_ns)
            seen.add(conn)
            self._gap_pending[key] = False
            a, price, size = as_arrays(rows, "l2")
            self._publish_rows(eng.on_l2(conn, seq, t, rows.snapshot, a, price, size), lambda g: arrival_ns)
        for rows in rec.trades:
            eng = self.engines.get(rows.product)
            if eng is None:
                continue
            self._late(eng, t)
            a, price, size = as_arrays(rows, "trades")
            self._publish_rows(eng.on_trades(conn, seq, t, rows.snapshot, price, size, a), lambda g: arrival_ns)

    def _late(self, eng: FeatureEngine, t: int) -> None:
        ng = eng.next_grid
        if ng is not None and t <= ng - self.step:
            self.stats.late_frames += 1

    def next_deadline(self) -> int | None:
        """Local time at which the estimated exchange clock passes the next grid point + grace."""
        if self.last_time is None:
            return None
        grids = [e.next_grid for e in self.engines.values() if e.next_grid is not None and e.book is not None]
        if not grids:
            return None
        return self.last_arrival + (min(grids) + self.grace_ns - self.last_time)

    def on_tick(self, now_ns: int) -> None:
        """Publish every grid point the estimated exchange clock has passed by ``grace``."""
        if self.last_time is None:
            return
        limit = self.last_time + (now_ns - self.last_arrival) - self.grace_ns  # g <= limit is due
        base, t0 = self.last_arrival, self.last_time
        self._emit(limit + 1, lambda g: base + (g + self.grace_ns - t0), "timer")

    # -- output -----------------------------------------------------------------------------------
    def _emit(self, before: int, trigger: Callable[[int], int], kind: str) -> None:
        rows: list[dict[str, Any]] = []
        for eng in self.engines.values():
            ng = eng.next_grid
            if ng is not None and ng < before:
                rows += eng.advance(before - 1)
        if rows:
            if kind == "frame":
                self.stats.frame_triggers += 1
            else:
                self.stats.timer_triggers += 1
            self._publish_rows(rows, trigger)

    def _publish_rows(self, rows: list[dict[str, Any]], trigger: Callable[[int], int]) -> None:
        if not rows:
            return
        by_g: dict[int, list[dict[str, Any]]] = {}
        for r in rows:
            by_g.setdefault(r["time"], []).append(r)
        for g in sorted(by_g):
            group = by_g[g]
            group.sort(key=lambda r: self.products.index(r["product_id"]))
            self._publish_grid(g, group, trigger(g))

    def _publish_grid(self, g: int, rows: list[dict[str, Any]], trigger_ns: int) -> None:
        if self._pending is not None:
            with self._lock:
                served, self._pending = self._pending, None
            if served is not None:
                self.served = served
                self._plan(served)
                self.versions.append(served.model.version)
                self.stats.reloads += 1
        cross = self.spec.cross
        for r in rows:  # the cross product's ret_1/ofi_1 one interval back (as features/batch.add_cross)
            if r["product_id"] == cross:
                self._cross[g] = (r["ret_1"], r["ofi_1"])
        X = np.empty((len(rows), len(self._features)), np.float64)
        for i, r in enumerate(rows):
            prev = None if r["product_id"] == cross else self._cross.get(g - self.step)
            for j, f in enumerate(self._features):
                v = r.get(f)
                X[i, j] = math.nan if v is None else v
            for j, k in self._cross_idx:
                v = None if prev is None else prev[k]
                X[i, j] = math.nan if v is None else v
        if cross is not None:
            for old in [k for k in self._cross if k < g - self.step]:
                del self._cross[old]
        model = self.served.model
        c0 = time.perf_counter_ns()
        out = model.predict(X)
        self.model_call_us.append((time.perf_counter_ns() - c0) / 1e3 / len(rows))
        outputs = model.output_columns
        iso = format_iso_ns(g)
        msgs: list[Message] = []
        st = self.stats
        for i, r in enumerate(rows):
            valid = bool(r["valid"])
            msg: Message = {"time": iso, "time_ns": g, "product_id": r["product_id"], **self._head, "valid": valid}
            for j, c in enumerate(outputs):
                v = float(out[i, j])
                msg[c] = v if math.isfinite(v) else None
            msgs.append(msg)
            st.predictions += 1
            if not valid:
                st.invalid += 1
        st.grid_points += 1
        latency = max(0, (self.clock() - trigger_ns) // 1000)
        for msg in msgs:
            msg["latency_us"] = latency
        self.latencies_us.append(latency)
        self.publish(msgs)
