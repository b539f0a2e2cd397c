"""The emission rule, gaps, hot reload and the message format, on hand-written frames with an
injected clock (the model is ``ret_bps = mid``, so each message shows which frames it saw)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mktpred.serve.model import load_served
from mktpred.serve.pipeline import Pipeline
from tests.unit.serve_frames import MS, T0, S, heartbeat, l2, trades, write_model


class Clock:
    """A hand-set local clock (ns)."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def make(tmp_path: Path, products: tuple[str, ...] = ("BTC-USD",)) -> tuple[Pipeline, list[dict[str, Any]], Clock]:
    write_model(tmp_path / "m", "v0001")
    out: list[dict[str, Any]] = []
    clock = Clock()
    return Pipeline(load_served(tmp_path / "m"), products, out.extend, clock=clock), out, clock


def feed(p: Pipeline, clock: Clock, line: bytes, at: int) -> None:
    clock.now = at
    p.on_line(line, at)


BOOK = [("bid", 100.0, 1.0), ("offer", 102.0, 1.0)]


def test_frame_trigger_closes_the_grid_point_before_applying_the_frame(tmp_path: Path) -> None:
    """g = T0+1 s is published when the frame at 1.3 s arrives, with the book after the 0.5 s frame
    (mid 101.5, not 101.4), latency measured from that frame's arrival."""
    p, out, clock = make(tmp_path)
    feed(p, clock, l2(1, T0 + 200 * MS, BOOK, snapshot=True), 1_000)
    feed(p, clock, l2(2, T0 + 500 * MS, [("bid", 101.0, 1.0)]), 2_000)
    assert out == []
    clock.now = 3_000
    p.on_line(l2(3, T0 + 1300 * MS, [("offer", 101.8, 1.0)]), 3_000 - 250_000)  # arrived 250 µs ago
    assert len(out) == 1
    m = out[0]
    assert list(m) == ["time", "time_ns", "product_id", "model", "version", "horizon_s", "valid", "ret_bps",
                       "latency_us"]
    assert m["time"] == "2025-12-06T05:46:41.000000000Z" and m["time_ns"] == T0 + S
    assert (m["product_id"], m["model"], m["version"], m["horizon_s"]) == ("BTC-USD", "m", "v0001", 10.0)
    assert m["ret_bps"] == 101.5 and m["valid"] is False  # the first interval holds the snapshot
    assert m["latency_us"] == 250


def test_timer_trigger_uses_the_estimated_exchange_clock(tmp_path: Path) -> None:
    """With no further frame, g = T0+2 s is due once last frame time (1.3 s) + local time since it
    arrived passes 2.05 s: 750 ms after its arrival, not a nanosecond earlier."""
    p, out, clock = make(tmp_path)
    for seq, t, u, snap in ((1, 200, BOOK, True), (2, 500, [("bid", 101.0, 1.0)], False),
                            (3, 1300, [("offer", 101.8, 1.0)], False)):
        feed(p, clock, l2(seq, T0 + t * MS, u, snapshot=snap), 10 * S + t * MS)
    arrival = 10 * S + 1300 * MS
    assert len(out) == 1
    assert p.next_deadline() == arrival + 750 * MS
    clock.now = arrival + 750 * MS - 1
    p.on_tick(clock.now)
    assert len(out) == 1
    clock.now = arrival + 750 * MS + 40_000  # the loop woke 40 µs late
    p.on_tick(clock.now)
    assert len(out) == 2
    m = out[1]
    assert m["time_ns"] == T0 + 2 * S and m["ret_bps"] == pytest.approx(101.4, abs=1e-12) and m["valid"] is True
    assert m["latency_us"] == 40


def test_same_predictions_at_any_replay_speed(tmp_path: Path) -> None:
    """The same frames arriving 1000x, 4x and 1x real time, with the loop's timer firing in between,
    give the same messages (latency aside): the estimated exchange clock never runs ahead of the
    next frame when frames come at least as fast as they were sent."""
    frames = [(l2(1, T0 + 200 * MS, BOOK, snapshot=True), 200), (l2(2, T0 + 500 * MS, [("bid", 101.0, 1.0)]), 500),
              (heartbeat(3, T0 + 900 * MS), 900), (l2(4, T0 + 1300 * MS, [("offer", 101.8, 1.0)]), 1300),
              (trades(5, T0 + 2600 * MS, [("SELL", 101.8, 0.5)]), 2600),
              (l2(6, T0 + 3950 * MS, [("bid", 101.2, 2.0)]), 3950), (heartbeat(7, T0 + 5200 * MS), 5200)]
    results = []
    for k, speed in enumerate((1000.0, 4.0, 1.0)):
        p, out, clock = make(tmp_path / str(k))
        for line, t_ms in frames:
            at = int(t_ms * MS / speed)
            while (d := p.next_deadline()) is not None and d <= at:  # the loop's timer, between frames
                clock.now = d
                p.on_tick(d)
            feed(p, clock, line, at)
        results.append([{k2: v for k2, v in m.items() if k2 != "latency_us"} for m in out])
    assert results[0] == results[1] == results[2]
    assert [m["time_ns"] for m in results[0]] == [T0 + k * S for k in (1, 2, 3, 4, 5)]
    assert [m["ret_bps"] for m in results[0]] == pytest.approx([101.5, 101.4, 101.4, 101.5, 101.5], abs=1e-12)


