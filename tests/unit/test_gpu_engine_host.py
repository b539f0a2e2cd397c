"""The GPU engine's host side, run on a machine without a GPU.

cuDF is replaced by a stand-in range reader (PyArrow's JSON reader with the same nested schema and
the same byte-range rule: a range owns the lines that start after its first byte, up to and
including one that starts at its end), so everything the GPU engine does besides the cuDF call
itself runs for real here: byte-range tiling, out-of-memory halving, falling back to the CPU
engine (under ``auto``) or failing the file (under ``--engine gpu``), conforming the columns, and
building the tables -- which must equal the CPU engine's.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
import zstandard

from mktpred.config import Config, load_config
from mktpred.convert import gpu_engine
from mktpred.convert.cpu_engine import CpuEngine
from mktpred.convert.engine import EngineRejected
from mktpred.convert.factory import select_engine
from mktpred.convert.gpu_engine import RAW_SCHEMA, GpuEngine
from mktpred.convert.jobs import SegmentJob
from mktpred.convert.segment import run_job
from mktpred.errors import EngineFailed, GPUUnavailable
from mktpred.testing.raw import SynthSpec, write_segment
from tests.unit.engine_batches import concat_batches
from tests.unit.gpu_standins import ArrowRangeReader


def _assert_same(a: tuple[dict[str, pa.Table], list[tuple[int, str]], int],
                 b: tuple[dict[str, pa.Table], list[tuple[int, str]], int]) -> None:
    ta, sa, na = a
    tb, sb, nb = b
    assert sorted(ta) == sorted(tb)
    for name in ta:
        assert ta[name].schema.equals(tb[name].schema), name
        assert ta[name].num_rows == tb[name].num_rows, name
        assert ta[name].equals(tb[name]), name
    assert sa == sb
    assert na == nb


def _cpu(path: Path) -> tuple[dict[str, pa.Table], list[tuple[int, str]], int]:
    eng = CpuEngine(threads=1)
    try:
        return concat_batches(list(eng.convert_file(path)))
    finally:
        eng.close()


def _gpu(path: Path, reader: ArrowRangeReader, *, cpu_fallback: bool = False, **kw: int,
         ) -> tuple[tuple[dict[str, pa.Table], list[tuple[int, str]], int], GpuEngine]:
    eng = GpuEngine(Config(), reader=reader, cpu_fallback=cpu_fallback, **kw)
    try:
        return concat_batches(list(eng.convert_file(path))), eng
    finally:
        eng.close()


@pytest.fixture(scope="module")
def synth_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 1.5 MB of generated records: snapshots, updates, tickers, trades, heartbeats, events."""
    path = tmp_path_factory.mktemp("synth") / "coinbase_20260809T210548Z.jsonl"
    write_segment(path, SynthSpec(seed=7, snapshot_levels=2000, resnapshot_every=1500), n_lines=3000)
    return path


def test_host_side_equals_cpu_engine_over_many_ranges(synth_file: Path) -> None:
    """Over 64 KiB ranges (lines straddle every boundary) the tables equal the CPU engine's exactly."""
    reader = ArrowRangeReader()
    got, eng = _gpu(synth_file, reader, range_bytes=64 * 1024)
    want = _cpu(synth_file)
    assert len(reader.calls) > 10
    _assert_same(got, want)
    assert want[0]["l2"].num_rows > 4000 and want[0]["ticker"].num_rows and want[0]["trades"].num_rows
    assert any(k == "event" for _, k in want[1])
    assert eng.notes == []


def test_host_side_equals_cpu_engine_on_real_capture(samples_dir: Path, tmp_path: Path) -> None:
    """The real capture (5 MB snapshot lines, bare and wrapped) gives identical tables through both engines."""
    for name in ("records", "frames"):
        src = samples_dir / f"coinbase-advanced-trade-2026-08-09.{name}.jsonl.zst"
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(zstandard.ZstdDecompressor().decompressobj().decompress(src.read_bytes()))
        got, _ = _gpu(path, ArrowRangeReader(), range_bytes=3 * 2**20)
        want = _cpu(path)
        _assert_same(got, want)
        assert want[0]["l2"].num_rows == 74_193
        assert want[2] == 1030


