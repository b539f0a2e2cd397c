"""`mktpred features`: the feature table from l2 and trades (the core is :mod:`mktpred.features`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal
from mktpred.config import load_config
from mktpred.errors import UsageError

if TYPE_CHECKING:
    from mktpred.features.build import FeaturesResult


@command("features")
def features_command(
    parquet_dir: Annotated[Path | None, typer.Option(help="The Parquet store.", show_default=False)] = None,
    interval: Annotated[str | None, typer.Option(help="Feature grid, e.g. 100ms or 1s (default: config "
                                                      "features.interval).", show_default=False)] = None,
    horizons: Annotated[str | None, typer.Option(help="Comma-separated label horizons, e.g. 1s,10s,60s "
                                                      "(default: config features.horizons).",
                                                 show_default=False)] = None,
    products: Annotated[str | None, typer.Option(help="Comma-separated product ids (default: all).",
                                                 show_default=False)] = None,
    start: Annotated[str | None, typer.Option(help="First time, e.g. 2026-08-09 or 2026-08-09T21:00:00Z.",
                                              show_default=False)] = None,
    end: Annotated[str | None, typer.Option(help="End time (exclusive).", show_default=False)] = None,
    cross: Annotated[str | None, typer.Option(help="Add this product's lagged ret_1 and ofi_1 to the others "
                                                   "(default: config features.cross).", show_default=False)] = None,
    table: Annotated[str, typer.Option(help="Output table name.")] = "features",
    force: Annotated[bool, typer.Option("--force", help="Recompute days that are up to date too.")] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Compute one feature row per product per grid point (top of book, imbalance, OFI, trade flow,
    returns, volatility) and forward-return labels, into the store's features table.

    Incremental: only days whose inputs changed are recomputed.

    Example: mktpred features --interval 1s --horizons 1s,10s,60s"""
    from mktpred.book import parse_duration
    from mktpred.features import FeatureSpec
    from mktpred.features.build import build_features

    overrides: dict[str, object] = {"paths.parquet_dir": parquet_dir, "features.interval": interval,
                                    "features.cross": cross}
    if horizons is not None:
        overrides["features.horizons"] = [h.strip() for h in horizons.split(",") if h.strip()]
    cfg = load_config(config, overrides)
    f = cfg.features
    try:
        step = parse_duration(f.interval)
    except ValueError as exc:
        raise UsageError(f"--interval: {exc}", where="--interval") from None
    try:
        hs = tuple(parse_duration(h) for h in f.horizons)
        spec = FeatureSpec(step, hs, f.cross or None)
    except ValueError as exc:
        raise UsageError(f"--horizons: {exc}", where="--horizons") from None
    plist = [p.strip() for p in products.split(",") if p.strip()] if products else None
    term = Terminal()
    with term.progress("features") as cb:
        result = build_features(cfg.paths.parquet_dir, spec, products=plist, start=start, end=end, table=table,
                                force=force, compression=cfg.convert.compression,
                                compression_level=cfg.convert.compression_level, progress=cb)
    if as_json:
        term.json(result.to_json())
    else:
        _render(term, result)


def _render(term: Terminal, r: FeaturesResult) -> None:
    rows = [(p.product, ", ".join(p.dates_written) or "-", f"{p.rows:,}", f"{p.invalid_rows:,}")
            for p in r.products]
    term.table(f"features: {r.interval} grid, labels {', '.join(r.horizons) or '-'}",
               ["product", "days written", "rows", "invalid"], rows, to_stdout=True)
    term.info(f"features: {r.rows:,} rows into {r.table} in {r.elapsed_s:.2f} s")
