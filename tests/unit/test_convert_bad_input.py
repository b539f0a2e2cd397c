"""Bad input: every kind of bad line is quarantined with its line number and counted; the rest converts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mktpred.config import Config
from mktpred.convert.cpu_engine import CpuEngine
from mktpred.convert.records import check_line
from mktpred.convert.runner import run_convert
from mktpred.convert.segment import convert_one, segment_of
from mktpred.errors import TooManyInvalidLines
from mktpred.testing.raw import SynthSpec, generate_lines

STEM = "coinbase_20260809T210548Z"


def l2(seq: int, price: str = "100.5", side: str = "bid", qty: str = "1", ts: str = "2026-08-09T21:05:48.1Z",
       extra: str = "") -> str:
    upd = f'{{"side":"{side}","event_time":"2026-08-09T21:05:48Z","price_level":"{price}","new_quantity":"{qty}"}}'
    return (f'{{"recv_ns":1786309548300000000,"conn":"c1",{extra}"msg":{{"channel":"l2_data","timestamp":"{ts}",'
            f'"sequence_num":{seq},"events":[{{"type":"update","product_id":"BTC-USD","updates":[{upd}]}}]}}}}')


#: (line text, expected reason prefix or None for a good line)
CASES: list[tuple[str, str | None]] = [
    (l2(0), None),
    ('{"recv_ns": 1, "conn": "c1", "msg": {"channel": "l2_data"', "invalid JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"recv_ns":1,"conn":"c1","msg":{"channel":"ticker","timestamp":"2026-08-09T21:05:48Z","events":{"a":1}}}',
     "events is not a list of objects"),
    (l2(4, price="12.3.4"), "price_level is not a number"),
    (l2(5, ts="yesterday"), "timestamp is not an RFC 3339 timestamp"),
    ('{"recv_ns":1786309548300000000,"conn":"c1","raw":"{\\"chan"}', "the collector kept a frame"),
    ("", "empty line"),
    (l2(8, side="sideways"), "level2 side is not bid or offer"),
    (l2(9).replace(',"new_quantity":"1"', ""), "missing new_quantity"),
    ('{"recv_ns":1786309548300000000,"conn":"c1","msg":"hello"}', "msg is not an object"),
    ('{"conn":"c1","msg":{"channel":"l2_data","sequence_num":3,"events":[]}}', "missing timestamp"),
    (l2(12, extra='"conn":"c2",'), "rejected by the cpu engine"),  # a duplicate key: only DuckDB objects
    ('{"channel":"ticker","timestamp":"2026-08-09T21:05:49Z","sequence_num":13,"events":[{"type":"update",'
     '"tickers":[{"product_id":"BTC-USD","price":"100"}]}]}', None),
    (l2(14, price="101"), None),
]


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def test_check_line_reasons() -> None:
    """The Python validator names each kind of bad line (the duplicate key is left to the engine)."""
    for text, reason in CASES:
        got = check_line(text.encode())
        if reason is None or reason.startswith("rejected"):
            assert got is None, text
        else:
            assert got is not None and got.startswith(reason), (text, got)


@pytest.mark.parametrize("allow_direct", [True, False], ids=["direct", "chunked"])
def test_each_bad_line_is_quarantined(tmp_path: Path, allow_direct: bool) -> None:
    """Bad lines land in _quarantine with segment, line number, reason and text; good ones convert."""
    src = tmp_path / "raw" / f"{STEM}.jsonl"
    write(src, [text for text, _ in CASES])
    engine = CpuEngine()
    try:
        res = convert_one(segment_of(src), engine, tmp_path / "store", chunk_bytes=300, compression="zstd",
                          compression_level=3, row_group_rows=100, staging_root=tmp_path / "stage",
                          allow_direct=allow_direct)
    finally:
        engine.close()
    bad = [(i + 1, reason) for i, (_, reason) in enumerate(CASES) if reason is not None]
    assert (res.lines, res.invalid) == (len(CASES), len(bad))
    assert res.mode == "careful"
    q = [json.loads(x) for x in (tmp_path / "store" / "_quarantine" / f"{STEM}.jsonl").read_text().splitlines()]
    assert [r["line"] for r in q] == [n for n, _ in bad]
    for rec, (n, reason) in zip(q, bad, strict=True):
        assert rec["segment"] == src.name
        assert rec["reason"].startswith(reason), rec
        assert rec["text"] == CASES[n - 1][0]
    l2 = pq.read_table(tmp_path / "store" / "l2" / "date=2026-08-09" / f"{STEM}.parquet")
    assert l2.column("seq").to_pylist() == [0, 14]
    assert l2.column("price").to_pylist() == [100.5, 101.0]
    ticker = pq.read_table(tmp_path / "store" / "ticker" / "date=2026-08-09" / f"{STEM}.parquet")
    assert ticker.column("seq").to_pylist() == [13]
    assert ticker.column("volume_24h").to_pylist() == [None]
    assert sum(res.invalid_reasons.values()) == len(bad)


def test_one_bad_line_among_many_keeps_the_rest_in_order(tmp_path: Path) -> None:
    """A bad line in the middle of a large segment costs only that line; order is kept around it."""
    lines = [ln.decode() for ln in generate_lines(SynthSpec(seed=3, snapshot_levels=200), n_lines=3000)]
    lines.insert(1700, l2(10**9, price="NaNaN"))
    src = tmp_path / "raw" / f"{STEM}.jsonl"
    write(src, lines)
    cfg = Config()
    cfg = replace(cfg, paths=replace(cfg.paths, raw_dir=src.parent, parquet_dir=tmp_path / "store"))
    summary = run_convert(cfg, max_invalid=1)
    assert (summary.lines, summary.invalid) == (3001, 1)
    (seg,) = summary.segments
    assert seg.mode in ("careful", "chunked")
    msgs = pq.read_table(tmp_path / "store" / "messages" / "date=2026-08-09" / f"{STEM}.parquet")
    seqs = msgs.column("seq").to_pylist()
    assert seqs == list(range(3000 - 2))  # every frame but the bad one, in order (two lines are events)
    assert summary.rows["messages"] == len(seqs)
    q = json.loads((tmp_path / "store" / "_quarantine" / f"{STEM}.jsonl").read_text())
    assert q["line"] == 1701


def test_too_many_invalid_lines_is_reported(tmp_path: Path) -> None:
    """More quarantined lines than --max-invalid (or the default fraction) raises exit code 1."""
    src = tmp_path / "raw" / f"{STEM}.jsonl"
    write(src, [text for text, _ in CASES])
    cfg = Config()
    cfg = replace(cfg, paths=replace(cfg.paths, raw_dir=src.parent, parquet_dir=tmp_path / "store"))
    summary = run_convert(cfg)
    assert summary.max_invalid == 0 and summary.too_many_invalid
    with pytest.raises(TooManyInvalidLines) as info:
        summary.check()
    assert info.value.exit_code == 1
    run_convert(cfg, force=True, max_invalid=len(CASES)).check()


class _BrokenEngine(CpuEngine):
    """An engine that rejects everything (a bug, not bad data)."""

    def convert_file(self, path: Path):  # type: ignore[no-untyped-def]
        raise RuntimeError("engine bug")
        yield  # pragma: no cover


def test_a_broken_engine_stops_instead_of_quarantining_everything(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines the validator accepts but the engine keeps rejecting end the segment with exit 3."""
    import mktpred.convert.segment as segment_mod
    from mktpred.errors import RuntimeFailure

    monkeypatch.setattr(segment_mod, "MAX_ENGINE_ONLY_REJECTS", 2)
    src = tmp_path / "raw" / f"{STEM}.jsonl"
    write(src, [l2(i) for i in range(6)])
    engine = _BrokenEngine()
    try:
        with pytest.raises(RuntimeFailure, match="rejects lines the validator accepts") as info:
            convert_one(segment_of(src), engine, tmp_path / "store", chunk_bytes=1 << 20, compression="zstd",
                        compression_level=3, row_group_rows=100, staging_root=tmp_path / "stage")
    finally:
        engine.close()
    assert info.value.exit_code == 3
    assert not list((tmp_path / "store").rglob("*.parquet")) and not list((tmp_path / "store").rglob("*.tmp"))


