"""Fault spec parsing: the strings of `--fault SPEC` and `parse_fault`."""

from __future__ import annotations

import pytest

from mktpred.errors import UsageError
from mktpred.simulate import FaultSpec, parse_fault


@pytest.mark.parametrize(("spec", "expected"), [
    ("drop:after=100", FaultSpec("drop", after=100, text="drop:after=100")),
    ("drop:every=2.5", FaultSpec("drop", every=2.5, text="drop:every=2.5")),
    ("close:code=4001", FaultSpec("close", code=4001, after=0, text="close:code=4001")),
    ("close:code=1011,after=7", FaultSpec("close", code=1011, after=7, text="close:code=1011,after=7")),
    ("stall:seconds=3", FaultSpec("stall", seconds=3.0, after=0, text="stall:seconds=3")),
    ("gap:every=50,size=3", FaultSpec("gap", every=50.0, size=3, text="gap:every=50,size=3")),
    ("malformed:after=5", FaultSpec("malformed", after=5, text="malformed:after=5")),
    ("duplicate:after=5,times=2", FaultSpec("duplicate", after=5, times=2, text="duplicate:after=5,times=2")),
    ("oversized:mb=8", FaultSpec("oversized", mb=8.0, text="oversized:mb=8")),
    ("slow:delay_ms=20", FaultSpec("slow", delay_ms=20.0, text="slow:delay_ms=20")),
])
def test_valid_specs_parse(spec: str, expected: FaultSpec) -> None:
    """Every documented fault kind parses into the expected FaultSpec."""
    assert parse_fault(spec) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("explode:after=1", "unknown kind 'explode'"),
    ("drop", "exactly one of after=N or every=T"),
    ("drop:after=1,every=2", "exactly one of after=N or every=T"),
    ("drop:after=x", "after must be a number"),
    ("drop:after=1.5", "after must be an integer"),
    ("drop:after=-1", "finite number >= 0"),
    ("close:after=3", "close needs code="),
    ("close:code=1005", "cannot be sent in a close frame"),
    ("gap:every=2.5", "integer"),
    ("slow:delay=3", "slow takes delay_ms, not 'delay'"),
    ("stall:seconds", "expected key=value"),
    ("oversized:mb=0", "mb must be > 0"),
])
def test_invalid_specs_raise_usage_errors(spec: str, message: str) -> None:
    """A bad spec is a UsageError (exit 2) that names the spec and what is wrong."""
    with pytest.raises(UsageError) as info:
        parse_fault(spec)
    assert message in str(info.value)
    assert repr(spec) in str(info.value)
    assert info.value.exit_code == 2


def test_budget_once_unless_times_or_repeating() -> None:
    """after= faults fire once server-wide by default; times=K, times=0 and every= change that."""
    assert parse_fault("drop:after=3").budget == 1
    assert parse_fault("drop:after=3,times=4").budget == 4
    assert parse_fault("drop:after=3,times=0").budget is None
    assert parse_fault("drop:every=1").budget is None
    assert parse_fault("gap:every=10").budget is None
    assert parse_fault("oversized:mb=1").budget is None
