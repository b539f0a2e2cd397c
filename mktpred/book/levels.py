"""The order-book structure: every level in a dict, the best few hundred kept sorted.

A real BTC-USD book has ~46,000 levels, but snapshots only need the best N (N <= 50).  Each side
keeps all its levels in a ``dict`` (price -> size; memory proportional to the book, not to the
history) and a *band*: a sorted list of the best ``band`` prices.  Invariant: when a side is not
``full`` (the band does not hold every level), every level at least as good as the band's worst
price is in the band.  So

* an update to a level outside the band is one dict operation;
* an update inside the band adds or removes one price with ``bisect`` (a few hundred entries);
* top-N is a slice of the band — no sort per snapshot;
* the band is trimmed back when it grows past ``2 * band`` and refilled from the dict
  (``numpy.partition``, O(levels)) only when fewer than N prices are left in it — after hundreds
  of net removals at the top, which is rare.

Bids are kept ascending with the best at the end, asks ascending with the best at the start.
"""

from __future__ import annotations

from bisect import bisect_left, insort

import numpy as np

DEFAULT_BAND = 256


def _best_keys(levels: dict[float, float], k: int, *, largest: bool) -> list[float]:
    """The ``k`` best prices of a side, ascending."""
    n = len(levels)
    if n <= k:
        return sorted(levels)
    a = np.fromiter(levels.keys(), dtype=np.float64, count=n)
    part = np.partition(a, n - k)[n - k:] if largest else np.partition(a, k - 1)[:k]
    part.sort()
    return part.tolist()


class TopBook:
    """One product's book on one connection, with cheap top-N extraction."""

    __slots__ = ("_ab", "_afull", "_bb", "_bfull", "asks", "band", "band_max", "bids", "depth")

    def __init__(self, depth: int, band: int = DEFAULT_BAND) -> None:
        self.depth = depth
        self.band = max(band, 2 * depth)
        self.band_max = 2 * self.band
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self._bb: list[float] = []
        self._ab: list[float] = []
        self._bfull = True
        self._afull = True

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)

    # -- loading and updating ---------------------------------------------------------------------
    def load_snapshot(self, is_bid: np.ndarray, price: np.ndarray, size: np.ndarray) -> None:
        """Replace the whole book by a snapshot's levels (size 0 rows are ignored)."""
        live = size > 0
        b = is_bid & live
        a = ~is_bid & live
        self.bids = dict(zip(price[b].tolist(), size[b].tolist(), strict=True))
        self.asks = dict(zip(price[a].tolist(), size[a].tolist(), strict=True))
        self._refill_bids()
        self._refill_asks()

    def _refill_bids(self) -> None:
        self._bb[:] = _best_keys(self.bids, self.band, largest=True)
        self._bfull = len(self.bids) <= self.band

    def _refill_asks(self) -> None:
        self._ab[:] = _best_keys(self.asks, self.band, largest=False)
        self._afull = len(self.asks) <= self.band

    def apply(self, is_bid: list[bool], price: list[float], size: list[float]) -> None:
        """Apply level updates in order (``size`` 0 removes the level)."""
        bids, asks = self.bids, self.asks
        bb, ab = self._bb, self._ab
        bfull, afull = self._bfull, self._afull
        keep, cap, need = self.band, self.band_max, self.depth
        bpop, apop, find, add = bids.pop, asks.pop, bisect_left, insort
        for b, p, s in zip(is_bid, price, size, strict=True):
            if b:
                if not s:
                    if bpop(p, None) is not None and (bfull or p >= bb[0]):
                        del bb[find(bb, p)]
                        if not bfull and len(bb) < need:
                            self._refill_bids()
                            bfull = self._bfull
                elif p in bids:
                    bids[p] = s
                else:
                    bids[p] = s
                    if bfull or p > bb[0]:
                        add(bb, p)
                        if len(bb) > cap:
                            del bb[:len(bb) - keep]
                            bfull = False
            else:
                if not s:
                    if apop(p, None) is not None and (afull or p <= ab[-1]):
                        del ab[find(ab, p)]
                        if not afull and len(ab) < need:
                            self._refill_asks()
                            afull = self._afull
                elif p in asks:
                    asks[p] = s
                else:
                    asks[p] = s
                    if afull or p < ab[-1]:
                        add(ab, p)
                        if len(ab) > cap:
                            del ab[keep:]
                            afull = False
        self._bfull, self._afull = bfull, afull

    # -- reading ----------------------------------------------------------------------------------
    def top(self, n: int) -> tuple[list[float], list[float], list[float], list[float]]:
        """``(bid_prices, bid_sizes, ask_prices, ask_sizes)`` of the best ``n`` levels, best first."""
        bp = self._bb[:-n - 1:-1]
        ap = self._ab[:n]
        return bp, list(map(self.bids.__getitem__, bp)), ap, list(map(self.asks.__getitem__, ap))

    def best_bid(self) -> float | None:
        return self._bb[-1] if self._bb else None

    def best_ask(self) -> float | None:
        return self._ab[0] if self._ab else None

    def crossed(self) -> bool:
        """Best bid >= best ask (both sides present)."""
        return bool(self._bb) and bool(self._ab) and self._bb[-1] >= self._ab[0]

    def check(self) -> None:
        """Assert the band invariant (tests)."""
        for levels, band, full, largest in ((self.bids, self._bb, self._bfull, True),
                                            (self.asks, self._ab, self._afull, False)):
            assert band == sorted(band)
            if full:
                assert sorted(levels) == band
            else:
                assert len(band) >= min(self.depth, len(levels))
                assert band == _best_keys(levels, len(band), largest=largest)
