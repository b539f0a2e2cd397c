"""The honesty oracle and `simulate --to-raw`: AUC arithmetic, grid sampling, no skill without a
signal, skill that grows with it, sealed segments that convert and validate, same seed same bytes."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mktpred.cli.app import app
from mktpred.coinbase import parse_rfc3339_ns
from mktpred.simulate.model import ASK, BID, MarketModel, p_up
from mktpred.simulate.oracle import OracleTracker, auc, auc_se_h0
from mktpred.simulate.to_raw import write_raw

S = 1_000_000_000
START = 1_790_000_000 * S  # 2026-09-21T14:13:20Z
runner = CliRunner()


def _oracle(signal: float, seed: int = 1, minutes: float = 15) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return write_raw(Path(d), products=["BTC-USD", "ETH-USD"], span_ns=int(minutes * 60 * S), start_ns=START,
                         seed=seed, depth=300, signal=signal).oracle


def test_auc_matches_hand_computed_values() -> None:
    """AUC counts the pairs a positive outranks a negative, ties counting one half."""
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    # pairs (pos, neg): (1 vs 1) tie = 0.5, (2 vs 1) = 1 -> 1.5 / 2
    assert auc(np.array([1.0, 1.0, 2.0]), np.array([0, 1, 1])) == 0.75
    assert auc(np.array([3.0, 2.0, 1.0]), np.array([0, 0, 1])) == 0.0
    assert auc(np.array([1.0, 2.0]), np.array([1, 1])) is None


def test_auc_agrees_with_scikit_learn() -> None:
    """On random scores with many ties the rank formula equals scikit-learn's roc_auc_score."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    scores = rng.integers(0, 20, 3000).astype(float)
    labels = rng.random(3000) < 0.3 + 0.02 * scores
    assert auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_standard_error_under_no_skill() -> None:
    """SE of AUC under H0 is sqrt((n1+n0+1)/(12 n1 n0)): 0.0580 for 50 up and 50 down."""
    assert auc_se_h0(50, 50) == pytest.approx(math.sqrt(101 / 30000))
    assert auc_se_h0(0, 10) is None


