"""``mktpred retrain``: a challenger trained on the last window before a holdout, scored with the
current model on that same holdout, promoted only when better by a stated margin."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mktpred.book.table import parse_duration
from mktpred.coinbase.timestamps import format_iso_ns
from mktpred.models import registry as reg
from mktpred.models.data import LabelSpec
from mktpred.models.evaluate import data_end, evaluate
from mktpred.models.folds import parse_span, purge_ns
from mktpred.models.metrics import HEADLINE
from mktpred.models.train import train

#: promote only when the challenger beats the current model by this much on the headline metric
MARGIN = 0.005


@dataclass
class RetrainResult:
    record: dict[str, Any]

    @property
    def promoted(self) -> bool:
        return bool(self.record["promoted"])

    def to_json(self) -> dict[str, Any]:
        return self.record


def retrain(parquet_dir: Path, models_dir: Path, *, name: str, window: str = "7d", holdout: str = "1d",
            margin: float = MARGIN, horizon: str | None = None, target: str | None = None,
            threshold_bps: float | None = None, model: str | None = None, folds: int = 5, seed: int = 0,
            products: list[str] | None = None) -> RetrainResult:
    """Train a challenger on ``[end - holdout - purge - window, end - holdout - purge)``, score it and
    the current model on ``[end - holdout, end)``, promote when ``challenger >= current + margin``
    on AUC (direction) or IC (return); append the decision to ``<name>/history.jsonl``."""
    reg.check_name(name)
    name_dir = Path(models_dir) / name
    cur_v = reg.current_version(name_dir)
    current = reg.load_model(name_dir) if cur_v else None
    cm = current.meta if current else {}
    horizon = horizon or cm.get("horizon") or "10s"
    target = target or cm.get("target") or "direction"
    if threshold_bps is None and current is not None:
        threshold_bps = cm.get("threshold_bps")
    model = model or cm.get("model") or "lightgbm"
    products = products or cm.get("products")
    end = data_end(parquet_dir)
    hold_ns, win_ns = parse_span(holdout, "--holdout"), parse_span(window, "--window")
    hold_start = end - hold_ns
    train_end = hold_start - purge_ns(parse_duration(horizon))
    chal = train(parquet_dir, models_dir, name=name, horizon=horizon, target=target, threshold_bps=threshold_bps,
                 model=model, folds=folds, products=products, start=train_end - win_ns, end=train_end, seed=seed,
                 features=cm.get("features"), promote=False)
    metric = HEADLINE[LabelSpec(target, threshold_bps).classes]
    ch_eval = evaluate(chal.path, parquet_dir, start=hold_start, end=end, products=products)
    cur_eval = (evaluate(current, parquet_dir, start=hold_start, end=end, products=products, allow_overlap=True)
                if current is not None else None)
    ch_score = ch_eval.metrics.get(metric)
    cur_score = cur_eval.metrics.get(metric) if cur_eval is not None else None
    if ch_score is None:
        promote, why = False, f"challenger has no {metric} on the holdout"
    elif cur_eval is None:
        promote, why = True, "no current model"
    elif cur_score is None:
        promote, why = True, f"current model has no {metric} on the holdout"
    else:
        promote = ch_score >= cur_score + margin
        why = (f"challenger {metric} {ch_score:.4f} {'>=' if promote else '<'} current {cur_score:.4f} "
               f"+ margin {margin}")
    record = {
        "time": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "name": name, "metric": metric,
        "margin": margin, "holdout": {"start": format_iso_ns(hold_start), "end": format_iso_ns(end)},
        "window": window, "challenger": {"version": chal.version, metric: ch_score, "rows": ch_eval.rows},
        "current": ({"version": cur_v, metric: cur_score, "rows": cur_eval.rows, "saw_holdout": cur_eval.overlap}
                    if cur_eval is not None else None),
        "promoted": promote, "reason": why,
    }
    if promote:
        reg.set_current(name_dir, chal.version)
    reg.append_history(name_dir, record)
    return RetrainResult(record)

