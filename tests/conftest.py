"""Shared fixtures: every test runs isolated (temporary cwd, no MKTPRED_* variables, no colour)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES_DIR = REPO_ROOT.parent / "shared" / "samples"


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run each test in an empty working directory with a clean, colourless environment."""
    import os

    workdir = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(workdir)
    for name in list(os.environ):
        if name.startswith("MKTPRED_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TERM", "dumb")
    yield workdir


@pytest.fixture
def samples_dir() -> Path:
    """The real Coinbase capture in ../shared/samples (the test is skipped when it is absent)."""
    if not (SAMPLES_DIR / "coinbase-advanced-trade-2026-08-09.frames.jsonl.zst").is_file():
        pytest.skip("../shared/samples is not present")
    return SAMPLES_DIR
