"""The recorder against the real simulator on 127.0.0.1: nothing lost, nothing duplicated, faults survived."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mktpred.collect import Collector, CollectResult, CollectSettings, OffsetClock
from mktpred.collect.clock import NS_PER_DAY, Clock
from mktpred.errors import CollectorGaveUp
from mktpred.simulate import SimulatedExchange, parse_fault

PRODUCTS = ("BTC-USD", "ETH-USD")
CHANNELS = ("level2", "ticker", "market_trades")
WAIT = 30.0


def _settings(url: str, raw_dir: Path, **kw: Any) -> CollectSettings:
    base: dict[str, Any] = dict(url=url, products=PRODUCTS, channels=CHANNELS, raw_dir=raw_dir,
                                flush_interval_s=0.2, stall_timeout_s=1.0, backoff_initial_s=0.05,
                                backoff_max_s=0.2)
    base.update(kw)
    return CollectSettings(**base)


class Run:
    """A recorder running in a thread until :meth:`finish`."""

    def __init__(self, settings: CollectSettings, clock: Clock | None = None) -> None:
        self.stop = threading.Event()
        self.result: CollectResult | None = None
        self.error: BaseException | None = None
        self.collector = Collector(settings, stop=self.stop, clock=clock)

        def target() -> None:
            try:
                self.result = self.collector.run()
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def finish(self) -> CollectResult:
        self.stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@contextmanager
def recording(sim: SimulatedExchange, raw_dir: Path, clock: Clock | None = None, **kw: Any) -> Iterator[Run]:
    run = Run(_settings(sim.url, raw_dir, **kw), clock)
    try:
        yield run
    finally:
        if run.thread.is_alive():
            run.stop.set()
            run.thread.join(WAIT)


def lines_of(raw_dir: Path) -> list[bytes]:
    """Every line of every sealed segment, in file-name order; no ``.part`` may be left."""
    assert not list(raw_dir.glob("*.part"))
    out: list[bytes] = []
    for seg in sorted(raw_dir.glob("coinbase_*.jsonl")):
        data = seg.read_bytes()
        assert data.endswith(b"\n"), seg
        out.extend(data.split(b"\n")[:-1])
    return out


def msg_text(line: bytes) -> str:
    """The ``msg`` bytes exactly as spliced into the record."""
    assert line.endswith(b"}")
    return line[line.index(b',"msg":') + len(b',"msg":'): -1].decode()


def by_conn(lines: list[bytes]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for line in lines:
        out.setdefault(json.loads(line)["conn"], []).append(line)
    return out


def frames_of(lines: list[bytes]) -> list[str]:
    """The frames (``msg`` or ``raw``) of one connection's records, in order."""
    out = []
    for line in lines:
        rec = json.loads(line)
        if "msg" in rec:
            out.append(msg_text(line))
        elif "raw" in rec:
            out.append(rec["raw"])
    return out


def events_of(lines: list[bytes], kind: str | None = None) -> list[dict[str, Any]]:
    evs = [json.loads(x) for x in lines if b'"event":' in x[:120]]
    return [e for e in evs if kind is None or e["event"] == kind]


def test_normal_run_keeps_every_frame_once_in_order_byte_identical(tmp_path: Path) -> None:
    """Every frame the simulator sent is on disk once, in order, byte for byte inside `msg`."""
    with SimulatedExchange(products=list(PRODUCTS), rate=400.0, seed=3, depth=300, record_sent=True) as sim, \
            recording(sim, tmp_path) as run:
        assert sim.wait_for(lambda s: run.collector.stats[0].frames >= 600, WAIT)
        result = run.finish()
        sent = list(sim.connections()[0].sent)
    lines = lines_of(tmp_path)
    conns = by_conn(lines)
    assert list(conns) == [result.connections[0].conns[0]]
    recorded = frames_of(conns[result.connections[0].conns[0]])
    assert len(recorded) >= 600
    assert recorded == sent[: len(recorded)]  # a prefix: what was in flight at the stop is not owed
    assert len(sent) - len(recorded) < 200
    assert [e["event"] for e in events_of(lines)] == ["open", "subscribed", "close"]
    seqs = [json.loads(f)["sequence_num"] for f in recorded]
    assert seqs == list(range(len(seqs)))
    assert result.frames == len(recorded) and result.gaps == 0 and result.reconnects == 0
    assert result.lines_written == len(lines)


