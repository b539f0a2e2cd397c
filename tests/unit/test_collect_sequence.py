"""Sequence checks: one counter per connection from 0; gaps, duplicates and late frames told apart."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mktpred.collect.sequence import SequenceChecker, Verdict


def test_in_order_numbers_are_ok() -> None:
    """0, 1, 2, ... is clean."""
    chk = SequenceChecker()
    assert [chk.check(i) for i in range(5)] == [Verdict.OK] * 5
    assert chk.expected == 5 and chk.gaps == chk.duplicates == chk.out_of_order == 0


def test_jump_is_a_gap_with_its_missing_count() -> None:
    """A jump from 3 to 7 is one gap with 3 missing numbers; counting resumes after 7."""
    chk = SequenceChecker()
    for i in range(4):
        chk.check(i)
    assert chk.check(7) is Verdict.GAP
    assert (chk.gaps, chk.missing, chk.expected) == (1, 3, 8)
    assert chk.check(8) is Verdict.OK


def test_first_frame_not_zero_is_a_gap() -> None:
    """The counter starts at 0 on each connection: starting at 2 means 0 and 1 were missed."""
    chk = SequenceChecker()
    assert chk.check(2) is Verdict.GAP and chk.missing == 2


def test_repeat_is_duplicate_and_late_arrival_is_out_of_order() -> None:
    """A number seen before is a duplicate; a missing one arriving late is out of order (once)."""
    chk = SequenceChecker()
    for i in (0, 1, 2, 5):
        chk.check(i)
    assert chk.check(2) is Verdict.DUPLICATE
    assert chk.check(3) is Verdict.OUT_OF_ORDER
    assert chk.check(3) is Verdict.DUPLICATE
    assert chk.check(4) is Verdict.OUT_OF_ORDER
    assert (chk.duplicates, chk.out_of_order, chk.gaps, chk.expected) == (2, 2, 1, 6)


@given(st.lists(st.integers(min_value=0, max_value=60), max_size=80))
def test_every_number_gets_exactly_one_verdict(seqs: list[int]) -> None:
    """Whatever arrives, gaps+ok+late+dup account for every frame and `missing` matches the holes."""
    chk = SequenceChecker()
    ok = sum(chk.check(s) is Verdict.OK for s in seqs)
    assert ok + chk.gaps + chk.duplicates + chk.out_of_order == len(seqs)
    seen: set[int] = set()
    for s in seqs:
        seen.add(s)
    if seqs:
        assert chk.expected == max(seqs) + 1
        assert chk.missing - chk.out_of_order == len(set(range(max(seqs) + 1)) - seen)
