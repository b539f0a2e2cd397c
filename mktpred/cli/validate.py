"""`mktpred validate`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal
from mktpred.cli.views import render_validation
from mktpred.config import load_config
from mktpred.errors import ValidationFailed

if TYPE_CHECKING:
    pass



@command("validate")
def validate_command(
    parquet_dir: Annotated[Path | None, typer.Option("--parquet-dir", help="The Parquet store.",
                                                     show_default=False)] = None,
    raw_dir: Annotated[Path | None, typer.Option(
        "--raw-dir", help="Also check that every sealed raw segment here was converted (default: not checked).",
        show_default=False)] = None,
    max_silence: Annotated[float | None, typer.Option(
        "--max-silence", help="Report silences longer than S seconds (default validate.max_silence_s).",
        metavar="S", show_default=False)] = None,
    deep: Annotated[bool, typer.Option(
        "--deep", help="Also re-hash every raw segment (source) against the manifest's content hash.")] = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Check the Parquet store (schema, row counts, nulls, partitions, quarantined lines, sequence
    gaps, clock steps, coverage; with a book table, its files and the audit of the rebuilt top of
    book against the ticker).  Every page of every Parquet file is read with checksum verification.

    Exit 0 when every check passes (warnings allowed), 1 when any fails, 2 when there is no store.

    Example: mktpred validate --parquet-dir data/parquet --raw-dir data/raw --deep"""
    from mktpred.validate import validate_store

    cfg = load_config(config, {"paths.parquet_dir": parquet_dir, "validate.max_silence_s": max_silence})
    term = Terminal()
    with term.progress("validate") as progress:
        report = validate_store(cfg.paths.parquet_dir, raw_dir=raw_dir, max_silence_s=cfg.validate.max_silence_s,
                                audit_window_ms=cfg.book.audit_window_ms,
                                audit_threshold=cfg.book.audit_threshold,
                                max_invalid_fraction=cfg.convert.max_invalid_fraction, deep_check=deep,
                                progress=progress)
    if as_json:
        term.json(report.to_dict())
    else:
        render_validation(term, report)
    if not report.ok:
        names = ", ".join(c.name for c in report.failed)
        n = len(report.failed)
        raise ValidationFailed(f"{n} check{'s' if n > 1 else ''} failed: {names}", where=report.store)
