"""`mktpred validate`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal
from mktpred.config import load_config
from mktpred.errors import ValidationFailed

if TYPE_CHECKING:
    from mktpred.validate import ValidationReport

_STYLE = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]fail[/]"}
_LISTED = 10


@command("validate")
def validate_command(
    parquet_dir: Annotated[Path | None, typer.Option("--parquet-dir", help="The Parquet store.",
                                                     show_default=False)] = None,
    raw_dir: Annotated[Path | None, typer.Option(
        "--raw-dir", help="Also check that every sealed raw segment here was converted.", show_default=False)] = None,
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
        _render(term, report)
    if not report.ok:
        names = ", ".join(c.name for c in report.failed)
        n = len(report.failed)
        raise ValidationFailed(f"{n} check{'s' if n > 1 else ''} failed: {names}", where=report.store)


def _render(term: Terminal, report: ValidationReport) -> None:
    rows = sum(report.rows.values())
    term.out.print(f"[bold]{report.store}[/]: {report.files:,} files, {report.bytes / 2**30:,.2f} GiB, "
                   f"{rows:,} rows, checked in {report.elapsed_s:,.1f} s")
    term.table("checks", ["check", "status", "count", "details"],
               [(c.name, _STYLE[c.status.value], c.count or "", c.details) for c in report.checks],
               to_stdout=True)
    if report.coverage:
        cov = Table(title="coverage per product and UTC day", box=None, pad_edge=False,
                    header_style="bold")
        for name, justify in (("product", "left"), ("date", "left"), ("UTC", "left"), ("rows", "right"),
                              ("conns", "right"), ("cover", "right"), ("silences", "left"),
                              ("no hb", "right")):
            cov.add_column(name, justify=justify, no_wrap=name != "silences")  # type: ignore[arg-type]
        for r in report.coverage:
            cov.add_row(r.product, r.date, f"{_hms(r.first_ns, r.date)}-{_hms(r.last_ns, r.date)}", f"{r.rows:,}",
                        str(r.conns), f"{r.coverage:.1%}",
                        f"{r.silences}, max {r.longest_silence_s:,.0f} s" if r.silences else "",
                        f"{r.missing_heartbeat_s:,} s" if r.missing_heartbeat_s else "")
        term.out.print(cov)
    for c in report.checks:
        if c.status.value != "pass" and c.locations:
            more = f" (first {_LISTED} of {c.count})" if c.count > _LISTED else ""
            term.out.print(f"[bold]{c.name}[/] {_STYLE[c.status.value]}{more}:")
            for loc in c.locations[:_LISTED]:
                term.out.print(f"  {loc}", markup=False, highlight=False)
    if report.in_progress:
        term.out.print("[bold]in progress[/]:")
        for line in report.in_progress:
            term.out.print(f"  {line}", markup=False)
    verdict = {"pass": "[green]store OK[/]", "warn": "[yellow]store OK, with warnings[/]",
               "fail": "[bold red]store has problems[/]"}[report.status.value]
    term.out.print(verdict)


def _hms(ns: int, date: str) -> str:
    """``HH:MM:SS`` on ``date``; the next midnight shows as ``24:00:00``."""
    from mktpred.coinbase.timestamps import format_iso_ns

    iso = format_iso_ns(ns)
    return iso[11:19] if iso[:10] == date else "24:00:00"
