"""`mktpred convert`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal
from mktpred.config import load_config

if TYPE_CHECKING:
    from mktpred.convert.runner import ConvertSummary


@command("convert")
def convert_command(
    raw_dir: Annotated[Path | None, typer.Option("--raw-dir", help="Raw JSONL segments.", show_default=False)] = None,
    parquet_dir: Annotated[Path | None, typer.Option("--parquet-dir", help="The Parquet store.",
                                                     show_default=False)] = None,
    engine: Annotated[str | None, typer.Option("--engine", help="auto, cpu or gpu.", show_default=False)] = None,
    include_latest: Annotated[bool, typer.Option("--include-latest",
                                                 help="Also read .part segments up to their last complete line.")] = False,
    write_csv: Annotated[bool, typer.Option("--write-csv", help="Also write each table as CSV.")] = False,
    csv_dir: Annotated[Path | None, typer.Option("--csv-dir", help="Where --write-csv writes.",
                                                 show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Reconvert segments the manifest has.")] = False,
    max_invalid: Annotated[int | None, typer.Option("--max-invalid", min=0, show_default=False,
                                                    help="Invalid lines allowed before exit 1 "
                                                         "(default: convert.max_invalid_fraction of lines).")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", show_default=False,
                                                  help="Dask scheduler address: one task per segment.")] = None,
    json_out: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Convert sealed raw JSONL segments into the date-partitioned Parquet store.

    Example: mktpred convert --raw-dir data/raw --parquet-dir data/parquet --write-csv"""
    from mktpred.convert.runner import run_convert
    from mktpred.gpu import forced_cpu_reason, gpu_memory

    cfg = load_config(config, {"paths.raw_dir": raw_dir, "paths.parquet_dir": parquet_dir,
                               "paths.csv_dir": csv_dir, "convert.engine": engine})
    term = Terminal()
    # The monitor (and its live panel) runs only where the GPU may be used and NVML sees a device;
    # elsewhere it starts nothing.
    may_use_gpu = cfg.convert.engine != "cpu" and forced_cpu_reason(cfg) is None
    with gpu_memory("convert", cfg, enabled=may_use_gpu) as monitor, \
            term.progress("convert", gpu=monitor) as progress:
        summary = run_convert(cfg, include_latest=include_latest, write_csv=write_csv, force=force,
                              max_invalid=max_invalid, scheduler=scheduler, progress=progress)
    doc = summary.to_json()
    doc["gpu_memory"] = monitor.report.to_dict()
    if json_out:
        term.json(doc)
    else:
        for note in summary.notes:
            term.warn(note)
        term.info(f"engine: {summary.engine} ({summary.engine_reason})")
        if summary.engines and set(summary.engines) != {summary.engine}:
            term.info("segments by engine that ran: " + ", ".join(f"{e} {n}" for e, n in summary.engines.items()))
        if monitor.report.available:
            term.info(f"GPU memory: {monitor.report.summary()}")
        term.table("convert", ["", "value"], [
            ("segments converted", summary.converted), ("segments skipped", summary.skipped),
            ("segments failed", summary.failed),
            *((f"rows {t}", f"{n:,}") for t, n in summary.rows.items()),
            ("invalid lines (this run)", f"{summary.invalid:,}"),
            ("quarantined (all runs)", f"{summary.quarantined_total:,} of {summary.lines_total:,} lines "
                                       f"(allowed {summary.max_invalid:,})"),
            ("truncated lines", summary.truncated), ("seconds", f"{summary.seconds:.2f}"),
            ("rows/s", f"{doc['rows_per_s']:,}"), ("MB/s", doc["mb_per_s"]),
        ])
        term.info(_summary_line(summary))
    summary.check()


def _summary_line(s: ConvertSummary) -> str:
    """One line: what was done, where it went, and what the quarantine holds (also on a re-run)."""
    if s.up_to_date:
        head = f"convert: up to date ({s.skipped} segment(s) unchanged since converted)"
    else:
        head = f"convert: {s.converted} segment(s) converted, {s.skipped} unchanged, {s.failed} failed"
    line = f"{head}; store {s.parquet_dir}"
    if s.quarantined_total:
        files = s.quarantine_files
        line += (f"; {s.quarantined_total:,} line(s) quarantined from {len(s.quarantined)} segment(s) in "
                 f"{Path(s.parquet_dir) / '_quarantine'}" + (f" ({files[0]}{', ...' if len(files) > 1 else ''})"
                                                             if files else ""))
    return line
