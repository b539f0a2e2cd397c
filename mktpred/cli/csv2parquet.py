"""`mktpred csv2parquet`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal
from mktpred.config import load_config


@command("csv2parquet")
def csv2parquet_command(
    inputs: Annotated[list[str], typer.Argument(help="CSV files, directories (recursive: *.csv, *.csv.gz, "
                                                     "*.csv.zst) or glob patterns.", show_default=False)],
    parquet_dir: Annotated[Path | None, typer.Option("--parquet-dir", help="The Parquet store.",
                                                     show_default=False)] = None,
    table: Annotated[str | None, typer.Option("--table", help="Table for generic CSV (required with "
                                                              "--format generic).", show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", help="auto, tardis, mktpred or generic.")] = "auto",
    schema: Annotated[str | None, typer.Option("--schema", metavar="COL=TYPE,...", show_default=False,
                                               help="Generic CSV: column types (string, int64, int32, float64, "
                                                    "bool, date, timestamp, epoch_s/ms/us/ns).")] = None,
    time_column: Annotated[str | None, typer.Option("--time-column", metavar="COL", show_default=False,
                                                    help="Generic CSV: partition by this column's UTC date.")] = None,
    max_invalid: Annotated[int | None, typer.Option("--max-invalid", min=0, show_default=False,
                                                    help="Malformed rows allowed before exit 1 "
                                                         "(default: convert.max_invalid_fraction of lines).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Import again files the manifest has.")] = False,
    json_out: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Import existing CSV data (Tardis, mktpred CSV, any other) into the Parquet store.

    Example: mktpred csv2parquet tardis/*.csv.gz --parquet-dir data/parquet"""
    from mktpred.ingest.csv_import import run_csv2parquet

    cfg = load_config(config, {"paths.parquet_dir": parquet_dir})
    term = Terminal()
    with term.progress("csv2parquet") as progress:
        summary = run_csv2parquet(cfg, inputs, fmt=fmt, table=table, schema=schema, time_column=time_column,
                                  max_invalid=max_invalid, force=force, progress=progress)
    if json_out:
        term.json(summary.to_json())
    else:
        doc = summary.to_json()
        term.table("csv2parquet", ["", "value"], [
            ("files imported", summary.converted), ("files skipped", summary.skipped),
            ("files failed", summary.failed),
            *((f"rows {t}", f"{n:,}") for t, n in summary.rows.items()),
            ("malformed rows", f"{summary.invalid:,} (allowed {summary.max_invalid:,})"),
            ("seconds", f"{summary.seconds:.2f}"), ("rows/s", f"{doc['rows_per_s']:,}"), ("MB/s", doc["mb_per_s"]),
        ])
        for f in summary.failures:
            term.warn(f"{f.source}: {f.error}")
    summary.check()
