"""Reconnect backoff: first retry within a second, doubling with jitter, capped, reset."""

from __future__ import annotations

import random

from mktpred.collect.backoff import Backoff


def test_first_retry_within_a_second_then_doubling_to_the_cap() -> None:
    """Delays stay in [b/2, b] with b = 1 s (first), 2, 4, 8, then the 10 s cap."""
    b = Backoff(initial_s=1.0, max_s=10.0, rng=random.Random(1))
    bounds = [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    for hi in bounds:
        d = b.next_delay()
        assert hi / 2 <= d <= hi


def test_large_initial_still_retries_within_a_second() -> None:
    """Even with initial_s = 5 the very first retry comes within 1 s."""
    b = Backoff(initial_s=5.0, max_s=30.0)
    assert b.next_delay() <= 1.0
    assert 5.0 <= b.next_delay() <= 10.0


def test_jitter_spreads_delays() -> None:
    """Two clients do not retry in lockstep."""
    delays = {Backoff(0.5, 30.0).next_delay() for _ in range(20)}
    assert len(delays) > 10


def test_reset_starts_over() -> None:
    """After a healthy connection the next delay is short again."""
    b = Backoff(initial_s=0.5, max_s=30.0, rng=random.Random(2))
    for _ in range(8):
        b.next_delay()
    assert b.next_delay() >= 15.0
    b.reset()
    assert b.next_delay() <= 0.5


def test_many_attempts_do_not_overflow() -> None:
    """Thousands of failures in a row stay at the cap."""
    b = Backoff(initial_s=0.5, max_s=30.0)
    for _ in range(5000):
        d = b.next_delay()
    assert 15.0 <= d <= 30.0
