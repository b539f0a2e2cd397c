"""Every command in the README's ```bash blocks is run here, or skipped with the reason it cannot be.

Each block runs top to bottom in a fresh sandbox: a working directory holding `data/raw` (a sealed
segment recorded from the simulator), `data/parquet` (that segment converted) and
`capture.jsonl.zst` (the same recording, for `--replay`).  `mktpred ...` lines run in this process
through the Typer app; lines with a pipe or another tool run in `bash` with the `mktpred` console
script first on PATH.  Adapted so the suite stays offline and short: `mktpred simulate` gets a free
port and `--duration 0.5` (`simulate --to-raw` runs as written: it ends by itself), `collect --url
ws://127.0.0.1:8765` records an in-process simulator for 1 s, and `mktpred demo` records for 1 s with `--market-span 0` (its model stages run in tests/integration/test_demo.py).  Commands that need Coinbase, a GPU, a Dask cluster, root
or the package index are skipped with their reason; an unknown tool fails the test until it is
classified below.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mktpred.cli.app import app
from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
TIMEOUT = 120.0
#: read-only or sandbox-local tools that are safe to run where they are installed
SAFE_TOOLS = {"df", "du", "ls", "head", "tail", "cat", "jq", "zstd", "wc"}
runner = CliRunner()


@dataclass(frozen=True)
class Example:
    """One command line of a ```bash block."""

    line: int  #: 1-based line number in README.md
    text: str


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class InProcess:
    args: list[str]
    env: dict[str, str]
    expect: int = 0


@dataclass(frozen=True)
class Shell:
    text: str
    expect: int = 0


@dataclass(frozen=True)
class DuckSQL:
    sql: str


Plan = Skip | InProcess | Shell | DuckSQL


def bash_blocks(text: str) -> list[list[Example]]:
    """The command lines of every ```bash block (comment-only and blank lines dropped)."""
    blocks: list[list[Example]] = []
    current: list[Example] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if current is None:
            if stripped == "```bash":
                current = []
            continue
        if stripped.startswith("```"):
            blocks.append(current)
            current = None
        elif stripped and not stripped.startswith("#"):
            current.append(Example(number, stripped))
    return blocks


def _split_env(tokens: list[str]) -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0]):
        name, _, value = tokens.pop(0).partition("=")
        env[name] = value
    return env, tokens


def _set_option(args: list[str], name: str, value: str) -> list[str]:
    """``args`` with ``name value`` replaced, or appended when absent."""
    out = list(args)
    if name in out:
        out[out.index(name) + 1] = value
    else:
        out += [name, value]
    return out


def _gpu_usable() -> bool:
    from mktpred.gpu import detect_gpu

    return detect_gpu(None).usable


def plan(part: str) -> Plan:
    """How one command (no ``&&``) is exercised here."""
    tokens = shlex.split(part, comments=True)
    env, tokens = _split_env(tokens)
    tool = tokens[0] if tokens else ""
    if tool == "pip":
        return Skip("installs from the package index; this environment is already installed")
    if tool == "pytest":
        return Skip("runs the test suite, i.e. this very run")
    if tool in ("ruff", "mypy"):
        return Skip("the lint step of the development setup (CI runs it separately)")
    if tool in ("sudo", "journalctl", "systemctl"):
        return Skip("manages a system service (root, systemd)")
    if tool == "nvidia-smi":
        return Skip("the NVIDIA driver's own tool")
    if (tool.startswith("python") and tokens[1:3] == ["-m", "venv"]) or tool in (".", "source"):
        return Skip("creates or activates a virtual environment; this one is already set up")
    if tool in ("python", "python3") and tokens[1] == "-c":
        return Shell(shlex.join([sys.executable, *tokens[1:]]))  # the Python mktpred is installed in
    if tool == "duckdb":
        if shutil.which("duckdb"):
            return Shell(part)
        assert tokens[1] == "-c", part
        return DuckSQL(tokens[2])  # no DuckDB CLI here: the same SQL through the Python module
    if tool != "mktpred":
        if tool not in SAFE_TOOLS:
            raise AssertionError(f"unclassified README command {part!r}: add a rule to {__file__}")
        missing = [t for t in SAFE_TOOLS if re.search(rf"(^|\|)\s*{t}\b", part) and not shutil.which(t)]
        return Skip(f"{', '.join(missing)} not installed") if missing else Shell(part)
    if "|" in tokens:
        missing = [t for t in tokens if t in SAFE_TOOLS and not shutil.which(t)]
        if missing:
            return Skip(f"{', '.join(missing)} not installed")
        if tokens[1] == "demo":
            part = re.sub(r"--seconds \d+", "--seconds 1", part).replace("mktpred demo", "mktpred demo --market-span 0", 1)
        return Shell(part)
    args = tokens[1:]
    command = args[0] if args else ""
    if command == "collect":
        url = args[args.index("--url") + 1] if "--url" in args else ""
        if not url.startswith("ws://127.0.0.1"):
            return Skip("connects to the real Coinbase WebSocket (network)")
        return InProcess(_set_option(args, "--duration", "1"), env)  # the URL is set when it runs
    if command == "simulate" and "--to-raw" in args:
        return InProcess(args, env)  # simulated time at full speed: it ends by itself
    if command == "simulate":
        args = _set_option(args, "--duration", "0.5")
        return InProcess(_set_option(args, "--port", "0") if "--port" in args else args,
                         {**env, "MKTPRED_SIMULATE_PORT": "0"})
    if command == "demo":
        if "--with-faults" in args:
            return Skip("run with --seconds 6 by tests/integration/test_demo.py::"
                        "test_demo_with_faults_recovers_and_validate_reports_the_gaps")
        # the model stages (an hour of simulated market) run once, in tests/integration/test_demo.py
        return InProcess(_set_option(_set_option(args, "--seconds", "1"), "--market-span", "0"), env)
    if "--scheduler" in args and not args[args.index("--scheduler") + 1].startswith("local"):
        return Skip("needs a running Dask cluster")
    if command == "gpu-info" and "--watch" in args:
        return Skip("refreshes until Ctrl-C (tests/cli/test_cli_gpu_info.py drives it with a stand-in NVML)")
    if command == "convert" and "--engine" in args and args[args.index("--engine") + 1] == "gpu":
        return InProcess(args, env, expect=0 if _gpu_usable() else 3)
    return InProcess(args, env)


def _build(root: Path) -> None:
    """data/raw with one sealed segment from the simulator, data/parquet converted, a replay file."""
    import zstandard

    from mktpred.collect import CollectSettings, run_collect
    from mktpred.config import load_config
    from mktpred.convert.runner import run_convert
    from mktpred.simulate import SimulatedExchange

    raw = root / "data" / "raw"
    with SimulatedExchange(products=["BTC-USD", "ETH-USD"], rate=200.0, seed=3, depth=200) as sim:
        run_collect(CollectSettings(url=sim.url, products=("BTC-USD", "ETH-USD"),
                                    channels=("level2", "ticker", "market_trades"), raw_dir=raw,
                                    duration_s=1.5, flush_interval_s=0.2))
    run_convert(load_config(None, {"paths.raw_dir": raw, "paths.parquet_dir": root / "data" / "parquet"}))
    segment = next(raw.glob("*.jsonl"))
    (root / "capture.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(segment.read_bytes()))


@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the sandbox path, a pristine copy of it).  Built once; each block gets the pristine copy
    back at the *same* path, because the manifest records raw segments by absolute path."""
    base = tmp_path_factory.mktemp("readme")
    sandbox, pristine = base / "sandbox", base / "pristine"
    _build(sandbox)
    shutil.copytree(sandbox, pristine)  # copy2: sizes and mtimes kept, so the store stays up to date
    return sandbox, pristine


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose `mktpred` is the console script beside this Python (or `python -m mktpred`)."""
    script = Path(sys.executable).with_name("mktpred")
    if script.is_file():
        return script.parent
    shim_dir = tmp_path_factory.mktemp("bin")
    shim = shim_dir / "mktpred"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mktpred "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    return shim_dir


def _run_in_process(step: InProcess, example: Example, monkeypatch: pytest.MonkeyPatch) -> None:
    from mktpred.simulate import SimulatedExchange

    args = step.args
    with monkeypatch.context() as m:
        for name, value in step.env.items():
            m.setenv(name, value)
        if args[0] == "collect":
            with SimulatedExchange(products=["BTC-USD", "ETH-USD"], rate=200.0, seed=4, depth=100) as sim:
                result = runner.invoke(app, _set_option(args, "--url", sim.url), catch_exceptions=False)
        else:
            result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == step.expect, (example, result.output)
    if step.expect:
        assert result.stderr.startswith("error: "), (example, result.stderr)
    if args[0] == "simulate" and "--to-raw" not in args:
        assert result.stdout.startswith("ws://127.0.0.1:"), (example, result.output)


def _run_shell(step: Shell, example: Example, sandbox: Path, bin_dir: Path) -> None:
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run(["bash", "-o", "pipefail", "-c", step.text], cwd=sandbox, env=env, capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert res.returncode == step.expect, (example, res.stdout[-2000:], res.stderr[-2000:])


def _parts(example: Example) -> Iterator[str]:
    """The commands of one line, split at top-level ``&&``."""
    yield from (p.strip() for p in example.text.split(" && "))


BLOCKS = [b for b in bash_blocks(README.read_text()) if b]


@pytest.mark.parametrize("block", BLOCKS, ids=[f"L{b[0].line}-{' '.join(b[0].text.split()[:2])}" for b in BLOCKS])
def test_readme_bash_block(block: list[Example], sandboxes: tuple[Path, Path], bin_dir: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Each command of the block exits as documented, run in order in a fresh sandbox."""
    sandbox, pristine = sandboxes
    shutil.rmtree(sandbox)
    shutil.copytree(pristine, sandbox)
    monkeypatch.chdir(sandbox)
    ran, skipped = 0, []
    for example in block:
        for part in _parts(example):
            step = plan(part)
            if isinstance(step, Skip):
                skipped.append(f"line {example.line} `{part}`: {step.reason}")
            elif isinstance(step, InProcess):
                _run_in_process(step, example, monkeypatch)
                ran += 1
            elif isinstance(step, Shell):
                _run_shell(step, example, sandbox, bin_dir)
                ran += 1
            else:
                import duckdb

                assert duckdb.sql(step.sql).fetchall(), example
                ran += 1
    if not ran:
        pytest.skip("; ".join(skipped))
    for s in skipped:
        print("skipped:", s)


def test_every_readme_command_is_classified() -> None:
    """A command added to the README without a way to run or skip it here fails this test."""
    for block in BLOCKS:
        for example in block:
            for part in _parts(example):
                assert isinstance(plan(part), (Skip, InProcess, Shell, DuckSQL)), example


def test_quick_start_is_exactly_the_two_setup_commands() -> None:
    """Quick start shows the virtual environment first, then two commands: install + `mktpred demo`,
    and install dev tools + `pytest`; the console script and the dev extra they rely on exist."""
    text = README.read_text()
    quick = text[text.index("## Quick start"):]
    block = bash_blocks(quick)[0]
    assert [e.text for e in block] == ["python3 -m venv .venv && . .venv/bin/activate",
                                       "pip install -e . && mktpred demo", "pip install -e '.[dev]' && pytest"]
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["mktpred"] == "mktpred.cli.app:main"
    assert any(dep.startswith("pytest") for dep in project["optional-dependencies"]["dev"])
    assert any(c.name == "demo" for c in app.registered_commands)
