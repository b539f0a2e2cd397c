"""Purged walk-forward folds: ``folds + 1`` consecutive time blocks; fold k trains on blocks < k
(or the last ``window`` of them) and tests on block k, with a purge gap before each test block."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mktpred.coinbase.timestamps import format_iso_ns
from mktpred.errors import DataError

NS_PER_S = 1_000_000_000
#: the longest feature lookback (rv_300s)
LOOKBACK_S = 300


def parse_span(text: str, where: str = "--window") -> int:
    """Durations for spans and windows: ``7d``, ``36h`` and everything ``parse_duration`` takes (ns)."""
    from mktpred.book.table import parse_duration

    t = text.strip()
    if t.endswith("d") and t[:-1].replace(".", "", 1).isdigit():
        return round(float(t[:-1]) * 86_400 * NS_PER_S)
    return parse_duration(t, where)


def purge_ns(horizon_ns: int, lookback_s: int = LOOKBACK_S) -> int:
    """The gap between the last training row and a test block: the label horizon plus the lookback."""
    return horizon_ns + lookback_s * NS_PER_S


@dataclass(frozen=True)
class Fold:
    fold: int
    train_start: int    # ns, inclusive
    train_end: int      # ns, exclusive (= test_start - purge)
    test_start: int     # ns, inclusive
    test_end: int       # ns, exclusive
    purge_s: float

    def train_mask(self, t: np.ndarray) -> np.ndarray:
        return (t >= self.train_start) & (t < self.train_end)

    def test_mask(self, t: np.ndarray) -> np.ndarray:
        return (t >= self.test_start) & (t < self.test_end)

    def to_json(self, rows_train: int, rows_test: int) -> dict[str, object]:
        d: dict[str, object] = asdict(self)
        for k in ("train_start", "train_end", "test_start", "test_end"):
            d[k] = format_iso_ns(int(d[k]))  # type: ignore[call-overload]
        d["rows_train"] = rows_train
        d["rows_test"] = rows_test
        return d


def walk_forward(times: np.ndarray, folds: int, purge: int, window: int | None = None) -> list[Fold]:
    """The folds over the span of ``times`` (ns); raises :class:`DataError` when the span is too
    short to leave training rows before the first test block."""
    lo, hi = int(times.min()), int(times.max()) + 1
    edges = [lo + (hi - lo) * i // (folds + 1) for i in range(folds + 2)]
    out = []
    for k in range(1, folds + 1):
        train_end = edges[k] - purge
        train_start = lo if window is None else max(lo, train_end - window)
        if train_end <= lo:
            raise DataError(f"span too short: {(hi - lo) / NS_PER_S:.0f} s cut into {folds + 1} blocks leaves "
                            f"no training rows before fold {k} after the {purge / NS_PER_S:.0f} s purge gap")
        out.append(Fold(k, train_start, train_end, edges[k], edges[k + 1], purge / NS_PER_S))
    return out
