"""The validation report model and the interval arithmetic behind coverage."""

from __future__ import annotations

import itertools
import json

from hypothesis import given
from hypothesis import strategies as st

from mktpred.validate.coverage import _merge, _overlap, _subtract
from mktpred.validate.report import (
    MAX_LOCATIONS,
    CheckResult,
    CoverageRow,
    Finding,
    SequenceGap,
    Silence,
    Status,
    ValidationReport,
    worst,
)

T = 1763769600 * 10**9  # 2025-11-22T00:00:00Z


def test_worst_status() -> None:
    """fail > warn > pass; no statuses is pass."""
    assert worst([]) is Status.PASS
    assert worst([Status.PASS, Status.WARN]) is Status.WARN
    assert worst([Status.WARN, Status.FAIL, Status.PASS]) is Status.FAIL


def test_from_findings_pass_and_fail() -> None:
    """No findings pass with the given text; findings take the worst status, fails listed first."""
    ok = CheckResult.from_findings("x", [], checked=3, passed="all good")
    assert (ok.status, ok.count, ok.details, ok.locations) == (Status.PASS, 0, "all good", [])
    res = CheckResult.from_findings("x", [Finding("a", "meh", Status.WARN), Finding("b", "bad")],
                                    checked=2, passed="")
    assert res.status is Status.FAIL and res.count == 2
    assert res.locations == ["b: bad", "a: meh"]
    assert res.details == "b: bad (+1 more)"


def test_locations_are_capped_but_counted() -> None:
    """Thousands of findings keep the exact count and the first MAX_LOCATIONS locations."""
    res = CheckResult.from_findings("x", [Finding(f"f{i}", "bad") for i in range(500)], checked=500, passed="")
    assert res.count == 500 and len(res.locations) == MAX_LOCATIONS


def test_report_status_and_json() -> None:
    """The report's status is its worst check's; to_dict is plain JSON with ISO times."""
    report = ValidationReport(store="/s", raw_dir=None, max_silence_s=5.0)
    report.checks = [CheckResult("a", Status.PASS, 0, ""), CheckResult("b", Status.WARN, 1, "")]
    assert report.ok and report.status is Status.WARN and report.failed == []
    report.gaps = [SequenceGap("c1", 10, 12, T, T + 5 * 10**9, known=False)]
    report.silences = [Silence("BTC-USD", T, T + 7_500_000_000, "between connections")]
    report.coverage = [CoverageRow("BTC-USD", "2025-11-22", T, T + 100 * 10**9, 100.0, 92.5, 10, 2, 1, 7.5, 6)]
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["status"] == "warn" and doc["ok"] is True
    assert doc["gaps"][0] == {"conn": "c1", "first": 10, "last": 12, "missing": 3,
                              "before": "2025-11-22T00:00:00.000000000Z",
                              "after": "2025-11-22T00:00:05.000000000Z", "known": False, "quarantined": 0}
    assert doc["silences"][0]["seconds"] == 7.5
    assert doc["coverage"][0]["coverage"] == 0.925
    report.checks.append(CheckResult("c", Status.FAIL, 1, ""))
    assert not report.ok and [c.name for c in report.failed] == ["c"]


def test_gap_text() -> None:
    """A gap reads as its range, size and the times around it."""
    gap = SequenceGap("c1", 7, 7, None, T, known=True)
    assert gap.text() == "conn c1: seq 7 missing (1) before 2025-11-22T00:00:00.000000000Z [recorded by the collector]"


def test_merge_and_subtract() -> None:
    """Intervals merge across small gaps; holes cut intervals into pieces."""
    assert _merge([(10, 20), (0, 5), (22, 30)], tolerance=2) == [(0, 5), (10, 30)]
    assert _merge([(0, 10), (2, 3)], tolerance=0) == [(0, 10)]
    assert _subtract((0, 100), [(10, 20), (50, 60)]) == [(0, 10), (20, 50), (60, 100)]
    assert _subtract((0, 100), []) == [(0, 100)]
    assert _overlap((0, 10), (5, 20)) == 5 and _overlap((0, 1), (2, 3)) == 0


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 100)), max_size=30), st.integers(0, 20))
def test_merge_properties(raw: list[tuple[int, int]], tolerance: int) -> None:
    """Merged intervals are sorted, separated by more than the tolerance, and cover every input."""
    intervals = [(a, a + n) for a, n in raw]
    merged = _merge(intervals, tolerance)
    for (_, b0), (a1, _) in itertools.pairwise(merged):
        assert a1 - b0 > tolerance
    for a, b in intervals:
        assert any(m0 <= a and b <= m1 for m0, m1 in merged)
