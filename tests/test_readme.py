"""The README documents every subcommand, every config key and every exit code."""

from __future__ import annotations

import re

from mktpred.cli.app import app
from mktpred.config import field_help
from tests.conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def test_every_subcommand_is_documented() -> None:
    """Each registered subcommand has a `mktpred <name>` mention in the README."""
    names = [c.name for c in app.registered_commands]
    assert len(names) >= 9
    for name in names:
        assert re.search(rf"`mktpred {re.escape(str(name))}[` ]", README), name


def test_every_config_key_is_in_the_reference() -> None:
    """The configuration reference lists every key with its current default and expected values."""
    for key, _, expect, _ in field_help():
        rows = [line for line in README.splitlines() if line.startswith(f"| `{key}` |")]
        assert rows, key
        assert f"| {expect} |" in rows[-1], (key, expect, rows[-1])


def test_exit_codes_are_documented() -> None:
    """0, 1, 2, 3 and 130 appear in the exit-code table."""
    for code in (0, 1, 2, 3, 130):
        assert f"| {code} |" in README
