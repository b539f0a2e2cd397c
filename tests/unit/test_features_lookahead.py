"""No lookahead, as a property: changing everything after t leaves every non-label column at g <= t bit-identical."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mktpred.features import FeatureEngine, FeatureSpec, add_labels
from mktpred.features.batch import rows_to_table

MS = 1_000_000
T0 = 1_786_000_000_000 * MS
SPEC = FeatureSpec(100 * MS, (100 * MS, 500 * MS))
Event = tuple[str, int, int, Any]  # kind, seq, time, payload


def stream(rng: random.Random, t_from: int, t_to: int, seq0: int, snapshot: bool) -> list[Event]:
    """Random level2 frames, trades and the odd gap between ``t_from`` and ``t_to``."""
    out: list[Event] = []
    seq = seq0
    t = t_from
    if snapshot:
        levels = [(False, 100.0 - i, 1.0 + i) for i in range(8)] + [(True, 101.0 + i, 1.0 + i) for i in range(8)]
        out.append(("snap", seq, t, levels))
    while True:
        t += rng.randrange(1, 120) * MS
        if t >= t_to:
            return out
        seq += rng.randrange(1, 3)
        r = rng.random()
        if r < 0.65:
            lv = [(rng.random() < 0.5, float(rng.randrange(95, 107)) + rng.choice([0.0, 0.5]),
                   rng.choice([0.0, 0.0, 1.0, 2.5, 0.3])) for _ in range(rng.randrange(1, 5))]
            lv = [(ask, p, q) for ask, p, q in lv if (p > 100.5) == ask]  # keep it uncrossed
            out.append(("l2", seq, t, lv))
        elif r < 0.9:
            out.append(("tr", seq, t, [(float(rng.randrange(99, 103)), rng.random(), rng.choice([1, -1, 0]))
                                       for _ in range(rng.randrange(1, 4))]))
        elif r < 0.95:
            out.append(("gap", seq, t, None))
        else:
            out.append(("snap", seq, t, [(False, 100.0, 1.0), (True, 101.0, 1.0)]))


def run(events: list[Event], end: int) -> list[dict[str, Any]]:
    eng = FeatureEngine("P", SPEC)
    rows: list[dict[str, Any]] = []
    for kind, seq, t, pay in events:
        if kind == "gap":
            rows += eng.on_gap("c", t)
        elif kind == "tr":
            rows += eng.on_trades("c", seq, t, False, np.array([p for p, _, _ in pay]),
                                  np.array([q for _, q, _ in pay]), np.array([a for _, _, a in pay], np.int8))
        else:
            rows += eng.on_l2("c", seq, t, kind == "snap", np.array([a for a, _, _ in pay], bool),
                              np.array([p for _, p, _ in pay]), np.array([q for _, _, q in pay]))
    return rows + eng.advance(end)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cut_ms=st.integers(0, 3000), seed2=st.integers(0, 2**32 - 1))
def test_no_lookahead(seed: int, cut_ms: int, seed2: int) -> None:
    """Every frame and trade after t replaced by another random stream: rows at g <= t do not change."""
    end = T0 + 3 * 1000 * MS
    base = stream(random.Random(seed), T0 + 7 * MS, end, 1, True)
    t = T0 + cut_ms * MS
    keep = [e for e in base if e[2] <= t]
    seq = keep[-1][1] if keep else 1
    changed = keep + stream(random.Random(seed2), t + 1, end, seq, not keep)
    a = add_labels(rows_to_table(run(base, end), SPEC), SPEC.interval_ns, SPEC.horizons_ns)
    b = add_labels(rows_to_table(run(changed, end), SPEC), SPEC.interval_ns, SPEC.horizons_ns)
    cols = [c for c in a.column_names if not c.startswith("fwd_")]
    ta = a.column("time").cast("int64").to_numpy()
    tb = b.column("time").cast("int64").to_numpy()
    na, nb = int((ta <= t).sum()), int((tb <= t).sum())
    assert na == nb
    assert a.select(cols).slice(0, na).equals(b.select(cols).slice(0, nb))
