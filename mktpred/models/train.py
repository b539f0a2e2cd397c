"""``mktpred train``: purged walk-forward evaluation against baselines, then a final fit on the
whole span, saved as a model directory (see DESIGN.md "Stage 4: models")."""

from __future__ import annotations

import datetime as _dt
import json
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mktpred import __version__
from mktpred.book.table import parse_duration
from mktpred.coinbase.timestamps import format_iso_ns
from mktpred.errors import DataError, UsageError
from mktpred.models import estimators as est
from mktpred.models import registry as reg
from mktpred.models.data import Frame, LabelSpec, apply_labels, read_frame
from mktpred.models.folds import NS_PER_S, Fold, parse_span, purge_ns, walk_forward
from mktpred.models.metrics import score
from mktpred.store.reader import TimeLike
from mktpred.store.schemas import TS_NS
from mktpred.store.writer import write_parquet_file

MODELS = ("lightgbm", "logistic")
BASELINES = ("prior", "imbalance", "logistic")
#: a pooled AUC above this on market data is more likely a leak than a discovery
LEAK_AUC = 0.95


@dataclass
class TrainResult:
    name: str
    version: str
    path: Path
    promoted: bool
    meta: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        m = self.meta
        return {"name": self.name, "version": self.version, "path": str(self.path), "promoted": self.promoted,
                "model": m["model"], "target": m["target"], "horizon": m["horizon"], "rows": m["rows"],
                "folds": m["folds"], "metrics": m["metrics"], "baselines": m["baselines"], "warnings": self.warnings}


def make_model(kind: str, classes: int, seed: int) -> est.LgbmModel | est.LinearModel:
    if kind == "lightgbm":
        return est.LgbmModel(classes, seed)
    if kind == "logistic":
        return est.LinearModel(classes, seed)
    raise UsageError(f"unknown model {kind!r} (lightgbm or logistic)", where="--model")


def scalar(p: np.ndarray) -> np.ndarray:
    """One number per row for the evaluation table: P(up), the predicted class (3 classes), or bps."""
    return p[:, 0] if p.shape[1] == 1 else p.argmax(axis=1).astype(np.float64)


def infer_interval(t: np.ndarray) -> int | None:
    d = np.diff(np.unique(t))
    d = d[d > 0]
    return int(d.min()) if d.size else None


def _versions() -> dict[str, str]:
    import lightgbm
    import sklearn

    return {"mktpred": __version__, "lightgbm": lightgbm.__version__, "scikit-learn": sklearn.__version__,
            "numpy": np.__version__, "pyarrow": pa.__version__, "python": platform.python_version()}


def evaluation_table(frame: Frame, idx: np.ndarray, fold: np.ndarray, y: np.ndarray,
                     preds: dict[str, np.ndarray], classes: int) -> pa.Table:
    """One row per test row: time, product_id, fold, label, prediction, fwd_ret, spread_bps, baselines."""
    cols: dict[str, pa.Array] = {
        "time": pa.array(frame.time[idx], pa.int64()).cast(TS_NS),
        "product_id": pa.array(frame.product[idx].tolist(), pa.string()),
        "fold": pa.array(fold, pa.int32()),
        "label": pa.array(y, pa.float64() if classes == 0 else pa.int64()),
        "prediction": pa.array(scalar(preds["model"]), pa.float64()),
        "fwd_ret": pa.array(frame.fwd[idx], pa.float64()),
        "spread_bps": pa.array(frame.spread_bps[idx], pa.float64()),
    }
    for b in BASELINES:
        cols[f"baseline_{b}"] = pa.array(scalar(preds[b]), pa.float64())
    if classes == 3:
        for j, c in enumerate(("p_down", "p_flat", "p_up")):
            cols[c] = pa.array(preds["model"][:, j], pa.float64())
    return pa.table(cols)


