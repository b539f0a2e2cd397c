"""Output that reads well at 80 columns and when piped: tables never cut a word or a path, help shows
flags as flags and the defaults, ``simulate --help`` lists every fault kind, summaries use plurals."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from mktpred.cli.app import app
from mktpred.cli.output import Terminal, fit_widths
from mktpred.cli.views import _panel
from mktpred.collect.status import ChannelStatus, CollectStatus, ConnectionStatus
from mktpred.config import field_help
from mktpred.simulate.faults import FAULT_KINDS, spec_syntax
from mktpred.wording import plural

runner = CliRunner()
WIDTH = 80
#: Rich's mark for a cut cell
CUT = "…"
BOX_LINE = re.compile(r"^[│┃┏┡└╭╰]")


def _console(width: int = WIDTH) -> Console:
    return Console(file=io.StringIO(), width=width, highlight=False)


def _text(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def _flat(text: str) -> str:
    """Help text with the panel's borders dropped and whitespace collapsed (wrapped lines rejoined)."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def _invoke(args: list[str], width: int = WIDTH) -> tuple[int, str]:
    result = runner.invoke(app, args, env={"COLUMNS": str(width)}, catch_exceptions=False)
    return result.exit_code, result.stdout + result.stderr


def _assert_reads_well(output: str, paths: list[Path]) -> None:
    assert CUT not in output, output
    for line in output.splitlines():
        if BOX_LINE.match(line):
            assert len(line) <= WIDTH, line
    for path in paths:
        assert str(path) in output, (path, output)


# -- the fitting rule ---------------------------------------------------------------------------------

def test_fit_widths_hand_computed() -> None:
    """Columns get their natural widths when they fit, share the spare cells by slack when squeezed,
    and no layout is offered when a word would have to be cut."""
    t = Table()  # default box, padding 1 each side: 2 edges + 1 separator + 4 padding = 7 cells
    t.add_column("a")
    t.add_column("b")
    t.add_row("xx yyyy", "zzz")  # column a: longest word 4, line 7; column b: 3
    assert fit_widths(t, 17) == [7, 3]
    assert fit_widths(t, 15) == [5, 3]  # 1 spare cell of 4 slack: a gets 4 + 4 * 1 // 4
    assert fit_widths(t, 14) == [4, 3]
    assert fit_widths(t, 13) is None


def test_a_path_longer_than_the_width_stays_whole() -> None:
    """A key/value table whose path is wider than 80 columns turns vertical and prints the path whole."""
    console = _console()
    path = Path("/tmp") / ("a-long-directory-name-" * 4) / "mktpred-demo-20261206T015820Z" / "parquet"
    Terminal(out=console, err=console).table("summary", ["", "value"], [("store", path), ("total", "4.8 s")],
                                            to_stdout=True)
    out = _text(console)
    assert str(path) in out and CUT not in out
    assert "store  " + str(path) in out


def test_a_wide_table_with_few_rows_is_turned_on_its_side() -> None:
    """Ten columns of two rows do not fit 80 columns: the headers become row labels, nothing is cut."""
    console = _console()
    headers = ["product", "day", "tickers", "same moment", "±0 ms", "±50 ms", "±250 ms", "±500 ms", "no book",
               "invalid"]
    rows = [("BTC-USD", "2026-01-05", "4183", "4183/4183 (100.0%)", "100.0%", "100.0%", "99.9%", "100.0%", "0", "0"),
            ("ETH-USD", "2026-01-05", "4074", "4074/4074 (100.0%)", "100.0%", "98.0%", "100.0%", "100.0%", "0", "1")]
    Terminal(out=console, err=console).table("audit", headers, rows, to_stdout=True)
    lines = _text(console).splitlines()
    assert CUT not in "".join(lines) and all(len(line) <= WIDTH for line in lines)
    head = next(line for line in lines if "product" in line)
    assert "BTC-USD" in head and "ETH-USD" in head
    assert re.search(r"±50 ms\s+│\s+100\.0%\s+│\s+98\.0%", "\n".join(lines))


