"""The audit of rebuilt books against the ticker: hand-built cases, the real capture, the simulator."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mktpred.book import audit_book, build_book
from mktpred.cli.app import app
from mktpred.coinbase.timestamps import parse_rfc3339_ns, utc_date
from mktpred.store import open_store
from mktpred.store.schemas import TABLE_SCHEMAS

T0 = parse_rfc3339_ns("2026-08-09T12:00:00Z")
MS = 1_000_000
RECORDS = "coinbase-advanced-trade-2026-08-09.records.jsonl.zst"


def write_table(root: Path, table: str, rows: list[dict[str, Any]]) -> None:
    d = root / table / f"date={utc_date(rows[0]['time'])}"
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=TABLE_SCHEMAS[table]), d / "seg.parquet")


def l2_rows(frames: list[tuple[int, int, bool, list[tuple[str, float, float]]]]) -> list[dict[str, Any]]:
    return [dict(recv_time=t, time=t, event_time=t // 1000, conn="c", seq=s, product_id="BTC-USD",
                 is_snapshot=snap, side=side, price=p, size=q)
            for s, t, snap, levels in frames for side, p, q in levels]


def ticker_rows(ticks: list[tuple[int, int, float, float]]) -> list[dict[str, Any]]:
    return [dict(recv_time=t, time=t, conn="c", seq=s, product_id="BTC-USD", is_snapshot=False, price=b,
                 best_bid=b, best_bid_size=1.0, best_ask=a, best_ask_size=1.0) for s, t, b, a in ticks]


def _hand_built(root: Path) -> None:
    write_table(root, "l2", l2_rows([
        (2, T0, True, [("bid", 100.0, 1.0), ("ask", 101.0, 1.0)]),
        (4, T0 + 100 * MS, False, [("bid", 100.5, 1.0)]),
        (6, T0 + 400 * MS, False, [("ask", 100.8, 1.0)]),
        (9, T0 + 900 * MS, False, [("ask", 100.8, 0.0), ("ask", 100.9, 1.0)]),
    ]))
    write_table(root, "ticker", ticker_rows([
        (1, T0 - MS, 100.0, 101.0),  # before the first snapshot: not counted
        (3, T0 + 50 * MS, 100.0, 101.0),  # exact (state after seq 2)
        (5, T0 + 100 * MS, 100.5, 101.0),  # exact (state after seq 4)
        (7, T0 + 180 * MS, 100.5, 101.0),  # same moment shows ask 100.8; the state 80 ms earlier matches
        (8, T0 + 700 * MS, 100.5, 100.9),  # matches the state 200 ms later (seq 9)
        (10, T0 + 950 * MS, 99.0, 101.0),  # never matches
    ]))
    write_table(root, "messages", [dict(recv_time=T0 + s * MS, time=T0 + s * MS, conn="c", seq=s, channel="x",
                                        n_events=1, n_rows=1) for s in range(11)])


def test_same_moment_and_windows_on_a_hand_built_book(tmp_path: Path) -> None:
    """Each ticker matches at the same moment, within a window, or not at all, as constructed."""
    _hand_built(tmp_path)
    res = audit_book(tmp_path, window_ms=250, threshold=0.5)
    (g,) = res.groups
    assert (g.product, g.date, g.tickers, g.no_book, g.exact) == ("BTC-USD", "2026-08-09", 5, 1, 2)
    assert g.within == {0: 2, 50: 2, 250: 4, 500: 4}
    assert res.windows == [0, 50, 250, 500]
    assert res.passed and res.total().rate(250) == 0.8
    assert [(m.seq, m.nearest_ms) for m in res.worst] == [(10, None), (8, 200.0), (7, 80.0)]
    assert res.worst[2].book_ask == 100.8 and res.worst[2].ticker_ask == 101.0
    strict = audit_book(tmp_path, window_ms=250, threshold=0.9)
    assert not strict.passed and strict.failing == ["BTC-USD"]
    doc = strict.to_json()
    assert doc["products"]["BTC-USD"]["days"]["2026-08-09"]["within"]["250"] == 4 and doc["passed"] is False


def test_invalid_book_never_matches(tmp_path: Path) -> None:
    """After a sequence gap the book is invalid, so even equal prices do not count as a match."""
    _hand_built(tmp_path)
    shutil.rmtree(tmp_path / "messages")
    write_table(tmp_path, "messages", [dict(recv_time=T0, time=T0, conn="c", seq=s, channel="x", n_events=1,
                                            n_rows=1) for s in range(11) if s != 3])
    (g,) = audit_book(tmp_path).groups
    assert g.tickers == 5 and g.exact == 1 and g.invalid == 4 and g.within[500] == 1


def test_ticker_after_a_gap_before_the_products_next_frame_is_invalid(tmp_path: Path) -> None:
    """Frame seq 7 is lost after the book's last frame (seq 6): the tickers at seq 8 and 10 cannot be
    judged against the state of seq 6 (the lost frame may have been this product's update), so they
    count as invalid, not as mismatches or matches; the tickers before the loss are judged as before."""
    _hand_built(tmp_path)
    shutil.rmtree(tmp_path / "messages")
    write_table(tmp_path, "messages", [dict(recv_time=T0, time=T0, conn="c", seq=s, channel="x", n_events=1,
                                            n_rows=1) for s in range(11) if s != 7])
    shutil.rmtree(tmp_path / "l2")
    write_table(tmp_path, "l2", l2_rows([
        (2, T0, True, [("bid", 100.0, 1.0), ("ask", 101.0, 1.0)]),
        (4, T0 + 100 * MS, False, [("bid", 100.5, 1.0)]),
        (6, T0 + 400 * MS, False, [("ask", 100.8, 1.0)]),
    ]))
    shutil.rmtree(tmp_path / "ticker")
    write_table(tmp_path, "ticker", ticker_rows([
        (3, T0 + 50 * MS, 100.0, 101.0),  # exact (state after seq 2)
        (5, T0 + 100 * MS, 100.5, 101.0),  # exact (state after seq 4)
        (8, T0 + 700 * MS, 100.5, 100.9),  # after the loss: the book may lack an update
        (10, T0 + 950 * MS, 100.5, 100.8),  # equal to the state of seq 6, still unknowable
    ]))
    result = audit_book(tmp_path)
    (g,) = result.groups
    assert (g.tickers, g.exact, g.invalid) == (4, 2, 2)
    assert all(not m.valid for m in result.worst) and sorted(m.seq for m in result.worst) == [8, 10]


def test_cli_audit_exit_code(tmp_path: Path) -> None:
    """`book --audit` exits 1 below the threshold and 0 at or above it."""
    _hand_built(tmp_path)
    runner = CliRunner()
    base = ["book", "--parquet-dir", str(tmp_path), "--audit", "--audit-window-ms", "250"]
    bad = runner.invoke(app, [*base, "--audit-threshold", "0.9"], catch_exceptions=False)
    assert bad.exit_code == 1
    assert "error: audit: match rate within ±250 ms below 90.00% for BTC-USD" in bad.stderr
    ok = runner.invoke(app, [*base, "--audit-threshold", "0.8", "--json"], catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    assert orjson.loads(ok.stdout)["audit"]["within"]["250"] == 4


def _convert(raw_dir: Path, store: Path) -> None:
    result = CliRunner().invoke(app, ["convert", "--raw-dir", str(raw_dir), "--parquet-dir", str(store), "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_real_capture_audit_figures(samples_dir: Path, tmp_path: Path) -> None:
    """The real capture converts and audits to 132/154 exact, 144 / 151 / 154 within 50 / 250 / 500 ms."""
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(samples_dir / RECORDS, raw / RECORDS)
    _convert(raw, tmp_path / "pq")
    res = audit_book(tmp_path / "pq")
    tot = res.total()
    assert (tot.tickers, tot.exact, tot.no_book, tot.invalid) == (154, 132, 6, 0)
    assert tot.within == {0: 132, 50: 144, 250: 151, 500: 154}
    assert res.passed
    per = {p: (g.tickers, g.exact) for p, g in res.product_totals().items()}
    assert per == {"BTC-USD": (70, 70), "ETH-USD": (84, 62)}
    built = build_book(tmp_path / "pq", depth=10, interval_ns=100 * MS)
    store = open_store(tmp_path / "pq")
    book = store.read("book", products="BTC-USD")
    assert book.num_rows == built.products[0].snapshots > 200
    assert book.column("valid").to_pylist() == [True] * book.num_rows
    assert book.column("crossed").to_pylist() == [False] * book.num_rows
    assert book.column("bid_price_9").null_count == 0  # ~46,000 levels: always 10 deep


def _brute_force_top(frames: list[dict[str, Any]], product: str, depth: int) -> tuple[list[float], list[float]]:
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for msg in frames:
        if msg.get("channel") != "l2_data":
            continue
        for ev in msg["events"]:
            if ev["product_id"] != product:
                continue
            if ev["type"] == "snapshot":
                bids, asks = {}, {}
            for u in ev["updates"]:
                book = bids if u["side"] == "bid" else asks
                p, q = float(u["price_level"]), float(u["new_quantity"])
                if q == 0:
                    book.pop(p, None)
                else:
                    book[p] = q
    return sorted(bids, reverse=True)[:depth], sorted(asks)[:depth]


def test_simulator_stream_rebuilds_to_its_own_ticker(tmp_path: Path) -> None:
    """collect -> convert -> book on the simulator: every ticker matches at the same moment, and the
    final book equals a brute-force replay of the frames the simulator sent."""
    from mktpred.collect import CollectSettings, run_collect
    from mktpred.simulate import SimulatedExchange

    raw = tmp_path / "raw"
    with SimulatedExchange(products=["BTC-USD", "ETH-USD"], rate=400, seed=5, depth=300, record_sent=True) as sim:
        stop = threading.Event()
        settings = CollectSettings(url=sim.url, products=("BTC-USD", "ETH-USD"),
                                   channels=("level2", "ticker", "market_trades"), raw_dir=raw,
                                   flush_interval_s=0.2, stall_timeout_s=5.0)
        done: list[Any] = []
        worker = threading.Thread(target=lambda: done.append(run_collect(settings, stop=stop)), daemon=True)
        worker.start()
        assert sim.wait_for(lambda s: bool(s.connections()) and s.connections()[0].frames_sent >= 800, 60)
        stop.set()
        worker.join(60)
        assert not worker.is_alive() and done
        sent = [orjson.loads(t) for t in sim.connections()[0].sent]
    _convert(raw, tmp_path / "pq")
    res = audit_book(tmp_path / "pq", threshold=1.0)
    tot = res.total()
    assert tot.tickers > 50
    assert tot.exact == tot.tickers and res.passed and tot.invalid == 0
    build_book(tmp_path / "pq", depth=5, interval_ns=None)
    store = open_store(tmp_path / "pq")
    # frames the recorder got are a prefix of what was sent (the rest was in flight at stop)
    got_seqs = store.read("messages", columns=["seq"]).column("seq").to_pylist()
    last = max(got_seqs)
    recorded = [m for m in sent if m.get("sequence_num", -1) <= last]
    for product in ("BTC-USD", "ETH-USD"):
        book = store.read("book", products=product)
        final = {k: v[-1] for k, v in book.to_pydict().items()}
        bids, asks = _brute_force_top(recorded, product, 5)
        assert [final[f"bid_price_{i}"] for i in range(len(bids))] == bids
        assert [final[f"ask_price_{i}"] for i in range(len(asks))] == asks
        assert all(book.column("valid").to_pylist())


@pytest.mark.parametrize("window", [-1])
def test_bad_window_is_a_usage_error(tmp_path: Path, window: int) -> None:
    """A negative window is refused with a usage error."""
    _hand_built(tmp_path)
    from mktpred.errors import UsageError

    with pytest.raises(UsageError, match="audit-window-ms"):
        audit_book(tmp_path, window_ms=window)


def test_simulator_gaps_and_reconnect_mark_invalid_spans(tmp_path: Path) -> None:
    """With sequence gaps and a dropped connection, books go invalid at each gap until the
    recorder's resubscribe brings a snapshot, and the new connection starts a new book."""
    from mktpred.collect import CollectSettings, run_collect
    from mktpred.simulate import SimulatedExchange, parse_fault

    raw = tmp_path / "raw"
    faults = [parse_fault("gap:every=300"), parse_fault("drop:after=700")]
    with SimulatedExchange(products=["BTC-USD", "ETH-USD"], rate=400, seed=5, depth=300, faults=faults) as sim:
        stop = threading.Event()
        settings = CollectSettings(url=sim.url, products=("BTC-USD", "ETH-USD"),
                                   channels=("level2", "ticker", "market_trades"), raw_dir=raw,
                                   flush_interval_s=0.2, stall_timeout_s=5.0, backoff_initial_s=0.05,
                                   backoff_max_s=0.2)
        worker = threading.Thread(target=lambda: run_collect(settings, stop=stop), daemon=True)
        worker.start()
        assert sim.wait_for(lambda s: len(s.connections()) >= 2 and s.connections()[1].frames_sent >= 700, 60)
        stop.set()
        worker.join(60)
        assert not worker.is_alive()
    _convert(raw, tmp_path / "pq")
    res = build_book(tmp_path / "pq", depth=3, interval_ns=None)
    spans = [s for p in res.products for s in p.invalid_spans]
    assert all(p.conns == 2 for p in res.products)
    assert spans and all(s["end"] is not None and s["end"] >= s["start"] for s in spans)
    assert sum(p.invalid_rows for p in res.products) >= len(spans)
    book = open_store(tmp_path / "pq").read("book", products="BTC-USD")
    assert book.column("valid").to_pylist()[-1] is True
    audit = audit_book(tmp_path / "pq")
    tot = audit.total()
    assert tot.exact == tot.tickers - tot.invalid and tot.within[500] == tot.tickers, audit.worst[:3]
