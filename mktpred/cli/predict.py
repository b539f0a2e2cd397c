"""`mktpred predict`: a saved model over the features of a span into the predictions table (the
core is :mod:`mktpred.predict`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal
from mktpred.cli.train import fmt, products_list, render_scores
from mktpred.config import load_config
from mktpred.errors import UsageError
from mktpred.wording import plural

if TYPE_CHECKING:
    from mktpred.predict.batch import PredictResult
    from mktpred.predict.live import ImportResult


@command("predict")
def predict_command(
    model: Annotated[Path | None, typer.Option("--model", help="A version directory, or <models-dir>/<name> "
                                                               "(its current version).", show_default=False)] = None,
    start: Annotated[str | None, typer.Option(help="First time, e.g. 2026-08-09 (default: the first features "
                                                   "row).", show_default=False)] = None,
    end: Annotated[str | None, typer.Option(help="End time (exclusive).", show_default=False)] = None,
    products: Annotated[str | None, typer.Option(help="Comma-separated product ids (default: the model's).",
                                                 show_default=False)] = None,
    import_live: Annotated[bool, typer.Option("--import-live", help="Import serve's sealed prediction segments "
                                                                    "into the table (source live).")] = False,
    predictions_dir: Annotated[Path | None, typer.Option(help="Where serve writes prediction segments "
                                                              "(default: config paths.predictions_dir).",
                                                         show_default=False)] = None,
    include_latest: Annotated[bool, typer.Option("--include-latest", help="With --import-live, also read the open "
                                                                          ".part segment up to its last complete "
                                                                          "line.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Rewrite days and segments that are up to date too.")] = False,
    parquet_dir: Annotated[Path | None, typer.Option(help="The Parquet store.", show_default=False)] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Predict every features row of the span with a saved model into the store's predictions table
    (computing the features first if the span has none), join the outcome fwd_ret where the future
    is in the store, and score the model against its baselines on those rows.  --import-live adds
    serve's prediction segments to the same table.

    Example: mktpred predict --model data/models/btc10s --start 2026-08-10"""
    from mktpred.predict.batch import predict
    from mktpred.predict.live import import_live as import_segments

    if model is None and not import_live:
        raise UsageError("give --model DIR (batch predictions) and/or --import-live", where="--model")
    if include_latest and not import_live:
        raise UsageError("--include-latest applies to --import-live", where="--include-latest")
    cfg = load_config(config, {"paths.parquet_dir": parquet_dir, "paths.predictions_dir": predictions_dir})
    term = Terminal()
    live = None
    if import_live:
        live = import_segments(cfg.paths.predictions_dir, cfg.paths.parquet_dir, include_latest=include_latest,
                           force=force)
        for w in live.warnings:
            term.warn(w)
    if model is None:
        assert live is not None
        if as_json:
            term.json(live.to_json())
        else:
            _render_live(term, live)
        return
    r = predict(model, cfg.paths.parquet_dir, start=start, end=end, products=products_list(products), force=force,
                info=term.info)
    for w in r.warnings:
        term.warn(w)
    if as_json:
        doc: dict[str, Any] = r.to_json()
        if live is not None:
            doc["live"] = live.to_json()
        term.json(doc)
        return
    if live is not None:
        _render_live(term, live)
    _render(term, r)


def _render(term: Terminal, r: PredictResult) -> None:
    target = "return" if "r2" in r.metrics else "direction"
    span = ("the whole features table" if r.span["start"] is None and r.span["end"] is None
            else f"{r.span['start'] or 'the start'} .. {r.span['end'] or 'the end'}")
    title = (f"predict {r.name}/{r.version} on {span}: {r.scored_rows:,} rows with a known outcome"
             + (" (IN-SAMPLE: overlaps the training span)" if r.in_sample else ""))
    render_scores(term, title, target, [("model", r.metrics), *((b, m) for b, m in r.baselines.items())])
    term.info(f"predict: {fmt(r.rows)} rows predicted, {fmt(r.rows_written)} written "
              f"({plural(len(r.days_written), 'day')} written, {len(r.days_skipped)} up to date) in {r.elapsed_s:.2f} s")


def _render_live(term: Terminal, r: ImportResult) -> None:
    term.info(f"predict --import-live: {plural(len(r.segments_imported), 'segment')} imported, {len(r.segments_skipped)} "
              f"up to date; {fmt(r.rows)} rows ({fmt(r.rows_with_outcome)} with fwd_ret), "
              f"{fmt(r.truncated_lines)} torn {'line' if r.truncated_lines == 1 else 'lines'} left for later, {fmt(r.invalid_lines)} invalid")