def test_drop_reconnects_with_a_new_conn_and_resubscribes(tmp_path: Path) -> None:
    """An abrupt TCP drop: reconnect, resubscribe every channel, new conn id, nothing lost or repeated."""
    with SimulatedExchange(products=list(PRODUCTS), rate=400.0, seed=4, depth=300, record_sent=True,
                           faults=[parse_fault("drop:after=150")]) as sim, recording(sim, tmp_path) as run:
        assert sim.wait_for(lambda s: len(s.connections()) >= 2 and run.collector.stats[0].frames >= 150 + 100, WAIT)
        result = run.finish()
        logs = sim.connections()
    conns = by_conn(lines_of(tmp_path))
    ids = list(result.connections[0].conns)
    assert len(ids) == 2 and ids[0] != ids[1] and list(conns) == ids
    first, second = frames_of(conns[ids[0]]), frames_of(conns[ids[1]])
    assert first == logs[0].sent  # the dropped connection: every frame, exactly once
    assert second == logs[1].sent[: len(second)] and len(second) >= 100
    assert "close" in [e["event"] for e in events_of(conns[ids[0]])]
    assert logs[1].subscriptions == {"level2": list(PRODUCTS), "ticker": list(PRODUCTS),
                                     "market_trades": list(PRODUCTS), "heartbeats": ["heartbeats"]}
    assert [e["event"] for e in events_of(conns[ids[1]])][:2] == ["open", "subscribed"]
    assert result.reconnects == 1


def test_stall_watchdog_reconnects_within_the_timeout(tmp_path: Path) -> None:
    """A silent socket is declared stalled after stall_timeout_s and replaced by a new connection."""
    with SimulatedExchange(products=list(PRODUCTS), rate=300.0, seed=5, depth=200, record_sent=True,
                           faults=[parse_fault("stall:seconds=20,after=120")]) as sim, \
            recording(sim, tmp_path, stall_timeout_s=1.0) as run:
        assert sim.wait_for(lambda s: len(s.connections()) >= 2 and run.collector.stats[0].frames >= 120 + 50, WAIT)
        result = run.finish()
        logs = sim.connections()
    conns = by_conn(lines_of(tmp_path))
    ids = list(result.connections[0].conns)
    first = conns[ids[0]]
    stall = events_of(first, "stall")
    assert len(stall) == 1 and result.stalls == 1
    last_frame_ns = max(json.loads(x)["recv_ns"] for x in first if b',"msg":' in x)
    waited_s = (stall[0]["recv_ns"] - last_frame_ns) / 1e9
    assert 0.95 <= waited_s < 1.0 + 1.5  # fired at the timeout, and promptly (0.25 s ticks + load)
    assert events_of(first, "close")[0]["reason"] == "stall"
    assert frames_of(first) == logs[0].sent[:120] == logs[0].sent
    assert frames_of(conns[ids[1]])[:10] == logs[1].sent[:10]


