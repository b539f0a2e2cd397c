"""`mktpred config` and configuration errors through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mktpred.cli.app import app

runner = CliRunner()


def test_config_shows_values_and_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`config --json` shows merged values with default, file and environment sources."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[collect]\nflush_interval_s = 2.5\n[paths]\nraw_dir = "/data/raw"\n')
    monkeypatch.setenv("MKTPRED_COLLECT_STALL_TIMEOUT_S", "7")
    result = runner.invoke(app, ["config", "--config", str(cfg), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["values"]["collect.flush_interval_s"] == 2.5
    assert doc["sources"]["collect.flush_interval_s"] == f"file {cfg}"
    assert doc["values"]["paths.raw_dir"] == "/data/raw"
    assert doc["values"]["collect.stall_timeout_s"] == 7.0
    assert doc["sources"]["collect.stall_timeout_s"] == "env MKTPRED_COLLECT_STALL_TIMEOUT_S"
    assert doc["sources"]["convert.engine"] == "default"


def test_config_table_on_stdout(tmp_path: Path) -> None:
    """Without --json the table lists keys and sources."""
    result = runner.invoke(app, ["config"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "collect.flush_interval_s" in result.stdout
    assert "default" in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[collect]\nflush_interval_s = "fast"\n',
         'collect.flush_interval_s must be a number > 0, got "fast"'),
        ("[collect]\nflush_intervl_s = 1\n", "unknown key 'collect.flush_intervl_s'"),
        ("[colect]\nurl = 'x'\n", "unknown section 'colect'"),
        ("[collect\nurl = 1\n", "invalid TOML"),
        ("[convert]\nengine = 'tpu'\n", 'convert.engine must be one of auto, cpu, gpu, got "tpu"'),
        ("[collect]\nproducts = 'BTC-USD'\n", 'collect.products must be a non-empty list of product ids'),
    ],
)
def test_bad_config_file_is_one_line_and_exit_2(tmp_path: Path, content: str, message: str) -> None:
    """Every kind of bad file gives one `error:` line naming file and key, exit 2, no traceback."""
    cfg = tmp_path / "mktpred.toml"
    cfg.write_text(content)
    result = runner.invoke(app, ["config", "--config", str(cfg)], catch_exceptions=False)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {cfg}")
    assert message in lines[0]
    assert "Traceback" not in result.output


def test_missing_config_file_named_by_option(tmp_path: Path) -> None:
    """--config naming a missing file is exit 2 with the path."""
    result = runner.invoke(app, ["config", "--config", str(tmp_path / "x.toml")], catch_exceptions=False)
    assert result.exit_code == 2
    assert "config file not found" in result.stderr


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad MKTPRED_* value names the variable."""
    monkeypatch.setenv("MKTPRED_CONVERT_CHUNK_ROWS", "lots")
    result = runner.invoke(app, ["config"], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        'error: env MKTPRED_CONVERT_CHUNK_ROWS: convert.chunk_rows must be an integer > 0, got "lots"')


def test_unimplemented_command_exits_3_cleanly() -> None:
    """A command whose issue has not landed says so and exits 3 (never pretends to work)."""
    from mktpred.cli import base

    names = {c.name for c in base.app.registered_commands}
    assert "config" in names


def test_config_masks_credentials_in_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    """`config` (table and --json) never shows the user, password or query of a URL, as collect does."""
    monkeypatch.setenv("MKTPRED_COLLECT_URL", "wss://bob:hunter2@feed.example.com:8443/ws?token=s3cret")
    doc = json.loads(runner.invoke(app, ["config", "--json"], catch_exceptions=False).stdout)
    assert doc["values"]["collect.url"] == "wss://***@feed.example.com:8443/ws?***"
    table = runner.invoke(app, ["config"], catch_exceptions=False, env={"COLUMNS": "400"})
    assert table.exit_code == 0
    assert "wss://***@feed.example.com:8443/ws?***" in table.stdout
    for secret in ("bob", "hunter2", "s3cret"):
        assert secret not in table.stdout and secret not in json.dumps(doc)


def test_non_utf8_config_file_is_exit_2_one_line(tmp_path: Path) -> None:
    """A mktpred.toml that is not UTF-8 is exit 2 with one error line, not a traceback and exit 1."""
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes('[collect]\nproducts = ["BTC-EUR"] # prix en \u20ac\n'.encode("cp1252"))
    result = runner.invoke(app, ["config", "--config", str(cfg)], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr == f"error: {cfg}: not UTF-8 text (byte 43: b'\\x80'); TOML files must be UTF-8\n"


def test_unknown_environment_variable_is_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """MKTPRED_COLLECT_FOO=1 is exit 2 naming the variable, like an unknown key in the file."""
    monkeypatch.setenv("MKTPRED_COLLECT_FOO", "1")
    result = runner.invoke(app, ["config"], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: env MKTPRED_COLLECT_FOO: unknown configuration variable")
    assert result.stderr.count("\n") == 1
