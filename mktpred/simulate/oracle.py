"""The honesty oracle: how predictable the simulated mid is, measured on the very stream written.

:class:`OracleTracker` samples, per product, the book state on the feature grid exactly as
``mktpred features`` defines it (the state at ``g`` is the book after every l2 frame with
``time <= g``): the mid and the touch imbalance ``imb_1``.  The oracle predictor knows the planted
rule (``P(up) = 1 / (1 + exp(-beta * imb_1))``, monotone in ``imb_1``), so it ranks grid points by
``imb_1(g)``; its skill is the AUC of that score against the direction of ``mid(g+h) - mid(g)``,
rows with no move left out (as ``mktpred train`` does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NS_PER_S = 1_000_000_000


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """The ROC AUC of ``scores`` for binary ``labels`` (Mann-Whitney U with average ranks for ties);
    ``None`` when one class is absent."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n1 = int(y.sum())
    n0 = int(y.size - n1)
    if n1 == 0 or n0 == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranked = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # average ranks over runs of equal scores
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    ends = np.r_[starts[1:], ranked.size]
    avg = (starts + ends + 1) / 2.0  # ranks are 1-based: run [a, b) has ranks a+1..b
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def auc_se_h0(n_up: int, n_down: int) -> float | None:
    """The standard error of the AUC when the score carries no information (Mann-Whitney under
    H0): ``sqrt((n1 + n0 + 1) / (12 * n1 * n0))``."""
    if n_up == 0 or n_down == 0:
        return None
    return math.sqrt((n_up + n_down + 1) / (12.0 * n_up * n_down))


@dataclass
class _Series:
    """One product's grid samples: mid (as bid+ask in ticks, exact) and imb_1 at each grid point."""

    first_g: int | None = None
    mid2: list[int] = field(default_factory=list)
    imb: list[float] = field(default_factory=list)
    state: tuple[int, float] | None = None
    next_g: int = 0


class OracleTracker:
    """Grid samples of every product's book, fed after each l2 frame, and the oracle AUCs."""

    def __init__(self, interval_ns: int = NS_PER_S, horizons_ns: tuple[int, ...] = (NS_PER_S, 10 * NS_PER_S,
                                                                                     60 * NS_PER_S)) -> None:
        if interval_ns <= 0 or any(h <= 0 or h % interval_ns for h in horizons_ns):
            raise ValueError("horizons must be positive multiples of the interval")
        self.interval_ns = interval_ns
        self.horizons_ns = horizons_ns
        self.series: dict[str, _Series] = {}

    def update(self, product: str, time_ns: int, bid: int, bid_size: int, ask: int, ask_size: int) -> None:
        """The book of ``product`` after an l2 frame stamped ``time_ns``: grid points before it get the
        state before it."""
        s = self.series.get(product)
        if s is None:
            s = self.series[product] = _Series()
            iv = self.interval_ns
            s.next_g = -(-time_ns // iv) * iv  # the first grid point at or after the first state
            s.first_g = s.next_g
        else:
            self._emit(s, time_ns)
        total = bid_size + ask_size
        s.state = (bid + ask, (bid_size - ask_size) / total if total else 0.0)

    def _emit(self, s: _Series, before_ns: int) -> None:
        """Sample the current state at every grid point ``g < before_ns`` not sampled yet."""
        if s.state is None or s.next_g >= before_ns:
            return
        n = (before_ns - 1 - s.next_g) // self.interval_ns + 1
        mid2, imb = s.state
        s.mid2.extend([mid2] * n)
        s.imb.extend([imb] * n)
        s.next_g += n * self.interval_ns

    def finish(self, end_ns: int) -> None:
        """The data ends at ``end_ns``: sample the grid points up to and including it."""
        for s in self.series.values():
            self._emit(s, end_ns + 1)

    def result(self) -> dict[str, Any]:
        """Per horizon, pooled over products and per product: AUC, rows, up, down, no_move, and the
        AUC's standard error under no skill."""
        horizons: dict[str, Any] = {}
        for h in self.horizons_ns:
            k = h // self.interval_ns
            pooled_s: list[np.ndarray] = []
            pooled_y: list[np.ndarray] = []
            per_product: dict[str, Any] = {}
            for product, s in sorted(self.series.items()):
                mid2 = np.asarray(s.mid2, dtype=np.int64)
                imb = np.asarray(s.imb, dtype=np.float64)
                if mid2.size <= k:
                    per_product[product] = _summary(np.empty(0), np.empty(0, dtype=bool), 0)
                    continue
                move = mid2[k:] - mid2[:-k]
                moved = move != 0
                score, y = imb[:-k][moved], move[moved] > 0
                per_product[product] = _summary(score, y, int((~moved).sum()))
                pooled_s.append(score)
                pooled_y.append(y)
            score = np.concatenate(pooled_s) if pooled_s else np.empty(0)
            y = np.concatenate(pooled_y) if pooled_y else np.empty(0, dtype=bool)
            no_move = sum(v["no_move"] for v in per_product.values())
            horizons[_label(h)] = {**_summary(score, y, no_move), "products": per_product}
        return {"interval": _label(self.interval_ns), "score": "imb_1", "horizons": horizons}


def _summary(score: np.ndarray, y: np.ndarray, no_move: int) -> dict[str, Any]:
    n_up = int(y.sum())
    n_down = int(y.size - n_up)
    value = auc(score, y)
    se = auc_se_h0(n_up, n_down)
    return {"auc": None if value is None else round(value, 6), "rows": int(y.size), "up": n_up, "down": n_down,
            "no_move": no_move, "se_h0": None if se is None else round(se, 6)}


def _label(ns: int) -> str:
    """``1s``, ``10s``, ``500ms``: the duration spelling of the features table's label columns."""
    if ns % NS_PER_S == 0:
        return f"{ns // NS_PER_S}s"
    if ns % 1_000_000 == 0:
        return f"{ns // 1_000_000}ms"
    return f"{ns}ns"
