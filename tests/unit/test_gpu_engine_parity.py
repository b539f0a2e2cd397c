"""The real cuDF engine against the CPU engine, and the memory monitor, on a real GPU.

Marked ``gpu`` and skipped wherever detection says cuDF is unusable (CI, the development machine).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import zstandard

from mktpred.config import load_config
from mktpred.convert.cpu_engine import CpuEngine
from mktpred.convert.factory import select_engine
from mktpred.convert.gpu_engine import GpuEngine
from mktpred.convert.jobs import SegmentJob
from mktpred.convert.segment import run_job
from mktpred.gpu import GPUMemoryMonitor, detect_gpu
from mktpred.testing.raw import SynthSpec, write_segment
from tests.unit.engine_batches import concat_batches

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def usable_gpu() -> None:
    """Skip the module unless cuDF and a device work here."""
    status = detect_gpu()
    if not status.usable:
        pytest.skip(f"no usable GPU: {status.reason}")


def _compare(path: Path, range_bytes: int | None) -> GpuEngine:
    cfg = load_config()
    cpu = CpuEngine()
    gpu = GpuEngine(cfg, range_bytes=range_bytes)
    try:
        want = concat_batches(list(cpu.convert_file(path)))
        got = concat_batches(list(gpu.convert_file(path)))
    finally:
        cpu.close()
        gpu.close()
    assert sorted(got[0]) == sorted(want[0])
    for name, table in want[0].items():
        assert got[0][name].schema.equals(table.schema), name
        assert got[0][name].equals(table), name
    assert got[1:] == want[1:]
    return gpu


def test_gpu_engine_equals_cpu_on_generated_input(tmp_path: Path) -> None:
    """About 40 MB of generated records read in 4 MiB byte ranges: identical tables, no CPU fallback."""
    path = tmp_path / "coinbase_20260809T210548Z.jsonl"
    write_segment(path, SynthSpec(seed=11), target_bytes=40 * 2**20)
    gpu = _compare(path, 4 * 2**20)
    assert gpu.notes == []


def test_gpu_engine_equals_cpu_on_real_capture(samples_dir: Path, tmp_path: Path) -> None:
    """The real capture, wrapped and bare, with ranges sized from free GPU memory: identical tables."""
    for name in ("records", "frames"):
        src = samples_dir / f"coinbase-advanced-trade-2026-08-09.{name}.jsonl.zst"
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(zstandard.ZstdDecompressor().decompressobj().decompress(src.read_bytes()))
        gpu = _compare(path, None)
        assert gpu.notes == []


def test_gpu_store_equals_cpu_store(tmp_path: Path) -> None:
    """Through run_job, the GPU engine writes the same store as the CPU engine (read back with DuckDB)."""
    seg = tmp_path / "raw" / "coinbase_20260809T210548Z.jsonl"
    write_segment(seg, SynthSpec(seed=5), target_bytes=8 * 2**20)
    cfg = load_config()
    for name in ("cpu", "gpu"):
        res = run_job(SegmentJob(source=str(seg), store_root=str(tmp_path / name), engine=name, config=cfg))
        assert (res.engine, res.invalid) == (name, 0)
    con = duckdb.connect()
    for table in ("l2", "ticker", "trades", "messages"):
        q = "SELECT * FROM read_parquet('{}/{}/*/*.parquet', hive_partitioning=false)"
        a = con.sql(q.format(tmp_path / "cpu", table)).arrow().read_all()
        b = con.sql(q.format(tmp_path / "gpu", table)).arrow().read_all()
        assert a.num_rows and a.equals(b), table


def test_auto_selects_gpu() -> None:
    """Where the GPU is usable, auto picks the GPU engine."""
    engine, why = select_engine("auto", load_config())
    engine.close()
    assert (engine.name, why) == ("gpu", "GPU engine available")


def test_monitor_sees_device_memory() -> None:
    """The monitor samples the real device and sees an allocation of 1 GiB in its peak."""
    import cupy

    with GPUMemoryMonitor("alloc", interval_s=0.01) as mon:
        block = cupy.zeros(2**30, dtype=cupy.uint8)
        cupy.cuda.Device().synchronize()
        mon._sample()  # one sample while the block is certainly alive
        del block
    r = mon.report
    assert r.available and r.samples >= 2
    assert r.peak is not None and r.before is not None and r.peak - r.before >= 2**30 - 64 * 2**20