def test_collect_panel_fits_80_columns() -> None:
    """The live collect panel with two connections and long channel names fits 80 columns, headers whole."""
    channels = tuple(ChannelStatus(name, 123_456, 1_234_567, 1_234.0, 12_345.0)
                     for name in ("level2", "market_trades", "heartbeats", "subscriptions"))
    conns = tuple(ConnectionStatus(slot=i, conn=f"c{i + 1}", products=("BTC-USD",), state="streaming",
                                   frames=1_234_567, raw_frames=1_234_567, rows=9_876_543, bytes_received=987 * 2**20,
                                   frames_per_s=1_234.0, rows_per_s=98_765.0, reconnects=12, gaps=3, missing=0,
                                   duplicates=0, out_of_order=0, stalls=0, last_frame_age_s=12.5, last_error="",
                                   channels=channels) for i in range(2))
    status = CollectStatus(elapsed_s=86_400.0, connections=conns, segment="/data/raw/coinbase_20261206T000000Z.jsonl",
                           bytes_written=5 * 2**30, lines_written=1, segments_sealed=24, buffer_bytes=0,
                           buffer_capacity=256 * 2**20, buffer_peak_bytes=0, buffer_full_events=0,
                           reader_blocked_s=0.0)
    console = _console()
    console.print(_panel(status, WIDTH))
    out = _text(console)
    assert CUT not in out
    assert all(len(line) <= WIDTH for line in out.splitlines())
    for header in ("frames/s", "rows/s", "MiB in", "reconnects", "last frame", "market_trades", "subscriptions",
                   "coinbase_20261206T000000Z.jsonl", "1 line ·"):
        assert header in out, header


def test_progress_bar_figures_whole_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an 80-column terminal the progress bar shows files, bytes, rows and times uncut (without
    the rates that would not fit); a wide one keeps the rates."""
    from mktpred.progress import Progress

    monkeypatch.setenv("TERM", "xterm")  # Rich takes any dumb terminal to be 80 columns wide
    for width, rates in ((WIDTH, False), (160, True)):
        err = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
        with Terminal(err=err, out=err).progress("convert") as progress:
            progress(Progress("convert", 3, 12, 5 * 2**30, 20 * 2**30, 12_345_678))
        last = _text(err).split("\r")[-1]
        assert CUT not in last and "convert 3/12 files" in last and "5.4/21.5 GB" in last
        assert "12,345,678 rows" in last and "-:--:--" in last
        assert ("/s)" in last) is rates


# -- every command's tables on a small store, with paths longer than 80 columns -----------------------

@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Ten simulated minutes under a folder whose paths are wider than the terminal."""
    deep = tmp_path_factory.mktemp("w") / ("a-rather-long-folder-name-" * 3)
    deep.mkdir(parents=True)
    yield deep


def test_the_chain_reads_well_at_80_columns(small_store: Path) -> None:
    """simulate, convert, validate, book --audit and features print no cut cell, keep box lines within
    80 columns and show the full paths they were given."""
    raw, store = small_store / "raw", small_store / "parquet"
    code, out = _invoke(["simulate", "--to-raw", str(raw), "--span", "10m", "--products", "BTC-USD,ETH-USD"])
    assert code == 0, out
    _assert_reads_well(out, [raw, raw / "oracle.json"])
    assert "1 segment)" in out
    code, out = _invoke(["convert", "--raw-dir", str(raw), "--parquet-dir", str(store)])
    assert code == 0, out
    _assert_reads_well(out, [])
    code, out = _invoke(["validate", "--parquet-dir", str(store), "--raw-dir", str(raw)])
    assert code == 0, out
    _assert_reads_well(out, [store])
    assert re.search(r"\b\d+ files, .* GiB, [\d,]+ rows, checked in", out)
    code, out = _invoke(["book", "--parquet-dir", str(store), "--audit"])
    assert code == 0, out
    _assert_reads_well(out, [])
    assert "same moment" in out and "BTC-USD" in out
    code, out = _invoke(["features", "--parquet-dir", str(store)])
    assert code == 0, out
    _assert_reads_well(out, [])
    code, out = _invoke(["report", "--parquet-dir", str(store), "--models-dir", str(small_store / "models"),
                         "--out", str(small_store / "report.html")])
    assert code == 0, out
    _assert_reads_well(out, [small_store / "report.html"])
    code, out = _invoke(["config"])
    assert code == 0, out
    _assert_reads_well(out, [])
    assert "wss://advanced-trade-ws.coinbase.com" in out


