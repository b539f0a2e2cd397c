"""`mktpred convert` and the GPU: engine honesty per segment, and the GPU memory figures.

The GPU engine runs for real except for cuDF's parse, replaced by the PyArrow stand-in reader of
``tests.unit.gpu_standins`` (which can fail like a GPU on one file); device memory comes from the
stand-in NVML of ``tests.unit.test_gpu``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from mktpred.cli.app import app
from mktpred.config import Config
from mktpred.convert import gpu_engine
from mktpred.store.manifest import Manifest
from mktpred.testing.raw import SynthSpec, write_segment
from tests.unit.gpu_standins import ArrowRangeReader
from tests.unit.test_gpu import FakeNvml

runner = CliRunner()
GOOD, BAD = "coinbase_20260809T210548Z", "coinbase_20260810T000000Z"


class StandInGpuEngine(gpu_engine.GpuEngine):
    """The GPU engine with the stand-in reader, which fails like a GPU (a CUDA error) on BAD's file."""

    cpu_converted: ClassVar[list[str]] = []

    def __init__(self, cfg: Config, *, cpu_fallback: bool = False) -> None:
        super().__init__(cfg, cpu_fallback=cpu_fallback, reader=ArrowRangeReader(fail_on_name=f"{BAD}.jsonl"),
                         range_bytes=64 * 1024)
        real = self._cpu.convert_file

        def spy(path: Path):  # type: ignore[no-untyped-def]
            StandInGpuEngine.cpu_converted.append(path.name)
            return real(path)

        self._cpu.convert_file = spy  # type: ignore[method-assign]


@pytest.fixture
def gpu_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make detection say the GPU engine can run, and create the stand-in engine for it."""
    StandInGpuEngine.cpu_converted = []
    monkeypatch.setattr(gpu_engine, "gpu_unavailable_reason", lambda cfg: None)
    monkeypatch.setattr(gpu_engine, "GpuEngine", StandInGpuEngine)


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """Two small segments: GOOD converts on the (stand-in) GPU, BAD makes the GPU fail."""
    raw = tmp_path / "raw"
    for i, stem in enumerate((GOOD, BAD)):
        write_segment(raw / f"{stem}.jsonl", SynthSpec(seed=40 + i, snapshot_levels=60,
                                                       start_ns=1_786_309_548_228_568_804 + i * 86_400 * 10**9),
                      n_lines=300)
    return raw


def convert(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["convert", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_engine_gpu_fails_the_file_the_gpu_cannot_convert(gpu_here: None, raw: Path, tmp_path: Path) -> None:
    """--engine gpu: BAD fails with the GPU's reason (exit 3), GOOD converts on the GPU, nothing runs on the CPU."""
    store = tmp_path / "store"
    code, out, err = convert("--raw-dir", str(raw), "--parquet-dir", str(store), "--engine", "gpu", "--json")
    assert code == 3, err
    doc = json.loads(out)
    assert (doc["engine"], doc["converted"], doc["failed"], doc["engines"]) == ("gpu", 1, 1, {"gpu": 1})
    (failure,) = doc["failures"]
    assert failure["source"] == str(raw / f"{BAD}.jsonl")
    assert failure["error"] == (f"the GPU engine cannot convert {BAD}.jsonl (at byte 0): RuntimeError: "
                                "CUDA error: an illegal memory access was encountered (stand-in)")
    assert [(Path(s["source"]).name, s["engine"], s["engine_notes"]) for s in doc["segments"]] == [
        (f"{GOOD}.jsonl", "gpu", [])]
    assert StandInGpuEngine.cpu_converted == []
    assert list(store.rglob(f"{BAD}.parquet")) == [] and list(store.rglob(f"{GOOD}.parquet"))
    entries = Manifest.load(store).entries
    assert [(Path(k).name, e.engine) for k, e in entries.items()] == [(f"{GOOD}.jsonl", "gpu")]
    assert err.splitlines()[-1].startswith(
        "error: 1 segment(s) could not be converted; first: the GPU engine cannot convert")