def test_out_of_memory_halves_the_range_and_says_so(synth_file: Path) -> None:
    """A range too big for the device is halved until it fits; the output is unchanged; notes tell."""
    reader = ArrowRangeReader(oom_above=300 * 1024)
    got, eng = _gpu(synth_file, reader, range_bytes=1024 * 1024, min_range_bytes=64 * 1024)
    _assert_same(got, _cpu(synth_file))
    assert [n.split(": ")[-1] for n in eng.notes] == ["range halved to 512 KiB, retrying",
                                                      "range halved to 256 KiB, retrying"]
    assert "GPU out of memory reading coinbase_20260809T210548Z.jsonl at byte 0" in eng.notes[0]
    assert max(size for _, size in reader.calls[2:]) <= 256 * 1024


def test_gpu_failure_before_output_falls_back_to_cpu_under_auto(synth_file: Path) -> None:
    """auto: a CUDA error before anything was yielded: the CPU engine converts the file and says so."""
    got, eng = _gpu(synth_file, ArrowRangeReader(fail_from_call=1), cpu_fallback=True, range_bytes=64 * 1024)
    _assert_same(got, _cpu(synth_file))
    assert len(eng.notes) == 1 and "converted on the CPU (RuntimeError: CUDA error" in eng.notes[0]
    usage = eng.take_usage()
    assert (usage.engines, usage.label, usage.notes) == (("cpu",), "cpu", tuple(eng.notes))
    assert eng.take_usage().notes == ()  # taken once


def test_out_of_memory_at_the_floor_falls_back_to_cpu_under_auto(synth_file: Path) -> None:
    """auto: out of memory even at the smallest range: the file is converted on the CPU instead."""
    got, eng = _gpu(synth_file, ArrowRangeReader(oom_above=1), cpu_fallback=True, range_bytes=128 * 1024,
                    min_range_bytes=64 * 1024)
    _assert_same(got, _cpu(synth_file))
    assert "converted on the CPU (MemoryError" in eng.notes[-1]


@pytest.mark.parametrize(("reader", "kw", "why"), [
    (ArrowRangeReader(fail_from_call=1), {"range_bytes": 64 * 1024},
     "(at byte 0): RuntimeError: CUDA error: an illegal memory access was encountered (stand-in)"),
    (ArrowRangeReader(fail_from_call=3), {"range_bytes": 64 * 1024},
     "(at byte 131,072): RuntimeError: CUDA error: an illegal memory access"),
    (ArrowRangeReader(oom_above=1), {"range_bytes": 128 * 1024, "min_range_bytes": 64 * 1024},
     "(at byte 0): MemoryError: std::bad_alloc: out_of_memory"),
], ids=["cuda-error-first", "cuda-error-later", "oom-at-floor"])
def test_engine_gpu_never_converts_on_the_cpu(synth_file: Path, reader: ArrowRangeReader, kw: dict[str, int],
                                              why: str) -> None:
    """--engine gpu: a GPU failure is EngineFailed (exit 3) with its reason; the CPU engine never runs."""
    eng = GpuEngine(Config(), reader=reader, cpu_fallback=False, **kw)
    cpu_calls: list[Path] = []
    eng._cpu.convert_file = lambda path: cpu_calls.append(path) or iter(())  # type: ignore[method-assign]
    try:
        with pytest.raises(EngineFailed) as err:
            list(eng.convert_file(synth_file))
    finally:
        eng.close()
    assert str(err.value).startswith(f"the GPU engine cannot convert {synth_file.name} {why}")
    assert err.value.exit_code == 3
    assert cpu_calls == [] and eng.take_usage().engines == ("gpu",)


def test_gpu_failure_after_output_is_a_rejection_under_auto(synth_file: Path) -> None:
    """auto: a failure after batches were yielded raises EngineRejected, so the caller redoes the segment."""
    eng = GpuEngine(Config(), reader=ArrowRangeReader(fail_from_call=3), range_bytes=64 * 1024, cpu_fallback=True)
    try:
        with pytest.raises(EngineRejected, match="GPU engine failed at byte"):
            list(eng.convert_file(synth_file))
    finally:
        eng.close()


