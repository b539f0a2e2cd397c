"""`mktpred serve` end to end: the real simulator, the real process, real SSE and WebSocket clients,
and the batch pipeline (convert -> features -> predict) on the raw segments serve recorded."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import httpx
import pytest

from mktpred.simulate import SimulatedExchange, parse_fault
from tests.integration.procs import wait_until
from tests.integration.serve_helpers import (
    MSG_KEYS,
    WAIT,
    SSEClient,
    WSClient,
    batch_predictions,
    compare_live_batch,
    copy_as_new_version,
    free_port,
    imported_live,
    live_messages,
    serving,
    train_small_model,
)

RECORDS = "coinbase-advanced-trade-2026-08-09.records.jsonl.zst"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small trained model for the module (training takes seconds)."""
    return train_small_model(tmp_path_factory.mktemp("model"))


def test_replay_live_equals_batch_and_clients_get_every_message(model_dir: Path, samples_dir: Path,
                                                                 tmp_path: Path) -> None:
    """The real capture replayed at 4x into serve: SSE and WS clients get every message in order, and
    every (product, time) prediction equals the batch one on the raw segments serve recorded."""
    records = samples_dir / RECORDS
    if not records.is_file():
        pytest.skip("real capture absent")
    port = free_port()
    with serving(model_dir, f"ws://127.0.0.1:{port}", tmp_path) as sp:
        http = sp.wait_ready()
        sse, ws = SSEClient(http), WSClient(http)
        sse.start()
        ws.start()
        assert wait_until(lambda: sp.health()["clients"] == 2, WAIT)
        with SimulatedExchange(products=["BTC-USD", "ETH-USD"], replay=records, speed=4.0, port=port):
            assert wait_until(lambda: sp.health()["frames"] >= 1030, WAIT), sp.health()
            # the last frame is at :12.89; the timer publishes :13 once the estimated clock passes :13.05
            assert wait_until(lambda: sp.health()["grid_points"] >= 25, WAIT), sp.health()
            health = sp.health()
            latest = httpx.get(http + "/predictions/latest", timeout=10).json()
            docs = httpx.get(http + "/docs", timeout=10)
            openapi = httpx.get(http + "/openapi.json", timeout=10).json()
            summary = sp.terminate()
    sse.join(WAIT)
    ws.join(WAIT)
    assert sse.error is None and ws.error is None, (sse.error, ws.error)
    live = live_messages(sp.preds)
    assert live and [list(m) for m in live] == [MSG_KEYS] * len(live)
    assert sse.messages == live and ws.messages == live  # every message, in order, on both
    assert set(sse.events) == {"prediction"}
    assert health["model"] == "m" and health["version"] == "v0001" and health["clients_dropped"] == 0
    assert sorted(m["product_id"] for m in latest) == ["BTC-USD", "ETH-USD"]
    assert all(m == max((x for x in live if x["product_id"] == m["product_id"]), key=lambda x: x["time_ns"])
               for m in latest)
    assert docs.status_code == 200 and {"/health", "/predictions/latest", "/stream"} <= set(openapi["paths"])
    first = live[0]
    assert first["time"] == "2026-08-09T21:05:49.000000000Z" and first["time_ns"] == 1_786_309_549_000_000_000
    assert summary["predictions"] == len(live) and summary["late_frames"] == 0 and summary["undecodable"] == 0
    assert summary["collect"]["frames"] == 1030 and not list(sp.raw.glob("*.part"))
    batch, last = batch_predictions(sp.raw, model_dir, tmp_path)
    n = compare_live_batch(live, batch, last)
    assert n >= 2 * 23  # 24.7 s of two products on a 1-s grid
    assert any(not v for v, _ in batch.values()) and any(v for v, _ in batch.values())
    # the live predictions end up in the store next to the batch ones, exactly as published
    stored = sorted(imported_live(sp.preds, tmp_path), key=lambda r: (r["time_ns"], r["product_id"]))
    published = sorted(live, key=lambda m: (m["time_ns"], m["product_id"]))
    assert [(r["product_id"], r["time_ns"], r["valid"], r["p_up"], r["latency_us"], r["version"]) for r in stored] \
        == [(m["product_id"], m["time_ns"], m["valid"], m["p_up"], m["latency_us"], m["version"]) for m in published]


def test_gaps_reconnect_hot_reload_and_sigterm_mid_stream(model_dir: Path, tmp_path: Path) -> None:
    """Sequence gaps and a dropped connection on the model simulator: predictions after a gap are
    invalid until the new snapshot exactly as in batch; a promoted version takes over at one grid
    point with no grid point lost; SIGTERM mid-stream exits 0 with both kinds of segments sealed."""
    import shutil

    name_dir = tmp_path / "models" / "m"
    shutil.copytree(model_dir, name_dir)
    faults = [parse_fault("gap:every=500"), parse_fault("drop:after=600")]
    with SimulatedExchange(products=["BTC-USD", "ETH-USD"], rate=300, seed=7, faults=faults) as sim, \
            serving(name_dir, sim.url, tmp_path) as sp:
        sp.wait_ready()
        assert wait_until(lambda: len(sim.connections()) >= 2, WAIT)
        assert wait_until(lambda: sp.health()["grid_points"] >= 6, WAIT), sp.health()
        copy_as_new_version(name_dir, "v0001", "v0002")
        assert wait_until(lambda: sp.health()["version"] == "v0002", WAIT)
        assert wait_until(lambda: sp.health()["grid_points"] >= 10, WAIT), sp.health()
        summary = sp.terminate()  # the simulator is still streaming
    live = live_messages(sp.preds)
    assert summary["versions"] == ["v0001", "v0002"] and summary["reloads"] == 1
    assert summary["collect"]["gaps"] >= 1 and summary["collect"]["reconnects"] >= 1
    assert summary["collect"]["stopped_by"] == "stop" and not list(sp.raw.glob("*.part"))
    # the switch happens at one grid point: every product's message there and after is v0002
    versions = [(m["time_ns"], m["version"]) for m in live]
    switch = min(t for t, v in versions if v == "v0002")
    assert all((v == "v0002") == (t >= switch) for t, v in versions)
    for p in ("BTC-USD", "ETH-USD"):
        ts = [m["time_ns"] for m in live if m["product_id"] == p]
        steps = {b - a for a, b in itertools.pairwise(ts)}
        # one row per second, except across the reconnect (no book until the new snapshot)
        assert ts == sorted(ts) and 1_000_000_000 in steps
        assert switch - 1_000_000_000 in ts and switch in ts  # no grid point lost at the switch
    assert any(not m["valid"] for m in live) and any(m["valid"] for m in live)
    batch, last = batch_predictions(sp.raw, name_dir, tmp_path)
    compare_live_batch(live, batch, last)
    assert json.loads((name_dir / "v0002" / "model.json").read_text())["version"] == "v0002"
