"""Prediction segments: flushed each second, sealed at UTC midnight and at close, leftovers repaired
(an injected wall clock puts midnight a moment away)."""

from __future__ import annotations

from pathlib import Path

from mktpred.serve.segments import PredictionSegments

S = 1_000_000_000
MIDNIGHT = 1_765_065_600 * S  # 2025-12-07T00:00:00Z


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_flush_each_second_rotate_at_midnight_seal_at_close(tmp_path: Path) -> None:
    """Lines reach the .part within a second; past midnight the segment is sealed and the next one is
    named after midnight; close seals it; an empty segment leaves no file."""
    clock = Clock(MIDNIGHT - 2 * S)
    seg = PredictionSegments(tmp_path, clock)
    seg.open()
    part = tmp_path / "predictions_20251206T235958Z.jsonl.part"
    assert seg.path == part
    seg.write(b'{"a":1}\n{"a":2}\n', 2)
    clock.now += S // 2
    seg.tick()
    assert part.read_bytes() == b""  # still buffered: not a second yet
    clock.now += S // 2
    seg.tick()
    assert part.read_bytes() == b'{"a":1}\n{"a":2}\n'
    clock.now = MIDNIGHT + 5
    seg.write(b'{"a":3}\n', 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions_20251206T235958Z.jsonl",
                                                           "predictions_20251207T000000Z.jsonl.part"]
    assert seg.close() == tmp_path / "predictions_20251207T000000Z.jsonl"
    assert (tmp_path / "predictions_20251207T000000Z.jsonl").read_bytes() == b'{"a":3}\n'
    assert seg.lines_total == 3 and len(seg.sealed) == 2
    empty = PredictionSegments(tmp_path / "e", clock)
    empty.open()
    assert empty.close() is None and list((tmp_path / "e").iterdir()) == []


def test_leftover_part_is_trimmed_and_sealed_at_open(tmp_path: Path) -> None:
    """A crash's .part with a torn last line is cut to its whole lines and sealed before a new one opens."""
    (tmp_path / "predictions_20251206T100000Z.jsonl.part").write_bytes(b'{"a":1}\n{"a":')
    (tmp_path / "predictions_20251206T110000Z.jsonl.part").write_bytes(b'{"a":')
    seg = PredictionSegments(tmp_path, Clock(MIDNIGHT))
    seg.open()
    assert (tmp_path / "predictions_20251206T100000Z.jsonl").read_bytes() == b'{"a":1}\n'
    assert not (tmp_path / "predictions_20251206T110000Z.jsonl.part").exists()
    assert not (tmp_path / "predictions_20251206T110000Z.jsonl").exists()
    seg.close()
