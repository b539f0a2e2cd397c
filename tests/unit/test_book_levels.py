"""The top-N book structure against a plain dict model."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mktpred.book.levels import TopBook


def _model_top(levels: dict[float, float], n: int, bids: bool) -> tuple[list[float], list[float]]:
    prices = sorted(levels, reverse=bids)[:n]
    return prices, [levels[p] for p in prices]


def _load(book: TopBook, bids: dict[float, float], asks: dict[float, float]) -> None:
    is_bid = np.array([True] * len(bids) + [False] * len(asks))
    price = np.array(list(bids) + list(asks), dtype=np.float64)
    size = np.array(list(bids.values()) + list(asks.values()), dtype=np.float64)
    book.load_snapshot(is_bid, price, size)


def test_snapshot_then_updates_known_answer() -> None:
    """A snapshot, a size change, a removal and a new best level give the expected top 3."""
    book = TopBook(3)
    _load(book, {100.0: 1.0, 99.0: 2.0, 98.0: 3.0, 97.0: 4.0}, {101.0: 5.0, 102.0: 6.0})
    assert book.top(3) == ([100.0, 99.0, 98.0], [1.0, 2.0, 3.0], [101.0, 102.0], [5.0, 6.0])
    book.apply([True, True, False, True], [99.0, 100.0, 100.5, 100.0], [2.5, 0.0, 7.0, 9.0])
    # 100 removed then re-added with a new size; a better ask at 100.5 appears.
    assert book.top(3) == ([100.0, 99.0, 98.0], [9.0, 2.5, 3.0], [100.5, 101.0, 102.0], [7.0, 5.0, 6.0])
    book.apply([True], [100.0], [0.0])
    assert book.top(3)[:2] == ([99.0, 98.0, 97.0], [2.5, 3.0, 4.0])
    assert book.best_bid() == 99.0 and book.best_ask() == 100.5 and not book.crossed()


def test_removing_unknown_level_and_empty_sides() -> None:
    """Size 0 for a level that is not there changes nothing; an emptied side reads as empty."""
    book = TopBook(2)
    _load(book, {10.0: 1.0}, {})
    book.apply([True, False], [11.0, 12.0], [0.0, 0.0])
    assert book.top(2) == ([10.0], [1.0], [], [])
    book.apply([True], [10.0], [0.0])
    assert book.top(2) == ([], [], [], [])
    assert book.best_bid() is None and book.best_ask() is None and not book.crossed()


def test_crossed_is_reported_not_fixed() -> None:
    """A bid at or above the best ask makes the book crossed, and both levels stay."""
    book = TopBook(1)
    _load(book, {10.0: 1.0}, {11.0: 1.0})
    book.apply([True], [11.0], [2.0])
    assert book.crossed()
    assert book.top(1) == ([11.0], [2.0], [11.0], [1.0])


def test_refill_after_many_removals_at_the_top() -> None:
    """Removing levels from the top past the band refills it from the full book (46k levels)."""
    book = TopBook(10)
    bids = {float(p): 1.0 + p % 7 for p in range(1, 23_001)}
    asks = {float(p): 2.0 for p in range(30_001, 53_001)}
    _load(book, bids, asks)
    removed = list(range(23_000, 22_000, -1))  # the best 1000 bids, best first
    book.apply([True] * len(removed), [float(p) for p in removed], [0.0] * len(removed))
    for p in removed:
        del bids[float(p)]
    assert book.top(10)[:2] == _model_top(bids, 10, True)
    book.check()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 60), st.sampled_from([0.0, 0.0, 1.0, 2.5, 3.0])),
             max_size=400),
    st.integers(1, 4),
)
def test_matches_dict_model(ops: list[tuple[bool, int, float]], depth: int) -> None:
    """Any update sequence leaves the same top-N as sorting a plain dict (small band: trims and refills)."""
    book = TopBook(depth, band=2)
    bids = {float(p): 1.0 for p in range(0, 30, 2)}
    asks = {float(p): 1.0 for p in range(31, 61, 2)}
    _load(book, bids, asks)
    for i in range(0, len(ops), 7):
        chunk = ops[i:i + 7]
        book.apply([o[0] for o in chunk], [float(o[1]) for o in chunk], [o[2] for o in chunk])
        for is_bid, p, s in chunk:
            side = bids if is_bid else asks
            if s == 0:
                side.pop(float(p), None)
            else:
                side[float(p)] = s
        bp, bs, ap, asz = book.top(depth)
        assert (bp, bs) == _model_top(bids, depth, True)
        assert (ap, asz) == _model_top(asks, depth, False)
        book.check()