def test_demo_summary_reads_well_at_80_columns(small_store: Path) -> None:
    """The demo's validation report and summary, in a folder wider than the terminal, cut nothing and
    show the store, raw and report paths whole."""
    workdir = small_store / "demo"
    code, out = _invoke(["demo", "--market-span", "0", "--seconds", "2", "--workdir", str(workdir)])
    assert code == 0, out
    _assert_reads_well(out, [workdir / "parquet", workdir / "raw", workdir / "report.html"])
    assert "1 sealed segment ->" in out
    assert f"Try the new store (from {workdir}):" in out


# -- help -------------------------------------------------------------------------------------------------

def _command_names() -> list[str]:
    group = typer.main.get_command(app)
    assert hasattr(group, "commands")
    return sorted(group.commands)


@pytest.mark.parametrize("name", _command_names())
def test_help_shows_flags_as_flags(name: str) -> None:
    """Every command's --help at 80 columns shows --json and --help as flags, never `<bool>`."""
    code, out = _invoke([name, "--help"])
    assert code == 0, out
    assert "<bool>" not in out
    assert CUT not in out
    assert re.search(r"│ +--help +-h +Show this message", out), out
    if "--json" in out:
        assert re.search(r"│ +--json +Print", out), out


def test_root_help_shows_flags_as_flags() -> None:
    """`mktpred --help` shows --version and --debug without a type, and one line per command summary."""
    code, out = _invoke(["--help"])
    assert code == 0 and "<bool>" not in out
    flat = _flat(out)
    assert "--version Show the version and exit." in flat


def test_help_shows_defaults_from_the_configuration() -> None:
    """An option whose default comes from the configuration shows that default and its key; a plain
    default shows as Typer's own."""
    defaults = {key: value for key, value, _expect, _help in field_help()}
    flat = _flat(_invoke(["simulate", "--help"])[1])
    assert f"Bind address. [default: {defaults['simulate.host']} (config simulate.host)]" in flat
    assert f"[default: {defaults['simulate.rate']} (config simulate.rate)]" in flat
    assert f"[default: {','.join(defaults['simulate.products'])} (config simulate.products)]" in flat
    assert "[default: 1.0]" in flat  # --speed
    flat = _flat(_invoke(["convert", "--help"])[1])
    assert f"The Parquet store. [default: {defaults['paths.parquet_dir']} (config paths.parquet_dir)]" in flat


@pytest.mark.parametrize("name", _command_names())
def test_a_shown_configuration_key_is_the_one_the_option_overrides(name: str) -> None:
    """Each `(config KEY)` default in a command's help names a key that the command's module passes
    to the configuration (or that the core falls back to: ``x if x is not None else cfg.KEY``), so the
    help does not point at the wrong setting."""
    import importlib

    import mktpred

    out = _flat(_invoke([name, "--help"], width=250)[1])
    module = importlib.import_module(f"mktpred.cli.{name.replace('-', '_')}" if name != "config"
                                     else "mktpred.cli.config_cmd")
    source = Path(str(module.__file__)).read_text()
    package = "".join(p.read_text() for p in Path(mktpred.__file__).parent.rglob("*.py"))
    for key in re.findall(r"\(config ([a-z_.]+)\)\]", out):
        assert f'"{key}"' in source or f"is not None else cfg.{key}" in package, (name, key)


def test_simulate_help_lists_every_fault_kind() -> None:
    """`simulate --help` lists every fault kind the faults module knows, with its keys."""
    flat = _flat(_invoke(["simulate", "--help"])[1])
    assert "--fault SPEC" in flat
    for kind in FAULT_KINDS:
        assert spec_syntax(kind) in flat, kind


def test_spec_syntax_hand_written() -> None:
    """The fault syntax shown in help: required keys, then optional ones in parentheses."""
    assert spec_syntax("close") == "close:code= (after=, times=)"
    assert spec_syntax("drop") == "drop:after=|every= (times=)"
    assert spec_syntax("slow") == "slow:delay_ms="


# -- plurals ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "noun", "expected"), [
    (0, "segment", "0 segments"), (1, "segment", "1 segment"), (2, "sealed segment", "2 sealed segments"),
    (1_200, "entry", "1,200 entries"), (3, "day", "3 days"), (2, "match", "2 matches"), (1, "match", "1 match"),
    (2, "box", "2 boxes"), (2, "child", "2 children"),
])
def test_plural(n: int, noun: str, expected: str) -> None:
    """Counts read as English: singular for one, regular plurals otherwise, a given form when irregular."""
    assert plural(n, noun, "children" if noun == "child" else None) == expected
