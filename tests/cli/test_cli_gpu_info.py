"""`mktpred gpu-info`: human and --json output, on a machine without a GPU and with a stand-in device."""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

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