def train(parquet_dir: Path, models_dir: Path, *, name: str, horizon: str, target: str = "direction",
          threshold_bps: float | None = None, model: str = "lightgbm", folds: int = 5,
          products: list[str] | None = None, start: TimeLike = None, end: TimeLike = None, seed: int = 0,
          window: str | None = None, features: list[str] | None = None, promote: bool = True,
          progress: Callable[[str], None] | None = None) -> TrainResult:
    """Walk-forward evaluation (model and baselines on the same test rows), a final fit on the whole
    span (or its last ``window``), and a new version in ``<models_dir>/<name>/``."""
    reg.check_name(name)
    spec = LabelSpec(target, threshold_bps)
    spec.check()
    make_model(model, spec.classes, seed)  # validates the kind before reading anything
    if folds < 1:
        raise UsageError("--folds must be >= 1", where="--folds")
    h_ns = parse_duration(horizon)
    window_ns = parse_span(window) if window else None
    frame = read_frame(parquet_dir, horizon, features=features, products=products, start=start, end=end)
    frame, y, dropped = apply_labels(frame, spec)
    classes = spec.classes
    purge = purge_ns(h_ns)
    fold_list = walk_forward(frame.time, folds, purge, window_ns)

    per: dict[str, list[dict[str, Any]]] = {k: [] for k in ("model", *BASELINES)}
    pooled_idx: list[np.ndarray] = []
    pooled_fold: list[np.ndarray] = []
    pooled_pred: dict[str, list[np.ndarray]] = {k: [] for k in per}
    fold_json = []
    for f in fold_list:
        tr = np.flatnonzero(f.train_mask(frame.time))
        te = np.flatnonzero(f.test_mask(frame.time))
        fold_json.append(f.to_json(int(tr.size), int(te.size)))
        if tr.size < 10:
            raise DataError(f"fold {f.fold}: only {tr.size} training rows (more data or fewer --folds)")
        if progress:
            progress(f"fold {f.fold}/{folds}: {tr.size:,} train rows, {te.size:,} test rows")
        if te.size == 0:
            continue
        preds = _fit_predict(model, classes, seed, frame, y, tr, te)
        for k, p in preds.items():
            per[k].append({"fold": f.fold, **score(classes, y[te], p)})
            pooled_pred[k].append(p)
        pooled_idx.append(te)
        pooled_fold.append(np.full(te.size, f.fold, dtype=np.int32))
    if not pooled_idx:
        raise DataError("no test rows in any fold")
    idx = np.concatenate(pooled_idx)
    allp = {k: np.concatenate(v) for k, v in pooled_pred.items()}
    pooled = {k: score(classes, y[idx], allp[k]) for k in per}

    # the final model: every labelled row of the span (or its last window)
    tmax = int(frame.time.max())
    final_rows = np.flatnonzero(frame.time >= tmax - window_ns) if window_ns else np.arange(len(frame))
    if progress:
        progress(f"final fit on {final_rows.size:,} rows")
    final = make_model(model, classes, seed).fit(frame.X[final_rows], y[final_rows])
    warnings = []
    auc = pooled["model"].get("auc")
    if auc is not None and auc > LEAK_AUC:
        warnings.append(f"pooled AUC {auc:.3f} > {LEAK_AUC}: on market data this is more likely a leak than skill "
                        f"(realistic: 0.55-0.60)")

    name_dir = Path(models_dir) / name
    tmp = reg.staging_dir(name_dir)
    if isinstance(final, est.LgbmModel):
        final.booster.save_model(str(tmp / reg.LGBM_FILE))
    else:
        reg.write_json_atomic(tmp / reg.LINEAR_FILE, final.params)
    write_parquet_file(evaluation_table(frame, idx, np.concatenate(pooled_fold), y[idx], allp, classes),
                       tmp / reg.EVALUATION)
    fp = frame.time[final_rows]
    meta: dict[str, Any] = {
        "name": name, "version": None, "created_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": model, "target": target, "threshold_bps": threshold_bps, "horizon": horizon,
        "horizon_s": h_ns / NS_PER_S, "interval_ns": infer_interval(frame.time), "features": frame.features,
        "feature_spec": feature_spec(parquet_dir, infer_interval(frame.time), start, end),
        "products": frame.products,
        "train_span": {"start": format_iso_ns(int(fp.min())), "end": format_iso_ns(int(fp.max()) + 1),
                       "start_ns": int(fp.min()), "end_ns": int(fp.max()) + 1},
        "window": window, "folds": fold_json,
        "rows": {"read": frame.rows_read, "invalid": frame.rows_invalid, "no_label": frame.rows_no_label,
                 "no_move" if spec.classes == 2 else "dropped": dropped, "used": len(frame),
                 "final_fit": int(final_rows.size)},
        "data": {"table": "features", "files": frame.files}, "versions": _versions(), "seed": seed,
        "params": est.LGBM_PARAMS if model == "lightgbm" else {"C": 1.0} if classes else {"alpha": 1.0},
        "metrics": {"pooled": pooled["model"], "folds": per["model"]},
        "baselines": {b: {"pooled": pooled[b], "folds": per[b]} for b in BASELINES},
        "baseline_params": {"prior": est.prior_params(y[final_rows], classes),
                            "imbalance": est.imbalance_params(frame.imb_1[final_rows], y[final_rows], classes)},
        "warnings": warnings,
    }
    reg.write_json_atomic(tmp / reg.MODEL_JSON, meta)
    final_dir = reg.publish(tmp, name_dir)
    meta["version"] = final_dir.name
    reg.write_json_atomic(final_dir / reg.MODEL_JSON, meta)
    if promote:
        reg.set_current(name_dir, final_dir.name)
    return TrainResult(name, final_dir.name, final_dir, promote, meta, warnings)


