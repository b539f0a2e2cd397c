"""`mktpred report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal
from mktpred.config import load_config
from mktpred.wording import plural


@command("report")
def report_command(
    parquet_dir: Annotated[Path | None, typer.Option("--parquet-dir", help="The Parquet store.",
                                                     show_default=False)] = None,
    models_dir: Annotated[Path | None, typer.Option("--models-dir", help="Model directories (paths.models_dir).",
                                                    show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", help="The HTML file to write.")] = Path("report.html"),
    powerbi: Annotated[Path | None, typer.Option(
        "--powerbi", help="Also write Power BI tables (Parquet and CSV, one folder per table) here.",
        show_default=False)] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Write one self-contained HTML report (coverage, market, book audit, features, models) that opens
    offline; sections whose data is absent say so.

    Example: mktpred report --parquet-dir data/parquet --out report.html --powerbi data/powerbi"""
    from mktpred.report import build_report, write_report

    cfg = load_config(config, {"paths.parquet_dir": parquet_dir, "paths.models_dir": models_dir})
    term = Terminal()
    with term.progress("report") as progress:
        report = build_report(cfg.paths.parquet_dir, cfg.paths.models_dir, max_silence_s=cfg.validate.max_silence_s,
                              audit_window_ms=cfg.book.audit_window_ms, audit_threshold=cfg.book.audit_threshold,
                              progress=progress)
        write_report(report, out)
        if powerbi is not None:
            from mktpred.report.powerbi import export_powerbi

            report.powerbi = export_powerbi(cfg.paths.parquet_dir, cfg.paths.models_dir, powerbi)
    if as_json:
        term.json(report.to_dict())
        return
    for s in report.sections:
        state = "" if s.available else f" (absent: {s.reason})"
        term.out.print(f"{s.title}{state}", markup=False, highlight=False, soft_wrap=True)  # paths stay whole
    term.out.print(f"report written to {out} ({report.bytes:,} bytes)", markup=False, highlight=False,
                   soft_wrap=True)
    for table, doc in report.powerbi.items():
        term.out.print(f"powerbi {table}: {plural(doc['written'], 'date')} written, {doc['skipped']} unchanged",
                       markup=False, highlight=False)