def test_tracker_samples_the_state_after_frames_at_or_before_each_grid_point() -> None:
    """A frame stamped exactly on g counts at g; grid points before a frame keep the state before it."""
    tr = OracleTracker(S, (S,))
    tr.update("X", S // 2, 100, 3, 101, 1)  # first state at 0.5 s: grid starts at 1 s
    tr.update("X", S, 100, 1, 101, 1)  # at exactly 1 s: the state at g = 1 s
    tr.update("X", 2 * S + S // 2, 101, 1, 102, 3)  # at 2.5 s: the state at g = 3 s
    tr.finish(3 * S)
    s = tr.series["X"]
    assert s.first_g == S
    assert s.mid2 == [201, 201, 203]
    assert s.imb == [0.0, 0.0, -0.5]
    h = tr.result()["horizons"]["1s"]
    assert (h["rows"], h["up"], h["down"], h["no_move"]) == (1, 1, 0, 1)


def test_planted_rule_is_the_documented_logistic_link() -> None:
    """P(up) = 1/(1+exp(-4*S*imb_1)); with no signal it is one half whatever the queues."""
    assert p_up(0.0, 10, 1) == 0.5
    assert p_up(4.0, 3, 1) == pytest.approx(1 / (1 + math.exp(-4.0 * 0.5)))
    assert p_up(4.0, 1, 3) == pytest.approx(1 / (1 + math.exp(2.0)))


def test_mid_moves_are_whole_half_ticks_that_do_not_depend_on_the_side() -> None:
    """Every mid change is a multiple of half a tick and the top 10 ticks of each side stay occupied."""
    model = MarketModel(["BTC-USD"], seed=3, depth=200, now_ns=START)
    pm = model.products["BTC-USD"]
    mids = []
    for i in range(5000):
        model.step(START + i * 1000)
        bb, _, ba, _ = pm.book.top()
        assert bb is not None and ba is not None
        mids.append(bb + ba)
        assert all(bb - d in pm.book.bids and ba + d in pm.book.asks for d in range(10))
    moves = np.diff(np.array(mids))
    assert (moves != 0).sum() > 300
    up, down = (moves > 0).sum(), (moves < 0).sum()
    assert abs(up - down) < 4 * math.sqrt(up + down)  # a fair coin: within 4 sigma
    assert BID == 0 and ASK == 1


def _z(h: dict) -> float:
    return (h["auc"] - 0.5) / h["se_h0"]


def test_zero_signal_oracle_is_within_noise_of_one_half() -> None:
    """With signal 0 the oracle's AUC is 0.5 within 4 standard errors at 1 s (labels over disjoint
    seconds are independent fair coins, so the H0 formula holds) and within 4*sqrt(k) standard errors
    at a k-second horizon (k consecutive labels share moves, about n/k independent ones)."""
    oracle = _oracle(0.0)
    for label, k in (("1s", 1), ("10s", 10), ("60s", 60)):
        h = oracle["horizons"][label]
        assert h["rows"] > 1000, h
        assert abs(h["auc"] - 0.5) <= 4 * h["se_h0"] * math.sqrt(k), (label, h)


def test_planted_signal_gives_skill_that_grows_with_it() -> None:
    """With signal 0.25 and 1 the 1 s oracle AUC is far above 0.5 (> 6 SE) and larger for the larger signal."""
    weak, strong = (_oracle(s)["horizons"]["1s"] for s in (0.25, 1.0))
    assert _z(weak) > 6 and _z(strong) > 6
    assert strong["auc"] - weak["auc"] > 3 * math.sqrt(2) * weak["se_h0"]


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    """Two runs with one seed and start write identical segments and oracle; another seed differs."""
    kw = {"products": ["BTC-USD", "ETH-USD"], "span_ns": 20 * S, "start_ns": START, "depth": 100}
    a = write_raw(tmp_path / "a", seed=4, **kw)  # type: ignore[arg-type]
    b = write_raw(tmp_path / "b", seed=4, **kw)  # type: ignore[arg-type]
    write_raw(tmp_path / "c", seed=5, **kw)  # type: ignore[arg-type]
    names = [Path(p).name for p in a.segments]
    assert names == [Path(p).name for p in b.segments] == ["coinbase_20260921T141320Z.jsonl"]
    assert (tmp_path / "a" / names[0]).read_bytes() == (tmp_path / "b" / names[0]).read_bytes()
    assert (tmp_path / "a" / "oracle.json").read_bytes() == (tmp_path / "b" / "oracle.json").read_bytes()
    assert (tmp_path / "a" / names[0]).read_bytes() != (tmp_path / "c" / names[0]).read_bytes()


def test_records_look_like_a_recording(tmp_path: Path) -> None:
    """open and subscribed events, snapshots and acks per subscribe, sequence numbers from 0 without a
    gap, strictly increasing receive and frame times, heartbeats each second, a close record last."""
    res = write_raw(tmp_path, products=["BTC-USD", "ETH-USD"], span_ns=5 * S, start_ns=START, seed=2, depth=50)
    lines = [json.loads(x) for x in Path(res.segments[0]).read_text().splitlines()]
    assert [x.get("event") for x in lines[:2]] == ["open", "subscribed"]
    assert lines[-1]["event"] == "close" and lines[-1]["reason"] == "shutdown"
    assert {x["conn"] for x in lines} == {res.conn}
    assert res.conn.startswith("20260921T141320Z-") and res.conn.endswith("-1")
    frames = [x["msg"] for x in lines if "msg" in x]
    head = [(f["channel"], f["events"][0].get("type")) for f in frames[:9]]
    assert head == [("l2_data", "snapshot"), ("l2_data", "snapshot"), ("subscriptions", None),
                    ("ticker", "snapshot"), ("ticker", "snapshot"), ("subscriptions", None),
                    ("market_trades", "snapshot"), ("market_trades", "snapshot"), ("subscriptions", None)]
    assert frames[9]["channel"] == "subscriptions"
    assert frames[9]["events"][0]["subscriptions"]["heartbeats"] == ["heartbeats"]
    assert [f["sequence_num"] for f in frames] == list(range(len(frames)))
    recv = [x["recv_ns"] for x in lines]
    assert all(a < b for a, b in itertools.pairwise(recv))
    times = [parse_rfc3339_ns(f["timestamp"]) for f in frames]
    assert all(a < b for a, b in itertools.pairwise(times))
    beats = [f for f in frames if f["channel"] == "heartbeats"]
    assert [b["events"][0]["heartbeat_counter"] for b in beats] == [1, 2, 3, 4]
    assert res.frames == len(frames) and res.lines == len(lines)


def test_to_raw_segments_rotate_at_midnight_and_pass_validate(tmp_path: Path) -> None:
    """A run across UTC midnight seals two segments named as collect names them; convert and validate
    find no gap, no silence and every heartbeat."""
    from mktpred.config import load_config
    from mktpred.convert.runner import run_convert
    from mktpred.validate import validate_store

    start = parse_rfc3339_ns("2026-03-01T23:59:30Z")
    raw, pq = tmp_path / "raw", tmp_path / "pq"
    res = write_raw(raw, products=["BTC-USD", "ETH-USD"], span_ns=60 * S, start_ns=start, seed=3, depth=100)
    assert [Path(p).name for p in res.segments] == ["coinbase_20260301T235930Z.jsonl",
                                                    "coinbase_20260302T000000Z.jsonl"]
    assert not list(raw.glob("*.part"))
    cfg = load_config(None, {"paths.raw_dir": raw, "paths.parquet_dir": pq})
    run_convert(cfg)
    report = validate_store(pq, raw_dir=raw)
    failed = [(c.name, c.details) for c in report.checks if c.status != "pass"]
    assert not failed, failed
    sequence = next(c for c in report.checks if c.name == "sequence")
    assert "no gaps" in sequence.details


def test_cli_to_raw_json_and_bad_input(tmp_path: Path) -> None:
    """--to-raw --json prints the documented keys; a bad span, --json without --to-raw and --replay
    with --to-raw are one error line and exit 2."""
    out = tmp_path / "raw"
    res = runner.invoke(app, ["simulate", "--to-raw", str(out), "--span", "10s", "--signal", "0.5", "--depth", "50",
                              "--start", "2026-01-05T10:00:00Z", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert {"raw_dir", "segments", "conn", "start", "end", "span_s", "products", "seed", "rate", "signal", "frames",
            "lines", "bytes", "elapsed_s", "simulated_hours_per_minute", "oracle_path", "oracle"} <= set(doc)
    assert doc["span_s"] == 10 and doc["signal"] == 0.5 and doc["start"] == "2026-01-05T10:00:00Z"
    assert json.loads((out / "oracle.json").read_text()) == doc["oracle"]
    assert set(doc["oracle"]["horizons"]) == {"1s", "10s", "60s"}
    for args in (["--to-raw", str(out), "--span", "soon"], ["--json"],
                 ["--to-raw", str(out), "--replay", str(tmp_path / "x.jsonl")],
                 ["--to-raw", str(out), "--rate", "0"]):
        bad = runner.invoke(app, ["simulate", *args], catch_exceptions=False)
        assert bad.exit_code == 2, (args, bad.output)
        assert bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