def feature_spec(parquet_dir: Path, interval_ns: int | None, start: TimeLike, end: TimeLike) -> dict[str, Any]:
    """How the features table was built, so predict and serve can compute the same rows: the grid,
    every label horizon of the table, and the ``--cross`` product (inferred: the one product whose
    ``cross_ret_1`` is always null while another product's is not; null when it cannot be told)."""
    import pyarrow.dataset as ds

    from mktpred.book.table import format_duration
    from mktpred.features.labels import label_name
    from mktpred.models.data import LABEL_PREFIX, TABLE
    from mktpred.store.reader import open_store, to_ns

    store = open_store(parquet_dir)
    files = store.files(TABLE, to_ns(start), to_ns(end))
    names = ds.dataset([str(f) for f in files], format="parquet").schema.names if files else []
    horizons: dict[int, str] = {}
    for n in names:
        if n.startswith(LABEL_PREFIX + "ret_"):
            try:
                h = parse_duration(n[len(LABEL_PREFIX + "ret_"):])
            except UsageError:
                continue
            if label_name(h) == n:
                horizons[h] = n[len(LABEL_PREFIX + "ret_"):]
    cross = None
    if "cross_ret_1" in names:
        t = store.read(TABLE, start=start, end=end, columns=["product_id", "cross_ret_1"])
        seen = t.group_by("product_id").aggregate([("cross_ret_1", "count")]).to_pylist()
        empty = [r["product_id"] for r in seen if r["cross_ret_1_count"] == 0]
        if len(empty) == 1 and len(seen) > 1:
            cross = empty[0]
    return {"interval": None if interval_ns is None else format_duration(interval_ns), "interval_ns": interval_ns,
            "horizons": [horizons[h] for h in sorted(horizons)], "horizons_ns": sorted(horizons),
            "cross": cross}


def _fit_predict(model: str, classes: int, seed: int, frame: Frame, y: np.ndarray, tr: np.ndarray,
                 te: np.ndarray) -> dict[str, np.ndarray]:
    """The model and the three baselines, fitted on ``tr`` and predicting ``te``."""
    Xtr, Xte, ytr = frame.X[tr], frame.X[te], y[tr]
    out = {"model": make_model(model, classes, seed).fit(Xtr, ytr).predict(Xte)}
    out["prior"] = est.predict_prior(est.prior_params(ytr, classes), te.size)
    out["imbalance"] = est.predict_imbalance(est.imbalance_params(frame.imb_1[tr], ytr, classes), frame.imb_1[te])
    out["logistic"] = (out["model"] if model == "logistic"
                       else est.LinearModel(classes, seed).fit(Xtr, ytr).predict(Xte))
    return out


def fold_of(meta: dict[str, Any]) -> list[Fold]:
    """The folds recorded in a model.json (for checks)."""
    from mktpred.coinbase.timestamps import parse_rfc3339_ns

    return [Fold(int(f["fold"]), parse_rfc3339_ns(f["train_start"]), parse_rfc3339_ns(f["train_end"]),
                 parse_rfc3339_ns(f["test_start"]), parse_rfc3339_ns(f["test_end"]), float(f["purge_s"]))
            for f in meta["folds"]]


def dumps(meta: dict[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True)
