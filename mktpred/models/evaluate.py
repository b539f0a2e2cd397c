"""``mktpred evaluate``: score a saved model on a period it has not seen."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mktpred.book.table import parse_duration
from mktpred.coinbase.timestamps import format_iso_ns
from mktpred.errors import UsageError
from mktpred.models import estimators as est
from mktpred.models.data import LabelSpec, apply_labels, read_frame
from mktpred.models.folds import purge_ns
from mktpred.models.metrics import score
from mktpred.models.registry import LoadedModel, load_model
from mktpred.store.reader import TimeLike


@dataclass
class EvalResult:
    name: str
    version: str
    path: Path
    rows: int
    span: dict[str, str]
    train_span: dict[str, str]
    overlap: bool
    metrics: dict[str, Any]
    baselines: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "path": str(self.path), "rows": self.rows,
                "span": self.span, "train_span": self.train_span, "overlap": self.overlap,
                "metrics": self.metrics, "baselines": self.baselines, "warnings": self.warnings}


def evaluate(model_dir: Path | LoadedModel, parquet_dir: Path, *, start: TimeLike = None, end: TimeLike = None,
             products: list[str] | None = None, allow_overlap: bool = False) -> EvalResult:
    """The model and its saved baselines (training prior, imbalance buckets) on ``[start, end)``.

    Refuses (UsageError) a period that comes within the purge gap of the training span unless
    ``allow_overlap``; the result says whether it overlapped."""
    m = model_dir if isinstance(model_dir, LoadedModel) else load_model(model_dir)
    meta = m.meta
    spec = LabelSpec(m.target, m.threshold_bps)
    frame = read_frame(parquet_dir, m.horizon, features=m.features, products=products or meta.get("products"),
                       start=start, end=end)
    frame, y, _ = apply_labels(frame, spec)
    ts = meta["train_span"]
    purge = purge_ns(parse_duration(m.horizon))
    lo, hi = int(ts["start_ns"]) - purge, int(ts["end_ns"]) + purge
    seen = (frame.time >= lo) & (frame.time < hi)
    overlap = bool(seen.any())
    span = {"start": format_iso_ns(int(frame.time.min())), "end": format_iso_ns(int(frame.time.max()) + 1)}
    if overlap and not allow_overlap:
        raise UsageError(f"{int(seen.sum()):,} of {len(frame):,} rows lie in the model's training span "
                         f"{ts['start']} .. {ts['end']} or its purge gap: choose --start/--end after it, or "
                         f"--allow-overlap (scores would be optimistic)", where=str(m.path))
    classes = spec.classes
    p = m.predict(frame.X)
    bp = meta["baseline_params"]
    warnings = ["the period overlaps the training span: these scores are optimistic"] if overlap else []
    return EvalResult(
        name=m.name, version=m.version, path=m.path, rows=len(frame), span=span,
        train_span={"start": ts["start"], "end": ts["end"]}, overlap=overlap, metrics=score(classes, y, p),
        baselines={"prior": score(classes, y, est.predict_prior(bp["prior"], len(frame))),
                   "imbalance": score(classes, y, est.predict_imbalance(bp["imbalance"], frame.imb_1))},
        warnings=warnings)


def data_end(parquet_dir: Path) -> int:
    """One past the last ``time`` in the features table (ns)."""
    import pyarrow.compute as pc

    from mktpred.store.reader import open_store

    t = open_store(parquet_dir).read("features", columns=["time"]).column("time")
    if len(t) == 0:
        raise UsageError("no features table: run `mktpred features` first", where=str(parquet_dir))
    return int(np.int64(pc.max(pc.cast(t, "int64")).as_py())) + 1
