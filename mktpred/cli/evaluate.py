"""`mktpred evaluate`: score a saved model on a period it has not seen."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal
from mktpred.cli.train import products_list, render_scores
from mktpred.config import load_config


@command("evaluate")
def evaluate_command(
    model: Annotated[Path, typer.Option("--model", help="A version directory, or <models-dir>/<name> "
                                                        "(its current version).")],
    start: Annotated[str | None, typer.Option(help="First time, e.g. 2026-08-09.", show_default=False)] = None,
    end: Annotated[str | None, typer.Option(help="End time (exclusive).", show_default=False)] = None,
    products: Annotated[str | None, typer.Option(help="Comma-separated product ids (default: the model's).",
                                                 show_default=False)] = None,
    allow_overlap: Annotated[bool, typer.Option("--allow-overlap", help="Score a period that overlaps the "
                                                                        "training span (optimistic).")] = False,
    parquet_dir: Annotated[Path | None, typer.Option(help="The Parquet store.", show_default=False)] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Score a saved model (and its prior and imbalance baselines) on the features of a period; a
    period within the training span or its purge gap is refused unless --allow-overlap.

    Example: mktpred evaluate --model data/models/btc10s --start 2026-08-10"""
    from mktpred.models.evaluate import evaluate

    cfg = load_config(config, {"paths.parquet_dir": parquet_dir})
    term = Terminal()
    r = evaluate(model, cfg.paths.parquet_dir, start=start, end=end, products=products_list(products),
                 allow_overlap=allow_overlap)
    for w in r.warnings:
        term.warn(w)
    if as_json:
        term.json(r.to_json())
        return
    target = "return" if "r2" in r.metrics else "direction"
    render_scores(term, f"evaluate {r.name}/{r.version} on {r.span['start']} .. {r.span['end']}", target,
                  [("model", r.metrics), *((b, m) for b, m in r.baselines.items())])