def test_auto_fallback_is_reported_per_segment(gpu_here: None, raw: Path, tmp_path: Path) -> None:
    """auto: BAD is converted on the CPU and every report says so: result, summary, --json, notes, manifest."""
    store = tmp_path / "store"
    code, out, err = convert("--raw-dir", str(raw), "--parquet-dir", str(store), "--engine", "auto", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["engine"], doc["engine_reason"], doc["converted"]) == ("gpu", "GPU engine available", 2)
    assert doc["engines"] == {"gpu": 1, "cpu": 1}
    by_name = {Path(s["source"]).name: s for s in doc["segments"]}
    assert by_name[f"{GOOD}.jsonl"]["engine"] == "gpu" and by_name[f"{GOOD}.jsonl"]["engine_notes"] == []
    assert by_name[f"{BAD}.jsonl"]["engine"] == "cpu"
    note = (f"{BAD}.jsonl: converted on the CPU (RuntimeError: CUDA error: an illegal memory access was "
            "encountered (stand-in))")
    assert by_name[f"{BAD}.jsonl"]["engine_notes"] == [note]
    assert doc["notes"] == [note]
    assert StandInGpuEngine.cpu_converted == [f"{BAD}.jsonl"]
    entries = {Path(k).name: e.engine for k, e in Manifest.load(store).entries.items()}
    assert entries == {f"{GOOD}.jsonl": "gpu", f"{BAD}.jsonl": "cpu"}
    # the human summary says it too
    code, _, err = convert("--raw-dir", str(raw), "--parquet-dir", str(tmp_path / "store2"), "--engine", "auto")
    assert code == 0
    text = " ".join(err.split())
    assert f"warning: {note}" in text and "segments by engine that ran: gpu 1, cpu 1" in text


def test_gpu_memory_line_and_json_off_a_terminal(gpu_here: None, raw: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With a device (stand-in NVML), a plain GPU memory line follows progress; --json has the report."""
    fake = FakeNvml(count=1)
    fake.used[0] = 3 * 2**30
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    args = ["--raw-dir", str(raw), "--parquet-dir", str(tmp_path / "store"), "--engine", "auto"]
    code, out, err = convert(*args, "--json")
    assert code == 0, err
    assert "GPU memory: GPU 0 (Fake GPU 0) 3.00 / 80.00 GiB used (4%), peak 3.00 GiB" in err
    mem = json.loads(out)["gpu_memory"]
    assert (mem["available"], mem["device_index"], mem["device_name"]) == (True, 0, "Fake GPU 0")
    assert (mem["before_gib"], mem["peak_gib"], mem["after_gib"], mem["total_gib"]) == (3.0, 3.0, 3.0, 80.0)
    assert mem["samples"] >= 2 and mem["timeline"][0][1] == 3.0
    assert fake.inits == 0  # NVML shut down again


def test_engine_cpu_and_no_gpu_show_no_gpu_memory(raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--engine cpu (even with a device) and a machine without a GPU: no GPU line, report unavailable."""
    fake = FakeNvml(count=1)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    code, out, err = convert("--raw-dir", str(raw), "--parquet-dir", str(tmp_path / "s1"), "--engine", "cpu",
                             "--json")
    assert code == 0 and "GPU memory" not in err
    assert json.loads(out)["gpu_memory"]["available"] is False
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML bindings: as on a machine without a GPU
    code, out, err = convert("--raw-dir", str(raw), "--parquet-dir", str(tmp_path / "s2"), "--engine", "auto",
                             "--json")
    assert code == 0 and "GPU memory" not in err
    mem = json.loads(out)["gpu_memory"]
    assert mem["available"] is False and mem["samples"] == 0
    assert mem["reason"] == "NVML bindings not installed (pip install nvidia-ml-py)"