def test_bad_lines_are_quarantined_like_the_cpu_engine(tmp_path: Path) -> None:
    """Through run_job, a segment with bad lines gives the same store and quarantine with either engine."""
    raw = tmp_path / "raw"
    seg = raw / "coinbase_20260809T210548Z.jsonl"
    write_segment(seg, SynthSpec(seed=3, snapshot_levels=300), n_lines=400)
    lines = seg.read_bytes().split(b"\n")
    lines[50] = b'{"recv_ns": 1, "conn": "c", "msg": {"channel": "l2_data", "timestamp": "nope"'
    lines[120] = b'{"recv_ns": 1786309548631147008, "conn": "c", "raw": "{not json"}'
    seg.write_bytes(b"\n".join(lines))
    cfg = load_config(overrides={"convert.threads": 1})
    stores = {}
    for name in ("cpu", "gpu"):
        store = tmp_path / f"store-{name}"
        job = SegmentJob(source=str(seg), store_root=str(store), engine="cpu", config=cfg)
        engine = GpuEngine(cfg, reader=ArrowRangeReader(), range_bytes=32 * 1024) if name == "gpu" else None
        result = run_job(job, engine=engine)
        if engine is not None:
            engine.close()
        assert result.invalid == 2, name
        stores[name] = (store, result)
    (cpu_store, cpu_res), (gpu_store, gpu_res) = stores["cpu"], stores["gpu"]
    assert gpu_res.engine == "gpu" and cpu_res.rows == gpu_res.rows
    assert cpu_res.invalid_reasons.keys() == gpu_res.invalid_reasons.keys()
    con = duckdb.connect()
    for table in ("l2", "ticker", "trades", "messages", "events"):
        q = "SELECT * FROM read_parquet('{}/{}/*/*.parquet', hive_partitioning=false)"
        a = con.sql(q.format(cpu_store, table)).arrow().read_all()
        b = con.sql(q.format(gpu_store, table)).arrow().read_all()
        assert a.num_rows and a.equals(b), table


def test_frames_batch_reports_specials_in_cpu_order() -> None:
    """Event records, kept raw frames, frames without channel or timestamp get the CPU engine's labels."""
    rows = [
        {"recv_ns": "1", "conn": "c", "event": "open"},
        {"recv_ns": "2", "conn": "c", "raw": "{oops"},
        {"recv_ns": "3", "conn": "c", "msg": {"timestamp": "2026-08-09T21:05:48Z"}},
        {"recv_ns": "4", "conn": "c", "msg": {"channel": "l2_data", "events": []}},
        {"recv_ns": "5", "conn": "c", "msg": {"channel": "ticker", "timestamp": "2026-08-09T21:05:48Z"}},
        {"recv_ns": "6", "conn": "c", "msg": {"channel": "heartbeats", "timestamp": "2026-08-09T21:05:48Z"}},
        {"channel": "heartbeats"},
    ]
    table = pa.Table.from_pylist(rows, schema=pa.schema([RAW_SCHEMA.field(n) for n in
                                                         ("recv_ns", "conn", "event", "raw", "msg", "channel")]))
    b = gpu_engine.frames_batch(table)
    assert b.column("special").to_pylist() == [
        "event", "the collector kept a frame that is not valid JSON", "frame has no channel",
        "missing timestamp", "data frame has no events", None, "missing timestamp"]
    assert b.column("recv_ns").to_pylist() == [1, 2, 3, 4, 5, 6, None]


def test_frames_batch_rejects_non_integer_sequence() -> None:
    """A sequence_num that is not an integer is rejected (the caller quarantines that line)."""
    table = pa.Table.from_pylist([{"msg": {"channel": "heartbeats", "sequence_num": "1.5"}}],
                                 schema=pa.schema([RAW_SCHEMA.field("msg")]))
    with pytest.raises(EngineRejected):
        gpu_engine.frames_batch(table)


def test_range_bytes_follow_free_memory() -> None:
    """Range = free memory x fraction / 12, within [8 MiB, 512 MiB]; unknown memory gives 64 MiB."""
    mib = 2**20
    assert gpu_engine.range_bytes_for(None, 0.5) == 64 * mib
    assert gpu_engine.range_bytes_for(80 * 2**30, 0.5) == 512 * mib
    assert gpu_engine.range_bytes_for(1200 * mib, 0.5) == 50 * mib
    assert gpu_engine.range_bytes_for(10 * mib, 0.5) == 8 * mib