def test_gap_is_recorded_with_its_range_and_level2_is_resubscribed(tmp_path: Path) -> None:
    """A sequence gap becomes a gap event (expected, got), and level2 restarts from a fresh snapshot."""
    with SimulatedExchange(products=list(PRODUCTS), rate=400.0, seed=6, depth=200, record_sent=True,
                           faults=[parse_fault("gap:every=250,size=4")]) as sim, recording(sim, tmp_path) as run:
        assert sim.wait_for(lambda s: bool(s.fault_log), WAIT)
        fault = sim.fault_log[0]
        assert sim.wait_for(lambda s: run.collector.stats[0].frames >= fault.at_frame + 200, WAIT)
        result = run.finish()
    lines = lines_of(tmp_path)
    gaps = events_of(lines, "gap")
    assert gaps, "no gap event"
    first = gaps[0]
    assert fault.detail == f"skipped sequence_num {first['expected']}..{first['got'] - 1}"
    assert first["got"] - first["expected"] == 4 and first["action"] == "resubscribe level2"
    assert result.gaps == len(gaps) and result.missing == 4 * len(gaps)
    # after the gap event, a new level2 snapshot for each product arrives on the same connection
    after = lines[lines.index(next(x for x in lines if b'"event":"gap"' in x)) + 1:]
    snapshots = set()
    for x in after:
        rec = json.loads(x)
        msg = rec.get("msg") or {}
        if msg.get("channel") == "l2_data":
            snapshots |= {e["product_id"] for e in msg["events"] if e["type"] == "snapshot"}
    assert snapshots == set(PRODUCTS)


def test_frame_revealing_a_gap_is_kept_when_the_socket_dies_at_once(tmp_path: Path) -> None:
    """A gap frame sent last before an abrupt drop is on disk with every other frame of that connection."""
    with SimulatedExchange(products=list(PRODUCTS), rate=400.0, seed=7, depth=200, record_sent=True,
                           faults=[parse_fault("gap:every=150,size=2"),
                                   parse_fault("drop:after=151")]) as sim, recording(sim, tmp_path) as run:
        assert sim.wait_for(lambda s: len(s.connections()) >= 2 and run.collector.stats[0].frames >= 151 + 50, WAIT)
        result = run.finish()
        logs = sim.connections()
    gap_fault = next(f for f in sim.fault_log if f.kind == "gap")
    assert gap_fault.conn_index == 0
    conns = by_conn(lines_of(tmp_path))
    first = conns[result.connections[0].conns[0]]
    assert len(logs[0].sent) == 151
    assert frames_of(first) == logs[0].sent  # the gap frame, sent last, is on disk too
    assert len(events_of(first, "gap")) == 1


