"""`mktpred config`: the effective configuration and where each value came from."""

from __future__ import annotations

from pathlib import Path

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal
from mktpred.config import load_config
from mktpred.redact import redact_text


def _masked(value: object) -> object:
    """The value with credentials in URLs masked (``wss://***@host``), as collect shows them."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _show(value: object) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@command("config")
def config_command(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Print the effective configuration: every key, its value, and where it came from
    (default, file, environment variable).

    Example: MKTPRED_COLLECT_FLUSH_INTERVAL_S=2 mktpred config --config mktpred.toml
    """
    cfg = load_config(config)
    term = Terminal()
    if as_json:
        term.json({
            "file": cfg.file,
            "values": {k: (str(v) if isinstance(v, Path) else _masked(v)) for k, v, _ in cfg.items()},
            "sources": {k: s for k, _, s in cfg.items()},
        })
        return
    title = f"configuration ({cfg.file})" if cfg.file else "configuration (built-in defaults, no file)"
    term.table(title, ["key", "value", "source"], [(k, _show(_masked(v)), s) for k, v, s in cfg.items()],
               to_stdout=True)