def test_out_of_memory_recognised() -> None:
    """RMM's MemoryError and CUDA's out-of-memory RuntimeError count as out of memory; others do not."""
    assert gpu_engine.is_out_of_memory(MemoryError("std::bad_alloc"))
    assert gpu_engine.is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not gpu_engine.is_out_of_memory(RuntimeError("CUDA error: illegal address"))


# -- engine selection ---------------------------------------------------------------------------------

@pytest.mark.skipif(gpu_engine.gpu_unavailable_reason(Config()) is None, reason="a usable GPU is present")
def test_auto_selects_cpu_and_says_why() -> None:
    """auto on a machine without a usable GPU picks the CPU engine and gives detection's reason."""
    reason = gpu_engine.gpu_unavailable_reason(Config())
    engine, why = select_engine("auto", Config())
    try:
        assert engine.name == "cpu"
        assert why == f"CPU engine ({reason})"
    finally:
        engine.close()


@pytest.mark.skipif(gpu_engine.gpu_unavailable_reason(Config()) is None, reason="a usable GPU is present")
def test_gpu_requested_without_gpu_is_exit_3() -> None:
    """--engine gpu without a usable GPU raises GPUUnavailable (exit 3) with the reason."""
    with pytest.raises(GPUUnavailable) as err:
        select_engine("gpu", Config())
    assert err.value.exit_code == 3
    assert str(err.value) == f"GPU engine unavailable: {gpu_engine.gpu_unavailable_reason(Config())}"


def test_force_cpu_makes_auto_pick_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """MKTPRED_FORCE_CPU=1: auto picks the CPU engine on any machine, gpu is refused with that reason."""
    monkeypatch.setenv("MKTPRED_FORCE_CPU", "1")
    engine, why = select_engine("auto", Config())
    engine.close()
    assert (engine.name, why) == ("cpu", "CPU engine (disabled by MKTPRED_FORCE_CPU=1)")
    with pytest.raises(GPUUnavailable, match="disabled by MKTPRED_FORCE_CPU=1"):
        select_engine("gpu", Config())


class CUDARuntimeError(RuntimeError):
    """Named like CuPy's error type."""


@pytest.mark.parametrize(("exc", "device"), [
    (MemoryError("std::bad_alloc: out_of_memory"), True),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), True),
    (CUDARuntimeError("cudaErrorInitializationError: initialization error"), True),
    (RuntimeError("no CUDA-capable device is detected"), True),
    (RuntimeError("CUDF failure at: /cudf/cpp/src/io/json/nested_json_gpu.cu:2034: Parser encountered an "
                  "invalid format at location 17"), False),
    (ValueError("JSON parse error: missing a name for object member"), False),
    (EngineRejected("expected an object, got string"), False),
])
def test_device_failures_are_told_from_rejected_input(exc: BaseException, device: bool) -> None:
    """CUDA errors and out-of-memory are the GPU failing; cuDF's parse errors (naming a _gpu.cu file) are the data."""
    assert gpu_engine.is_device_failure(exc) is device


def test_input_cudf_rejects_is_quarantined_under_engine_gpu(tmp_path: Path) -> None:
    """--engine gpu with bad lines: the careful path runs on the GPU engine, bad lines quarantined, all on the GPU."""
    seg = tmp_path / "raw" / "coinbase_20260809T210548Z.jsonl"
    write_segment(seg, SynthSpec(seed=9, snapshot_levels=100), n_lines=200)
    lines = seg.read_bytes().split(b"\n")
    lines[30] = b'{"recv_ns": 1, "conn": "c", "msg": {"channel": "l2_data"'
    seg.write_bytes(b"\n".join(lines))
    cfg = load_config(overrides={"convert.threads": 1})
    reader = ArrowRangeReader()
    engine = GpuEngine(cfg, reader=reader, range_bytes=16 * 1024, cpu_fallback=False)
    cpu_files: list[str] = []
    real = engine._cpu.convert_file
    engine._cpu.convert_file = lambda p: cpu_files.append(p.name) or real(p)  # type: ignore[method-assign]
    try:
        result = run_job(SegmentJob(source=str(seg), store_root=str(tmp_path / "store"), engine="gpu", config=cfg),
                         engine=engine)
    finally:
        engine.close()
    assert (result.engine, result.invalid, result.mode, result.engine_notes) == ("gpu", 1, "careful", [])
    assert cpu_files == [] and len(reader.calls) > 10