def test_malformed_frame_kept_raw_and_duplicate_counted(tmp_path: Path) -> None:
    """A non-JSON frame is kept as `raw` in its place; a repeated sequence number is kept and counted."""
    faults = [parse_fault("malformed:after=80"), parse_fault("duplicate:after=160")]
    with SimulatedExchange(products=list(PRODUCTS), rate=400.0, seed=7, depth=200, record_sent=True,
                           faults=faults) as sim, recording(sim, tmp_path) as run:
        assert sim.wait_for(lambda s: len(s.fault_log) == 2 and run.collector.stats[0].frames >= 250, WAIT)
        result = run.finish()
        sent = list(sim.connections()[0].sent)
    lines = lines_of(tmp_path)
    raws = [json.loads(x) for x in lines if b'"raw":' in x]
    assert len(raws) == 1 and result.raw_frames == 1
    torn = raws[0]["raw"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(torn)
    recorded = frames_of(lines)
    assert recorded == sent[: len(recorded)]  # the raw text sits exactly where it was sent
    dup = events_of(lines, "duplicate")
    assert len(dup) == 1 and dup[0]["got"] == dup[0]["expected"] - 1
    assert result.duplicates == 1 and result.gaps == 0


def test_oversized_8mb_snapshot_is_recorded_whole(tmp_path: Path) -> None:
    """An 8 MiB level2 snapshot frame passes and lands on disk byte-identical."""
    with SimulatedExchange(products=["BTC-USD"], rate=100.0, seed=8, depth=100, record_sent=True,
                           faults=[parse_fault("oversized:mb=8,times=1")]) as sim, \
            recording(sim, tmp_path, products=("BTC-USD",), stall_timeout_s=5.0) as run:
        assert sim.wait_for(lambda s: run.collector.stats[0].frames >= 40, WAIT)
        result = run.finish()
        sent = list(sim.connections()[0].sent)
    big = [f for f in sent if len(f) >= 8 * 2**20]
    assert len(big) == 1
    recorded = frames_of(lines_of(tmp_path))
    assert big[0] in recorded
    assert recorded == sent[: len(recorded)]
    assert result.reconnects == 0 and result.stalls == 0


def test_midnight_rotation_splits_into_two_sealed_segments(tmp_path: Path) -> None:
    """Crossing UTC midnight (injected clock) seals one segment and opens the next; no line lost or split."""
    clock = OffsetClock.before_midnight(1.5)
    with SimulatedExchange(products=list(PRODUCTS), rate=300.0, seed=9, depth=200, record_sent=True) as sim, \
            recording(sim, tmp_path, clock=clock) as run:
        assert sim.wait_for(lambda s: clock.now_ns() % NS_PER_DAY > 1_000_000_000 and clock.now_ns() % NS_PER_DAY
                            < NS_PER_DAY // 2 and bool(s.connections()), WAIT)
        assert sim.wait_for(lambda s: run.collector.stats[0].frames >= 500, WAIT)
        result = run.finish()
        sent = list(sim.connections()[0].sent)
    segs = sorted(tmp_path.glob("coinbase_*.jsonl"))
    assert len(segs) == 2 and len(result.segments) == 2
    assert segs[1].name.endswith("T000000Z.jsonl")
    midnight = (clock.now_ns() // NS_PER_DAY) * NS_PER_DAY
    before = segs[0].read_bytes().split(b"\n")
    after = segs[1].read_bytes().split(b"\n")
    assert before[-1] == b"" and after[-1] == b""
    assert all(json.loads(x)["recv_ns"] < midnight for x in before[:-1])
    assert all(json.loads(x)["recv_ns"] >= midnight for x in after[:-1])
    assert len(before) > 3 and len(after) > 3
    recorded = frames_of(before[:-1] + after[:-1])
    assert recorded == sent[: len(recorded)] and len(recorded) >= 500


def test_max_reconnects_counts_only_reconnects_without_a_healthy_spell(tmp_path: Path) -> None:
    """Connections that deliver data long enough reset the count; short-lived ones exhaust it (exit 3)."""
    drop = [parse_fault("drop:after=30,times=0")]
    with SimulatedExchange(products=list(PRODUCTS), rate=600.0, seed=10, depth=50, faults=drop) as sim:
        with recording(sim, tmp_path / "healthy", max_reconnects=2, backoff_reset_after_s=0.0) as run:
            assert sim.wait_for(lambda s: len(s.connections()) >= 6, WAIT)
            assert run.thread.is_alive()  # every connection delivered data: never gives up
            result = run.finish()
        assert result.reconnects >= 5
        with recording(sim, tmp_path / "flaky", max_reconnects=2, backoff_reset_after_s=60.0) as run:
            run.thread.join(WAIT)
            assert not run.thread.is_alive()
            with pytest.raises(CollectorGaveUp, match="gave up after 2 reconnects"):
                run.finish()
    assert not list((tmp_path / "flaky").glob("*.part")) and len(list((tmp_path / "flaky").glob("*.jsonl"))) == 1


def test_products_spread_over_two_connections(tmp_path: Path) -> None:
    """connections=2: one connection per product, each subscribed to its own product, each complete."""
    with SimulatedExchange(products=list(PRODUCTS), rate=400.0, seed=14, depth=100, record_sent=True) as sim, \
            recording(sim, tmp_path, connections=2) as run:
        assert sim.wait_for(lambda s: len(s.connections()) == 2, WAIT)
        assert sim.wait_for(lambda s: all(st.frames >= 100 for st in run.collector.stats), WAIT)
        result = run.finish()
        logs = sim.connections()
    conns = by_conn(lines_of(tmp_path))
    assert len(result.connections) == 2 and len(conns) == 2
    subscribed = sorted(tuple(log.subscriptions["level2"]) for log in logs)
    assert subscribed == [("BTC-USD",), ("ETH-USD",)]
    for summary in result.connections:
        (conn,) = summary.conns
        (log,) = [x for x in logs if tuple(x.subscriptions["level2"]) == summary.products]
        recorded = frames_of(conns[conn])
        assert recorded == log.sent[: len(recorded)] and len(recorded) >= 100
