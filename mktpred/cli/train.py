"""`mktpred train`: purged walk-forward models against baselines (the core is :mod:`mktpred.models`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal
from mktpred.config import load_config

DIRECTION = ("rows", "auc", "accuracy", "balanced_accuracy", "log_loss", "mcc")
RETURN = ("rows", "r2", "ic", "hit_rate")


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def render_scores(term: Terminal, title: str, target: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
    """One row per (fold, method), one column per metric."""
    keys = RETURN if target == "return" else DIRECTION
    term.table(title, ["fold / method", *keys], [(label, *(fmt(m.get(k)) for k in keys)) for label, m in rows],
               to_stdout=True)


def products_list(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


@command("train")
def train_command(
    horizon: Annotated[str | None, typer.Option(help="Label horizon, one of the features table's fwd_ret_* "
                                                     "(default: config train.horizon).", show_default=False)] = None,
    target: Annotated[str, typer.Option(help="direction (up vs down) or return (bps).")] = "direction",
    threshold_bps: Annotated[float | None, typer.Option(help="Three classes down/flat/up around ±X bps.",
                                                        show_default=False)] = None,
    model: Annotated[str | None, typer.Option(help="lightgbm or logistic (default: config train.model).",
                                              show_default=False)] = None,
    folds: Annotated[int | None, typer.Option(help="Walk-forward test folds (default: config train.folds).",
                                              show_default=False)] = None,
    window: Annotated[str | None, typer.Option(help="Train each fold on the last D only, e.g. 7d.",
                                               show_default=False)] = None,
    features: Annotated[str | None, typer.Option(help="Comma-separated feature columns (default: every "
                                                      "numeric non-label column).", show_default=False)] = None,
    products: Annotated[str | None, typer.Option(help="Comma-separated product ids (default: all).",
                                                 show_default=False)] = None,
    start: Annotated[str | None, typer.Option(help="First time, e.g. 2026-08-09.", show_default=False)] = None,
    end: Annotated[str | None, typer.Option(help="End time (exclusive).", show_default=False)] = None,
    name: Annotated[str, typer.Option(help="Model name: <models-dir>/<name>/<version>/.")] = "default",
    models_dir: Annotated[Path | None, typer.Option(help="Where models live (default: config paths.models_dir).",
                                                    show_default=False)] = None,
    parquet_dir: Annotated[Path | None, typer.Option(help="The Parquet store.", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: config train.seed).",
                                             show_default=False)] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a model on the features table with purged walk-forward folds, score it against the
    prior, imbalance and logistic baselines on the same test rows, and save it as a new version
    (which becomes <name>/current).

    Example: mktpred train --horizon 10s --folds 5 --name btc10s"""
    from mktpred.models.train import train

    cfg = load_config(config, {"paths.parquet_dir": parquet_dir, "paths.models_dir": models_dir,
                               "train.horizon": horizon, "train.model": model, "train.folds": folds,
                               "train.seed": seed})
    t = cfg.train
    term = Terminal()
    r = train(cfg.paths.parquet_dir, cfg.paths.models_dir, name=name, horizon=t.horizon, target=target,
              threshold_bps=threshold_bps, model=t.model, folds=t.folds, window=window,
              features=products_list(features), products=products_list(products), start=start, end=end,
              seed=t.seed, progress=term.info)
    for w in r.warnings:
        term.warn(w)
    if as_json:
        term.json(r.to_json())
        return
    m = r.meta
    rows: list[tuple[str, dict[str, Any]]] = []
    for i, f in enumerate(m["metrics"]["folds"]):
        rows.append((f"{f['fold']} {m['model']}", f))
        rows.extend((f"{f['fold']} {b}", m["baselines"][b]["folds"][i]) for b in m["baselines"])
    rows.append((f"pooled {m['model']}", m["metrics"]["pooled"]))
    rows.extend((f"pooled {b}", m["baselines"][b]["pooled"]) for b in m["baselines"])
    render_scores(term, f"train {r.name}/{r.version}: {m['model']}, {m['target']} at {m['horizon']}", m["target"],
                  rows)
    term.info(f"train: saved {r.path}" + (" (current)" if r.promoted else ""))
