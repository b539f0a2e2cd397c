"""`mktpred retrain`: challenger vs current on the same holdout; promote only a better one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal
from mktpred.cli.train import fmt
from mktpred.config import load_config


@command("retrain")
def retrain_command(
    name: Annotated[str, typer.Option(help="Model name under --models-dir.")],
    window: Annotated[str, typer.Option(help="Training window before the holdout, e.g. 7d.")] = "7d",
    holdout: Annotated[str, typer.Option(help="The last D of data, scored by both models.")] = "1d",
    margin: Annotated[float, typer.Option(help="Promote when challenger >= current + margin (AUC; IC for "
                                               "return).")] = 0.005,
    horizon: Annotated[str | None, typer.Option(help="Label horizon (default: the current model's).",
                                                show_default=False)] = None,
    models_dir: Annotated[Path | None, typer.Option(help="Where models live (default: config paths.models_dir).",
                                                    show_default=False)] = None,
    parquet_dir: Annotated[Path | None, typer.Option(help="The Parquet store.", show_default=False)] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a challenger on the window before the holdout, score it and the current model on the
    holdout, promote it only when better by the margin; the decision goes to <name>/history.jsonl.

    Example: mktpred retrain --name btc10s --window 7d --holdout 1d"""
    from mktpred.models.retrain import retrain

    cfg = load_config(config, {"paths.parquet_dir": parquet_dir, "paths.models_dir": models_dir})
    t = cfg.train
    r = retrain(cfg.paths.parquet_dir, cfg.paths.models_dir, name=name, window=window, holdout=holdout,
                margin=margin, horizon=horizon, folds=t.folds, seed=t.seed).record
    term = Terminal()
    if as_json:
        term.json(r)
        return
    m = r["metric"]
    rows = [("challenger", r["challenger"]["version"], fmt(r["challenger"][m]))]
    if r["current"]:
        rows.append(("current", r["current"]["version"], fmt(r["current"][m])))
    term.table(f"retrain {name}: holdout {r['holdout']['start']} .. {r['holdout']['end']}", ["model", "version", m],
               rows, to_stdout=True)
    term.info(f"retrain: {'promoted' if r['promoted'] else 'kept current'}: {r['reason']}")