def test_corrupt_compressed_segment_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    """A .jsonl.gz that does not decompress is reported as a failed segment (exit 1); others convert."""
    raw = tmp_path / "raw"
    write(raw / f"{STEM}.jsonl", [l2(0)])
    (raw / "coinbase_20260809T220000Z.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00garbage" * 50)
    cfg = Config()
    cfg = replace(cfg, paths=replace(cfg.paths, raw_dir=raw, parquet_dir=tmp_path / "store"))
    summary = run_convert(cfg)
    assert summary.converted == 1 and summary.failed == 1
    assert summary.failures[0].source.endswith(".jsonl.gz")
    with pytest.raises(Exception) as info:
        summary.check()
    assert getattr(info.value, "exit_code", None) == 1


def _with_recv(line: str, recv: int) -> str:
    return line.replace('"recv_ns":1786309548300000000', f'"recv_ns":{recv}', 1)


#: frame timestamp of l2(): 2026-08-09T21:05:48.1Z
FRAME_NS = 1_786_309_548_100_000_000
DAY_NS = 86_400 * 10**9


@pytest.mark.parametrize("allow_direct", [True, False], ids=["direct", "chunked"])
def test_absurd_recv_ns_is_quarantined_with_a_reason(tmp_path: Path, allow_direct: bool) -> None:
    """recv_ns negative, zero or before 2010 is quarantined (frames and collector events alike); one
    more than a day after the frame's timestamp converts but is counted (recv_ahead); 2010-01-01
    itself and exactly a day later are ordinary."""
    lines = [
        (l2(0), None),
        (_with_recv(l2(1), -5), "recv_ns out of range: -5 is before 2010-01-01"),
        (_with_recv(l2(2), 0), "recv_ns out of range: 0 is before 2010-01-01"),
        (_with_recv(l2(3), 1_262_303_999_999_999_999), "recv_ns out of range: 1262303999999999999 is before"),
        (_with_recv(l2(4), FRAME_NS + DAY_NS + 1), None),
        (_with_recv(l2(5), FRAME_NS + DAY_NS), None),
        ('{"recv_ns":-5,"conn":"c1","event":"open"}', "recv_ns out of range: -5 is before 2010-01-01"),
        ('{"recv_ns":1786309548300000000,"conn":"c1","event":"close"}', None),
        (_with_recv(l2(8), 1_262_304_000_000_000_000), None),
    ]
    for text, reason in lines:
        got = check_line(text.encode())
        assert (got is None) if reason is None else (got is not None and got.startswith(reason)), (text, got)
    src = tmp_path / "raw" / f"{STEM}.jsonl"
    write(src, [text for text, _ in lines])
    engine = CpuEngine()
    try:
        res = convert_one(segment_of(src), engine, tmp_path / "store", chunk_bytes=300, compression="zstd",
                          compression_level=3, row_group_rows=100, staging_root=tmp_path / "stage",
                          allow_direct=allow_direct)
    finally:
        engine.close()
    q = [json.loads(x) for x in (tmp_path / "store" / "_quarantine" / f"{STEM}.jsonl").read_text().splitlines()]
    bad = [(i + 1, reason) for i, (_, reason) in enumerate(lines) if reason is not None]
    assert [(r["line"], r["reason"][: len(reason)]) for r, (_, reason) in zip(q, bad, strict=True)] == bad
    assert (res.lines, res.invalid, res.invalid_reasons) == (len(lines), 4, {"recv_ns out of range": 4})
    assert res.recv_ahead == 1
    l2_table = pq.read_table(tmp_path / "store" / "l2" / "date=2026-08-09" / f"{STEM}.parquet")
    assert l2_table.column("seq").to_pylist() == [0, 4, 5, 8]
    events = pq.read_table(tmp_path / "store" / "events" / "date=2026-08-09" / f"{STEM}.parquet")
    assert events.column("event").to_pylist() == ["close"]


def test_recv_ahead_is_a_counted_warning_in_the_run_summary(tmp_path: Path) -> None:
    """A frame received over a day after its timestamp is converted, and the run says so (note, count)."""
    src = tmp_path / "raw" / f"{STEM}.jsonl"
    write(src, [l2(0), _with_recv(l2(1), FRAME_NS + 3 * DAY_NS), _with_recv(l2(2), FRAME_NS + 2 * DAY_NS)])
    cfg = Config()
    cfg = replace(cfg, paths=replace(cfg.paths, raw_dir=src.parent, parquet_dir=tmp_path / "store"))
    summary = run_convert(cfg)
    summary.check()
    assert (summary.rows["l2"], summary.invalid, summary.recv_ahead) == (3, 0, 2)
    assert summary.to_json()["recv_ahead"] == 2 and summary.to_json()["segments"][0]["recv_ahead"] == 2
    assert summary.notes == [f"{STEM}.jsonl: 2 frame(s) received more than a day after their own timestamp "
                             "(a wrong clock, or a feed replaying past times); converted"]
