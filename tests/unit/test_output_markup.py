"""The output module on a (forced) terminal: text from outside is never Rich markup."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.text import Text

from mktpred.cli.output import Terminal

HOSTILE = "bad [/] and [bold]bold[/bold] and [link=file:///etc]x[/link]"


def _terminal() -> tuple[Terminal, io.StringIO, io.StringIO]:
    term = Terminal()
    err, out = io.StringIO(), io.StringIO()
    term.err = Console(file=err, force_terminal=True, no_color=True, width=300, highlight=False)
    term.out = Console(file=out, force_terminal=True, no_color=True, width=300, highlight=False)
    assert term.interactive
    return term, err, out


@pytest.mark.parametrize("level", ["error", "warn", "info"])
def test_messages_print_markup_verbatim(level: str) -> None:
    """error/warn/info on a terminal print `[/]`, `[bold]` and `[link=...]` literally and do not raise."""
    term, err, _ = _terminal()
    getattr(term, level)(HOSTILE)
    prefix = {"error": "error: ", "warn": "warning: ", "info": ""}[level]
    assert err.getvalue() == f"{prefix}{HOSTILE}\n"


def test_table_cells_title_and_panel_body_are_plain_text() -> None:
    """Table titles and cells and a panel's str body are plain text; a Text cell keeps its style."""
    term, _, out = _terminal()
    term.table(f"title {HOSTILE}", ["key", "value"], [("products", HOSTILE), ("status", Text("pass", "green"))],
               to_stdout=True)
    term.panel(HOSTILE, f"panel {HOSTILE}", to_stdout=True)
    text = out.getvalue()
    assert f"title {HOSTILE}" in text
    assert text.count(HOSTILE) == 4  # title, cell, panel body, panel title
    assert "pass" in text


def test_progress_description_is_plain_text() -> None:
    """A progress bar whose description holds a bracketed path renders it as is."""
    from mktpred.progress import Progress

    term, err, _ = _terminal()
    with term.progress(f"convert {HOSTILE}") as update:
        update(Progress(stage="convert", files_done=1, files_total=1, bytes_done=10, bytes_total=10, rows=5))
    assert f"convert {HOSTILE}" in err.getvalue()


@pytest.mark.parametrize("interactive", [True, False])
def test_errors_and_warnings_stay_one_line_without_escape_sequences(interactive: bool,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A message with a newline, an ANSI escape and a bell is printed as one line with them escaped."""
    evil = "bad\nsecond line \x1b[2J\x1b[31mred\x07 caf\u00e9"
    escaped = "bad\\nsecond line \\x1b[2J\\x1b[31mred\\x07 caf\u00e9"
    if interactive:
        term, err, _ = _terminal()
        term.warn(evil)
        term.error(evil)
        text = err.getvalue()
    else:
        term = Terminal()
        assert not term.interactive
        term.warn(evil)
        term.error(evil)
        text = capsys.readouterr().err
    assert text == f"warning: {escaped}\nerror: {escaped}\n"