def test_gap_invalidates_until_the_next_snapshot(tmp_path: Path) -> None:
    """A sequence jump (3, 4 missing) invalidates the book at the product's next level2 update;
    rows stay invalid through the interval holding the new snapshot, valid after it."""
    p, out, clock = make(tmp_path)
    lines = [l2(1, T0 + 200 * MS, BOOK, snapshot=True), l2(2, T0 + 1500 * MS, [("bid", 100.5, 1.0)]),
             l2(3, T0 + 2500 * MS, [("bid", 100.6, 1.0)]), heartbeat(6, T0 + 2700 * MS),
             l2(7, T0 + 3500 * MS, [("bid", 100.7, 1.0)]), l2(8, T0 + 4200 * MS, [("bid", 100.8, 1.0)]),
             l2(9, T0 + 4500 * MS, BOOK, snapshot=True), l2(10, T0 + 5100 * MS, [("bid", 100.9, 1.0)]),
             l2(11, T0 + 6100 * MS, [("bid", 101.0, 1.0)]), l2(12, T0 + 7100 * MS, [("bid", 101.1, 1.0)])]
    for i, line in enumerate(lines):
        feed(p, clock, line, i * S)
    assert p.stats.gaps == 1
    assert [(m["time_ns"] - T0) // S for m in out] == [1, 2, 3, 4, 5, 6, 7]
    assert [m["valid"] for m in out] == [False, True, True, False, False, True, True]


def test_hot_reload_switches_at_the_next_grid_point(tmp_path: Path) -> None:
    """A model handed over mid-interval is used from the next published grid point on, and its
    version shows in the messages; no grid point is skipped."""
    p, out, clock = make(tmp_path)
    feed(p, clock, l2(1, T0 + 200 * MS, BOOK, snapshot=True), 0)
    feed(p, clock, l2(2, T0 + 1200 * MS, [("bid", 101.0, 1.0)]), S)
    write_model(tmp_path / "m", "v0002", coef=2.0)
    p.switch_model(load_served(tmp_path / "m"))
    assert [m["version"] for m in out] == ["v0001"]
    feed(p, clock, l2(3, T0 + 2200 * MS, [("bid", 101.5, 1.0)]), 2 * S)
    feed(p, clock, l2(4, T0 + 3200 * MS, [("bid", 100.0, 1.0)]), 3 * S)
    assert [(m["version"], m["ret_bps"]) for m in out] == [("v0001", 101.0), ("v0002", 203.0), ("v0002", 203.5)]
    assert p.versions == ["v0001", "v0002"] and p.stats.reloads == 1


def test_two_products_share_one_trigger_and_unknown_products_are_ignored(tmp_path: Path) -> None:
    """A frame of one product closes the grid point for every product with a book; frames of
    products not served feed nothing."""
    p, out, clock = make(tmp_path, ("BTC-USD", "ETH-USD"))
    feed(p, clock, l2(1, T0 + 100 * MS, BOOK, snapshot=True), 0)
    feed(p, clock, l2(2, T0 + 200 * MS, [("bid", 10.0, 1.0), ("offer", 12.0, 1.0)], snapshot=True,
                      product="ETH-USD"), 1)
    feed(p, clock, l2(3, T0 + 300 * MS, BOOK, snapshot=True, product="SOL-USD"), 2)
    feed(p, clock, heartbeat(4, T0 + 1001 * MS), 3)
    assert [(m["product_id"], m["ret_bps"]) for m in out] == [("BTC-USD", 101.0), ("ETH-USD", 11.0)]
    assert p.stats.late_frames == 0


def test_model_watcher_loads_a_promoted_version_and_skips_an_incompatible_one(tmp_path: Path) -> None:
    """A new `current` with the same grid is handed over; one with another grid interval, or one
    that does not load, is reported and skipped (the serving model stays)."""
    from mktpred.serve.model import ModelWatcher

    write_model(tmp_path / "m", "v0001")
    served = load_served(tmp_path / "m")
    got: list[str] = []
    errors: list[str] = []
    w = ModelWatcher(tmp_path / "m", "v0001", served.spec, lambda s: got.append(s.model.version), errors.append)
    w.check()
    assert got == [] and errors == []
    write_model(tmp_path / "m", "v0002", interval_ns=100 * MS)
    w.check()
    assert got == [] and len(errors) == 1 and "another feature spec" in errors[0]
    d = write_model(tmp_path / "m", "v0003")
    (d / "model.linear.json").unlink()
    w.check()
    assert got == [] and len(errors) == 2 and "v0003 not loaded" in errors[1]
    write_model(tmp_path / "m", "v0004")
    w.check()
    w.check()
    assert got == ["v0004"] and len(errors) == 2
