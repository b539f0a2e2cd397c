"""Engine selection, the per-segment job API (picklable, Dask delegation) and the engine contract."""

from __future__ import annotations

import multiprocessing
import pickle
import sys
import types
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mktpred.config import Config
from mktpred.convert.cpu_engine import CpuEngine
from mktpred.convert.factory import select_engine
from mktpred.convert.jobs import SegmentJob, SegmentResult
from mktpred.convert.runner import run_convert
from mktpred.convert.segment import convert_segment
from mktpred.errors import GPUUnavailable, UsageError
from mktpred.store.manifest import Manifest
from mktpred.testing.raw import SynthSpec, write_segment

GPU_MODULE = "mktpred.convert.gpu_engine"


def fake_gpu(reason: str | None) -> types.ModuleType:
    mod = types.ModuleType(GPU_MODULE)

    class GpuEngine(CpuEngine):
        name = "gpu"

        def __init__(self, cfg: Config, *, cpu_fallback: bool = False) -> None:
            super().__init__()
            self.cpu_fallback = cpu_fallback

    mod.GpuEngine = GpuEngine  # type: ignore[attr-defined]
    mod.gpu_unavailable_reason = lambda cfg: reason  # type: ignore[attr-defined]
    return mod


def test_cpu_is_always_available() -> None:
    """--engine cpu gives the CPU engine without looking for a GPU."""
    engine, reason = select_engine("cpu", Config())
    try:
        assert engine.name == "cpu" and "requested" in reason
    finally:
        engine.close()


def test_missing_gpu_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the GPU module: auto falls back to the CPU, gpu is a clear exit-3 error."""
    monkeypatch.setitem(sys.modules, GPU_MODULE, None)  # makes the import fail
    engine, reason = select_engine("auto", Config())
    engine.close()
    assert engine.name == "cpu" and "not part of this installation" in reason
    with pytest.raises(GPUUnavailable) as info:
        select_engine("gpu", Config())
    assert str(info.value).startswith("GPU engine unavailable: ") and info.value.exit_code == 3


def test_gpu_module_reporting_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU module's reason is passed on: auto says why it chose the CPU, gpu fails with it."""
    monkeypatch.setitem(sys.modules, GPU_MODULE, fake_gpu("no NVIDIA driver"))
    engine, reason = select_engine("auto", Config())
    engine.close()
    assert engine.name == "cpu" and "no NVIDIA driver" in reason
    with pytest.raises(GPUUnavailable, match="GPU engine unavailable: no NVIDIA driver"):
        select_engine("gpu", Config())


def test_usable_gpu_module_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the GPU module says it can run, auto and gpu both instantiate its GpuEngine; only auto may fall back."""
    monkeypatch.setitem(sys.modules, GPU_MODULE, fake_gpu(None))
    for requested, fallback in (("auto", True), ("gpu", False)):
        engine, _ = select_engine(requested, Config())
        engine.close()
        assert engine.name == "gpu"
        assert engine.cpu_fallback is fallback  # type: ignore[attr-defined]


def test_unknown_engine_is_a_usage_error() -> None:
    """Anything but auto/cpu/gpu is exit 2."""
    with pytest.raises(UsageError):
        select_engine("tpu", Config())


def _segment(tmp_path: Path, stem: str = "coinbase_20260809T210548Z", seed: int = 1) -> Path:
    p = tmp_path / "raw" / f"{stem}.jsonl"
    write_segment(p, SynthSpec(seed=seed, snapshot_levels=100), n_lines=300)
    return p


def test_convert_segment_runs_in_another_process(tmp_path: Path) -> None:
    """convert_segment and its job pickle, and a spawned worker produces the same result as here."""
    src = _segment(tmp_path)
    job = SegmentJob(source=str(src.resolve()), store_root=str(tmp_path / "a"))
    assert pickle.loads(pickle.dumps(job)) == job
    local = convert_segment(job)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        remote = pool.submit(convert_segment, replace(job, store_root=str(tmp_path / "b"))).result(timeout=120)
    assert isinstance(remote, SegmentResult)
    assert (remote.rows, remote.lines, remote.hash, remote.outputs) == \
        (local.rows, local.lines, local.hash, local.outputs)


def test_scheduler_without_dask_runner_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--scheduler when the Dask runner cannot be imported names the extra to install."""
    _segment(tmp_path)
    monkeypatch.setitem(sys.modules, "mktpred.convert.dask_runner", None)
    cfg = replace(Config(), paths=replace(Config().paths, raw_dir=tmp_path / "raw", parquet_dir=tmp_path / "s"))
    with pytest.raises(UsageError, match=r"pip install -e '\.\[dask\]'"):
        run_convert(cfg, scheduler="tcp://127.0.0.1:1")


def test_scheduler_delegates_jobs_and_driver_keeps_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --scheduler the jobs (engine as requested) stream from stream_on_dask; the driver alone writes
    the manifest, after each result."""
    _segment(tmp_path)
    _segment(tmp_path, "coinbase_20260809T220000Z", seed=2)
    seen: dict[str, Any] = {"manifest_before": []}
    mod = types.ModuleType("mktpred.convert.dask_runner")
    manifest = tmp_path / "s" / "_manifest.json"

    def stream_on_dask(jobs: list[SegmentJob], address: str) -> Iterator[SegmentResult]:
        seen["address"], seen["engines"] = address, {(j.engine, j.cpu_fallback) for j in jobs}
        for j in jobs:
            seen["manifest_before"].append(len(Manifest.load(tmp_path / "s").entries) if manifest.exists() else 0)
            yield convert_segment(j)

    mod.stream_on_dask = stream_on_dask  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mktpred.convert.dask_runner", mod)
    cfg = replace(Config(), paths=replace(Config().paths, raw_dir=tmp_path / "raw", parquet_dir=tmp_path / "s"))
    summary = run_convert(cfg, engine="auto", scheduler="tcp://10.0.0.1:8786")
    assert seen == {"address": "tcp://10.0.0.1:8786", "engines": {("auto", True)}, "manifest_before": [0, 1]}
    assert (summary.engine, summary.converted) == ("auto", 2)
    assert len(Manifest.load(tmp_path / "s").entries) == 2


def _buffer_ranges(arr: Any) -> list[tuple[int, int]]:
    out = [(b.address, b.address + b.size) for b in arr.buffers() if b is not None and b.size]
    return out


def test_engine_output_owns_its_memory(tmp_path: Path) -> None:
    """No output column points into DuckDB's exported batch (that kept whole batches alive and
    made memory grow with the input)."""
    import pyarrow as pa

    from mktpred.convert.cpu_engine import _sql

    src = tmp_path / "seg.jsonl"
    write_segment(src, SynthSpec(seed=4, snapshot_levels=50), n_lines=400)
    engine = CpuEngine()
    try:
        batch = engine.con.sql(_sql(src, None)).arrow().read_next_batch()
        inputs = [r for col in batch.columns for r in _buffer_ranges(col)]
        out = engine.convert_frames(batch)
    finally:
        engine.close()
    assert set(out.tables) == {"l2", "ticker", "trades", "messages"}
    for name, table in out.tables.items():
        for col_name, col in zip(table.column_names, table.columns, strict=True):
            for chunk in col.chunks:
                for lo, hi in _buffer_ranges(chunk):
                    shared = [r for r in inputs if lo < r[1] and r[0] < hi]
                    assert not shared, f"{name}.{col_name} shares memory with the input batch"
        assert isinstance(table, pa.Table)
