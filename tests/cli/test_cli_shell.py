"""The CLI shell: help, version, error mapping."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mktpred import __version__
from mktpred.cli.app import app

SUBCOMMANDS = ["collect", "convert", "csv2parquet", "validate", "gpu-info", "simulate", "demo", "book", "config",
               "features", "train", "evaluate", "retrain", "predict", "report"]

runner = CliRunner()


def test_root_help_lists_every_subcommand() -> None:
    """`mktpred --help` names every subcommand."""
    result = runner.invoke(app, ["--help"], catch_exceptions=False)
    assert result.exit_code == 0
    for name in SUBCOMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help_has_an_example(name: str) -> None:
    """Each subcommand's --help describes it and shows an example invocation of that command."""
    result = runner.invoke(app, [name, "--help"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"mktpred {name}" in result.output or "mktpred config" in result.output
    assert "--config" in result.output


def test_version() -> None:
    """`--version` prints the package version."""
    result = runner.invoke(app, ["--version"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.output.strip() == f"mktpred {__version__}"


def test_console_script_maps_errors_without_traceback(tmp_path) -> None:
    """Through the real console entry point, a bad --config is one line on stderr and exit 2."""
    missing = tmp_path / "nope.toml"
    proc = subprocess.run([sys.executable, "-m", "mktpred", "config", "--config", str(missing)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: config file not found: {missing} (--config)"
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path) -> None:
    """--debug lets the exception through so its traceback is visible."""
    missing = tmp_path / "nope.toml"
    proc = subprocess.run([sys.executable, "-m", "mktpred", "--debug", "config", "--config", str(missing)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "ConfigError" in proc.stderr
