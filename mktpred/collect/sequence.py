"""``sequence_num`` checks: one counter per connection across all channels, starting at 0."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

#: how many recent missing ranges are remembered to tell a late (out-of-order) frame from a duplicate
_MAX_HOLES = 256


class Verdict(Enum):
    OK = "ok"
    GAP = "gap"  # numbers were skipped: ``expected`` .. ``got - 1`` are missing
    DUPLICATE = "duplicate"  # a number seen before
    OUT_OF_ORDER = "out_of_order"  # a number that was missing arrived late


@dataclass
class SequenceChecker:
    """Judges each frame's ``sequence_num`` against the next one due on its connection."""

    expected: int = 0
    gaps: int = 0
    missing: int = 0
    duplicates: int = 0
    out_of_order: int = 0

    def __post_init__(self) -> None:
        self._holes: list[tuple[int, int]] = []  # [start, end) ranges that were skipped

    def check(self, seq: int) -> Verdict:
        """Record ``seq``; the verdict tells the caller what to log. ``expected`` is the number
        that was due before this call when the verdict is not OK."""
        if seq == self.expected:
            self.expected = seq + 1
            return Verdict.OK
        if seq > self.expected:
            self.gaps += 1
            self.missing += seq - self.expected
            self._holes.append((self.expected, seq))
            if len(self._holes) > _MAX_HOLES:
                del self._holes[0]
            self.expected = seq + 1
            return Verdict.GAP
        for i, (start, end) in enumerate(self._holes):
            if start <= seq < end:
                # A late arrival fills (part of) a hole: split the range so a repeat is a duplicate.
                self._holes[i: i + 1] = [r for r in ((start, seq), (seq + 1, end)) if r[0] < r[1]]
                self.out_of_order += 1
                return Verdict.OUT_OF_ORDER
        self.duplicates += 1
        return Verdict.DUPLICATE
