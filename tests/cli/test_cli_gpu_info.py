"""`mktpred gpu-info`: human and --json output, on a machine without a GPU and with a stand-in device."""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mktpred.cli.app import app
from tests.unit.test_gpu import FakeNvml, needs_no_driver

runner = CliRunner()


@needs_no_driver
def test_gpu_info_without_driver_says_why_and_exits_0() -> None:
    """No driver: a plain statement of why, that auto uses the CPU engine, and the stack; exit 0."""
    result = runner.invoke(app, ["gpu-info"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "No usable GPU: no NVIDIA driver (NVML library not found)." in out
    assert "`mktpred convert --engine auto` will use the CPU engine." in out
    assert f"Dask │ {importlib.metadata.version('dask')} │ yes" in out
    assert "cuDF" in out
    assert result.stderr == ""


@needs_no_driver
def test_gpu_info_json_without_driver() -> None:
    """--json is one object with the verdict, the auto engine, no devices and the stack."""
    result = runner.invoke(app, ["gpu-info", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["usable"] is False
    assert doc["reason"] == "no NVIDIA driver (NVML library not found)"
    assert doc["engine_auto"] == "cpu"
    assert doc["devices"] == []
    assert doc["stack"]["distributed"]["version"] == importlib.metadata.version("distributed")
    assert doc["stack"]["distributed"]["importable"] is True
    assert set(doc["stack"]) >= {"cudf", "cupy", "rmm", "dask", "distributed", "dask_cuda"}


def test_gpu_info_force_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """MKTPRED_FORCE_CPU=1 is reported as the reason, still exit 0."""
    monkeypatch.setenv("MKTPRED_FORCE_CPU", "1")
    result = runner.invoke(app, ["gpu-info", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert (doc["usable"], doc["reason"], doc["forced_cpu"]) == (False, "disabled by MKTPRED_FORCE_CPU=1", True)


def test_gpu_info_config_disabled(tmp_path: Path) -> None:
    """[gpu] enabled = false in the --config file is the reason."""
    cfg = tmp_path / "m.toml"
    cfg.write_text("[gpu]\nenabled = false\n")
    result = runner.invoke(app, ["gpu-info", "--config", str(cfg)], catch_exceptions=False)
    assert result.exit_code == 0
    assert "No usable GPU: disabled by configuration (gpu.enabled = false)." in " ".join(result.stdout.split())


def test_gpu_info_bad_config_is_exit_2(tmp_path: Path) -> None:
    """A bad config value is one error line and exit 2, not a traceback."""
    cfg = tmp_path / "m.toml"
    cfg.write_text("[gpu]\nenabled = 'maybe'\n")
    result = runner.invoke(app, ["gpu-info", "--config", str(cfg)], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "gpu.enabled" in result.stderr


def test_gpu_info_lists_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a device (stand-in NVML) the table shows name, compute capability, memory, driver and CUDA."""
    fake = FakeNvml(count=1)
    fake.used[0] = 5 * 2**30
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr("mktpred.gpu.detect._installed", lambda mod: mod in ("dask", "distributed"))
    result = runner.invoke(app, ["gpu-info"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "No usable GPU: cuDF not installed." in out
    assert "│ 0 │ Fake GPU 0 │ 9.0 │ 80.00 │ 5.00 │ 75.00 │ │ 41 │ 555.42.06 │ 12.5 │" in out
    doc = json.loads(runner.invoke(app, ["gpu-info", "--json"], catch_exceptions=False).stdout)
    assert doc["devices"][0]["memory_free_gib"] == 75.0
    assert (doc["driver_version"], doc["cuda_version"]) == ("555.42.06", "12.5")


class CountingNvml(FakeNvml):
    """Stand-in NVML whose device memory grows by 1 GiB at each read; Ctrl-C after ``reads`` reads."""

    def __init__(self, reads: int) -> None:
        super().__init__(count=1)
        self.reads = 0
        self.limit = reads

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        self.reads += 1
        if self.reads > self.limit:
            raise KeyboardInterrupt
        self.used[h] = self.reads * 2**30
        return super().nvmlDeviceGetMemoryInfo(h)


def test_gpu_info_shows_a_memory_bar_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Next to the device table, a memory bar per device with used / total GiB and the share."""
    fake = FakeNvml(count=2)
    fake.used[1] = 20 * 2**30
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr("mktpred.gpu.detect._installed", lambda mod: False)
    result = runner.invoke(app, ["gpu-info"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "│ 0 │ Fake GPU 0 │ " + "░" * 24 + " │ 1.00 / 80.00 (1%) │" in out
    assert "│ 1 │ Fake GPU 1 │ " + "█" * 6 + "░" * 18 + " │ 20.00 / 80.00 (25%) │" in out


def test_gpu_info_watch_refreshes_until_ctrl_c(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--watch refreshes the memory figures at gpu.monitor_interval_s until Ctrl-C: exit 130, one line each."""
    fake = CountingNvml(reads=4)  # 1 read for the table, then 3 refreshes, then Ctrl-C
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr("mktpred.gpu.detect._installed", lambda mod: False)
    cfg = tmp_path / "m.toml"
    cfg.write_text("[gpu]\nmonitor_interval_s = 0.01\n")
    result = runner.invoke(app, ["gpu-info", "--watch", "--config", str(cfg)], catch_exceptions=False)
    assert result.exit_code == 130
    refreshes = [ln for ln in result.stdout.splitlines() if ln.startswith("GPU 0 (Fake GPU 0): ")]
    assert refreshes == [f"GPU 0 (Fake GPU 0): {n}.00 / 80.00 GiB used ({round(100 * n / 80)}%)" for n in (2, 3, 4)]
    assert result.stderr.strip() == "error: interrupted"
    assert fake.inits == 0  # NVML shut down on the way out


def test_gpu_info_watch_without_gpu_and_with_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """--watch with no device says there is nothing to watch (exit 0); with --json it is a usage error."""
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML: no device, on any machine
    result = runner.invoke(app, ["gpu-info", "--watch"], catch_exceptions=False)
    assert result.exit_code == 0 and "warning: nothing to watch: no GPU device" in result.stderr
    result = runner.invoke(app, ["gpu-info", "--watch", "--json"], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --watch shows a live display; it does not combine with --json (--watch)"
