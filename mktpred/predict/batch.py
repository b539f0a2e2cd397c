"""``mktpred predict``: a saved model over the features of a span, into the store's ``predictions``
table, with a score against the baselines where the outcome is already known.

Predictions are written per product and UTC day, for whole days (the span picks the days; the
score covers exactly ``[start, end)``), one file each
(``predictions/date=D/batch_<model>_<version>_<product>_<date>.parquet``) with a manifest entry
``predictions:batch:<model>:<version>:<product>:<date>`` whose fingerprint covers the model version
and that day's features files.  A re-run rewrites only the days whose features changed (for
example when the next day completed the last labels, so ``fwd_ret`` gets filled in).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mktpred.book.table import format_duration, parse_duration
from mktpred.coinbase.timestamps import format_iso_ns
from mktpred.errors import RuntimeFailure, UsageError
from mktpred.features.labels import label_name
from mktpred.models import estimators as est
from mktpred.models.data import LabelSpec
from mktpred.models.folds import purge_ns
from mktpred.models.metrics import score
from mktpred.models.registry import LoadedModel, load_model
from mktpred.predict import table as pt
from mktpred.predict.rows import outputs
from mktpred.store.reader import Store, TimeLike, day_bounds, open_store, to_ns
from mktpred.store.session import StoreSession

Info = Callable[[str], None]


@dataclass
class PredictResult:
    """What ``mktpred predict --model`` did (its ``--json`` summary)."""

    name: str
    version: str
    path: Path
    parquet_dir: Path
    span: dict[str, str | None]
    products: list[str]
    days_written: list[str] = field(default_factory=list)
    days_skipped: list[str] = field(default_factory=list)
    rows: int = 0
    rows_written: int = 0
    outputs: list[str] = field(default_factory=list)
    features_computed: dict[str, Any] | None = None
    train_span: dict[str, str] = field(default_factory=dict)
    in_sample: bool = False
    rows_in_train_span: int = 0
    scored_rows: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "path": str(self.path),
                "parquet_dir": str(self.parquet_dir), "span": self.span, "products": self.products,
                "rows": self.rows, "rows_written": self.rows_written, "days_written": self.days_written,
                "days_skipped": self.days_skipped, "outputs": self.outputs,
                "features_computed": self.features_computed, "train_span": self.train_span,
                "in_sample": self.in_sample, "rows_in_train_span": self.rows_in_train_span,
                "scored_rows": self.scored_rows, "metrics": self.metrics, "baselines": self.baselines,
                "warnings": self.warnings, "elapsed_s": round(self.elapsed_s, 3),
                "rows_per_s": round(self.rows / self.elapsed_s) if self.elapsed_s > 0 else None}


def feature_spec_of(model: LoadedModel) -> Any:
    """The :class:`~mktpred.features.FeatureSpec` the model was trained on (``feature_spec`` in
    model.json; for older models the grid ``interval_ns`` and the model's own horizon, no cross)."""
    from mktpred.features import FeatureSpec

    fs = model.meta.get("feature_spec") or {}
    interval = fs.get("interval_ns") or model.interval_ns
    if not interval:
        raise UsageError("model.json names no feature grid (interval_ns): cannot compute its features",
                         where=str(model.path))
    horizons = [int(h) for h in fs.get("horizons_ns") or [round(model.horizon_s * 1e9)]]
    try:
        return FeatureSpec(int(interval), tuple(horizons), fs.get("cross") or None)
    except ValueError as exc:
        raise UsageError(f"model.json's feature spec is not usable: {exc}", where=str(model.path)) from None


def predict(model_dir: Path | str | LoadedModel, parquet_dir: Path | str, *, start: TimeLike = None,
            end: TimeLike = None, products: list[str] | None = None, force: bool = False,
            threads: int | None = None, info: Info | None = None) -> PredictResult:
    """Predict every features row of the days of ``[start, end)`` (default: all) for the model's
    products (or ``products``), write the ``predictions`` table, and score the model and its saved
    baselines on the rows of the span whose outcome is in the store (see the module docstring).

    A missing or half-written model directory, or a features table that lacks a feature the model
    needs, raises :class:`UsageError` (exit 2).  Without any features for the span they are computed
    first from ``l2``/``trades`` with the model's feature spec (``info`` says so).  ``threads``: how
    many LightGBM predicts with (default: every core for a model loaded here; the numbers are the
    same for any count)."""
    t0 = time.monotonic()
    say = info or (lambda _: None)
    m = model_dir if isinstance(model_dir, LoadedModel) else load_model(model_dir)
    if threads is not None or not isinstance(model_dir, LoadedModel):  # a caller's model keeps its setting
        m.set_threads(threads or os.cpu_count() or 1)
    store = open_store(parquet_dir)
    lo, hi = to_ns(start), to_ns(end)
    if lo is not None and hi is not None and hi <= lo:
        raise UsageError("--end must be after --start", where="--end")
    plist = list(dict.fromkeys(products)) if products else list(m.meta.get("products") or []) or None
    result = PredictResult(m.name, m.version, m.path, store.root,
                           {"start": None if lo is None else format_iso_ns(lo),
                            "end": None if hi is None else format_iso_ns(hi)}, plist or [])
    if not store.files(pt.FEATURES_TABLE, lo, hi):
        result.features_computed = _compute_features(store, m, plist, lo, hi, say)
    if not store.files(pt.FEATURES_TABLE, lo, hi):
        raise UsageError("no features rows for the span (and none could be computed)", where=str(store.root))
    _check_compatible(store, m, lo, hi)

    with StoreSession.open(store.root) as session:
        days = [d for date in store.dates(pt.FEATURES_TABLE, lo, hi)
                if (d := _predict_day(store, session, m, date, plist, force, result)) is not None]
    if result.rows == 0:
        raise UsageError(f"no features rows for {', '.join(plist or ['any product'])} in the span",
                         where="--products" if products else str(store.root))
    if not result.products:
        result.products = sorted({p for d in days for p in d.products})
    t = np.concatenate([d.time for d in days])
    span = np.ones(len(t), dtype=bool)
    if lo is not None:
        span &= t >= lo
    if hi is not None:
        span &= t < hi
    col = {a: np.concatenate([getattr(d, a) for d in days])[span] for a in ("valid", "fwd", "imb_1", "outputs")}
    _score(result, m, t[span], col["valid"], col["fwd"], col["imb_1"], col["outputs"])
    result.elapsed_s = time.monotonic() - t0
    return result


@dataclass
class _Day:
    """One day's predicted rows, in ``(time, product_id)`` order, for the score."""

    products: list[str]
    time: np.ndarray
    valid: np.ndarray
    fwd: np.ndarray
    imb_1: np.ndarray
    outputs: np.ndarray


def _predict_day(store: Store, session: StoreSession, m: LoadedModel, date: str, products: list[str] | None,
                 force: bool, result: PredictResult) -> _Day | None:
    """Predict one day's features rows; write the product-days that are not up to date (their
    entries' fingerprints: model version and the day's features files).  Up-to-date product-days
    are read back from the table, not predicted again: the same numbers, much cheaper."""
    label = pt.horizon_label(m.horizon_s)
    day = _read_day(store, date, products, ["time", "product_id", "valid", label, "imb_1"])
    if day.num_rows == 0:
        return None
    t = day.column("time").cast(pa.int64()).to_numpy()
    prod = np.asarray(day.column("product_id").to_pylist(), dtype=object)
    valid = np.asarray(pc.fill_null(day.column("valid"), False).to_numpy(zero_copy_only=False), dtype=bool)
    fwd = _f64(day, label)
    result.rows += day.num_rows
    fp = pt.features_fingerprint(store, [date])
    identity = f"{m.name}/{m.version}/{m.meta.get('created_at')}"
    P = np.full((day.num_rows, len(m.output_columns)), np.nan)
    names = sorted({str(p) for p in prod})
    stale: dict[str, tuple[str, str]] = {}
    for product in names:
        key = f"{pt.TABLE}:batch:{m.name}:{m.version}:{product}:{date}"
        h = pt.combine(identity, product, date, fp)
        entry = session.entry(key)
        sel = np.flatnonzero(prod == product)
        stored = None if force or not pt.up_to_date(store, entry, h) else _stored(store, entry, m, t[sel])
        if stored is None:
            stale[product] = (key, h)
        else:
            P[sel] = stored
    if stale:
        todo = np.flatnonzero(np.isin(prod, list(stale)))
        feats = _read_day(store, date, sorted(stale), ["time", "product_id", *m.features])
        if not np.array_equal(feats.column("time").cast(pa.int64()).to_numpy(), t[todo]):
            raise RuntimeFailure("the features table changed while predict was reading it", where=date)
        P[todo] = outputs(m, np.column_stack([_f64(feats, c) for c in m.features]))
    for product, (key, h) in stale.items():
        sel = np.flatnonzero(prod == product)
        rows = _rows_table(m, t[sel], product, valid[sel], P[sel], fwd[sel])
        result.outputs += pt.write_rows(session, key=key, rows=rows, hash=h, engine="predict",
                                        stem=f"batch_{m.name}_{m.version}_{product}_{date}")
        result.rows_written += rows.num_rows
    if stale:
        result.days_written.append(date)
    else:
        result.days_skipped.append(date)
    return _Day(names, t, valid, fwd, _f64(day, "imb_1"), P)


def _f64(tbl: pa.Table, column: str) -> np.ndarray:
    """A column as float64 with nulls as NaN (all NaN when the table has no such column)."""
    if column not in tbl.column_names:
        return np.full(tbl.num_rows, np.nan)
    col = pc.cast(tbl.column(column), pa.float64())
    return np.asarray(pc.fill_null(col, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)


def _read_day(store: Store, date: str, products: list[str] | None, columns: list[str]) -> pa.Table:
    """``columns`` of one day of features (those a file has; a missing one is null), rows in
    ``(time, product_id)`` order, read file by file so files with different label sets still read."""
    import pyarrow.parquet as pq

    lo, hi = day_bounds(date)
    wanted = list(dict.fromkeys(columns))
    parts = []
    for f in store.files(pt.FEATURES_TABLE, lo, hi):
        names = set(pq.read_schema(f).names)
        tbl = pq.read_table(f, columns=[c for c in wanted if c in names])
        if products is not None:
            tbl = tbl.filter(pc.is_in(tbl.column("product_id"), value_set=pa.array(products, pa.string())))
        parts.append(tbl)
    if not parts:
        return pa.table({"time": pa.array([], pt.SCHEMA.field("time").type)})
    tbl = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
    return tbl.sort_by([("time", "ascending"), ("product_id", "ascending")])


def _stored(store: Store, entry: Any, m: LoadedModel, t: np.ndarray) -> np.ndarray | None:
    """The model outputs an up-to-date entry wrote for the rows at times ``t`` (None when they do
    not line up, so the day is predicted and written again)."""
    import pyarrow.parquet as pq

    files = [store.root / o for o in entry.outputs]
    if not files:
        return None if len(t) else np.empty((0, len(m.output_columns)))
    tbl = pa.concat_tables([pq.read_table(f, columns=["time", *m.output_columns]) for f in files])
    tbl = tbl.sort_by("time")
    if not np.array_equal(tbl.column("time").cast(pa.int64()).to_numpy(), t):
        return None
    return np.column_stack([_f64(tbl, c) for c in m.output_columns])


def _check_compatible(store: Store, m: LoadedModel, lo: int | None, hi: int | None) -> None:
    """Every feature the model needs is a numeric column of every features file of the span."""
    import pyarrow.parquet as pq

    for f in store.files(pt.FEATURES_TABLE, lo, hi):
        schema = pq.read_schema(f)
        missing = [c for c in m.features if c not in schema.names]
        if missing:
            raise UsageError(f"model {m.name}/{m.version} needs {', '.join(missing)}, which the features table "
                             f"lacks ({f.relative_to(store.root)}): an incompatible feature set (rebuild the "
                             f"features with the model's spec, e.g. --cross)", where=str(m.path))
        bad = [c for c in m.features
               if not (pa.types.is_integer(schema.field(c).type) or pa.types.is_floating(schema.field(c).type))]
        if bad:
            raise UsageError(f"model {m.name}/{m.version} needs numeric {', '.join(bad)}, not numeric in the "
                             f"features table ({f.relative_to(store.root)})", where=str(m.path))


def _compute_features(store: Store, m: LoadedModel, products: list[str] | None, lo: int | None, hi: int | None,
                      say: Info) -> dict[str, Any]:
    """Build the features table for the span with the model's spec (there was none)."""
    from mktpred.features.build import build_features

    if "l2" not in store.tables():
        raise UsageError("no features for the span and no l2 table to compute them from "
                         "(run mktpred convert, then mktpred features)", where=str(store.root))
    spec = feature_spec_of(m)
    known = store.products("l2", lo, hi)
    chosen = [p for p in (products or known) if p in known]
    if not chosen:
        raise UsageError(f"no level2 data for {', '.join(products or [])} in the span to compute features from",
                         where=str(store.root))
    horizons = [label_name(h)[len("fwd_ret_"):] for h in spec.horizons_ns]  # as the label columns say
    say(f"predict: no features for the span: computing them from l2/trades ({format_duration(spec.interval_ns)} "
        f"grid, labels {', '.join(horizons)}{', cross ' + spec.cross if spec.cross else ''}) for {', '.join(chosen)}")
    r = build_features(store.root, spec, products=chosen, start=lo, end=hi)
    say(f"predict: computed {r.rows:,} features rows")
    return {"rows": r.rows, "products": chosen, "interval": r.interval, "horizons": horizons, "cross": spec.cross}


def _rows_table(m: LoadedModel, t: np.ndarray, product: str, valid: np.ndarray, P: np.ndarray,
                fwd: np.ndarray) -> pa.Table:
    n = len(t)
    cols: dict[str, Any] = {
        "time": pa.array(t, pa.int64()).cast(pt.SCHEMA.field("time").type),
        "product_id": pa.array([product] * n, pa.string()),
        "model": pa.array([m.name] * n, pa.string()),
        "version": pa.array([m.version] * n, pa.string()),
        "horizon_s": pa.array(np.full(n, float(m.horizon_s)), pa.float64()),
        "valid": pa.array(valid, pa.bool_()),
    }
    for c in pt.OUTPUT_COLUMNS:
        if c in m.output_columns:
            v = P[:, m.output_columns.index(c)]
            cols[c] = pa.array(v, pa.float64(), mask=~np.isfinite(v))
        else:
            cols[c] = pa.nulls(n, pa.float64())
    cols["source"] = pa.array(["batch"] * n, pa.string())
    cols["latency_us"] = pa.nulls(n, pa.int64())
    cols["fwd_ret"] = pa.array(fwd, pa.float64(), mask=~np.isfinite(fwd))
    return pa.table(cols, schema=pt.SCHEMA)


def _score(r: PredictResult, m: LoadedModel, t: np.ndarray, valid: np.ndarray, fwd: np.ndarray, imb: np.ndarray,
           P: np.ndarray) -> None:
    """The model and its saved baselines on the span's valid rows whose outcome is known; the
    score says when those rows reach into the training span or its purge gap (in-sample)."""
    spec = LabelSpec(m.target, m.threshold_bps)
    known = valid & np.isfinite(fwd)
    y, keep = spec.labels(np.where(known, fwd, np.nan))
    keep &= known
    y, p, ts, ib = y[keep], P[keep], t[keep], imb[keep]
    r.scored_rows = int(keep.sum())
    bp = m.meta.get("baseline_params") or {}
    with warnings.catch_warnings():
        # a span with one class only (or few rows) leaves some metrics undefined: they are null
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        r.metrics = score(spec.classes, y, p)
        if "prior" in bp:
            r.baselines["prior"] = score(spec.classes, y, est.predict_prior(bp["prior"], len(y)))
        if "imbalance" in bp:
            r.baselines["imbalance"] = score(spec.classes, y, est.predict_imbalance(bp["imbalance"], ib))
    span = m.meta.get("train_span") or {}
    if "start_ns" in span:
        r.train_span = {"start": span["start"], "end": span["end"]}
        purge = purge_ns(parse_duration(m.horizon)) if m.horizon and m.horizon != "None" else 0
        seen = (ts >= int(span["start_ns"]) - purge) & (ts < int(span["end_ns"]) + purge)
        r.rows_in_train_span = int(seen.sum())
        r.in_sample = bool(seen.any())
    if r.in_sample:
        r.warnings.append(f"{r.rows_in_train_span:,} of {r.scored_rows:,} scored rows lie in the model's training "
                          f"span {r.train_span['start']} .. {r.train_span['end']} or its purge gap: the score is "
                          f"in-sample (optimistic); use --start after the training span for an honest one")
    if r.scored_rows == 0:
        r.warnings.append("no valid row of the span has its outcome in the store yet: nothing to score")
