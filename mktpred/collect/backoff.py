"""Reconnect delays: exponential with jitter, capped, reset after a healthy connection."""

from __future__ import annotations

import random

#: the first retry always comes within this many seconds
FIRST_RETRY_MAX_S = 1.0


class Backoff:
    """``next_delay()`` gives ``[b/2, b]`` seconds ("equal jitter") with ``b`` doubling from
    ``initial_s`` (at most 1 s for the first retry) up to ``max_s``; ``reset()`` starts over."""

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def base(self, attempt: int) -> float:
        """The upper bound of the delay before retry number ``attempt`` (0-based)."""
        b = min(self.max_s, self.initial_s * 2.0 ** min(attempt, 64))
        return min(b, FIRST_RETRY_MAX_S) if attempt == 0 else b

    def next_delay(self) -> float:
        b = self.base(self.attempt)
        self.attempt += 1
        return b / 2 + self._rng.uniform(0, b / 2)

    def reset(self) -> None:
        self.attempt = 0
