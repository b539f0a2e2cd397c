"""Model directories ``<models_dir>/<name>/<version>/`` and the ``<name>/current`` pointer, and the
public loader used by predict and serve: :func:`load_model`."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mktpred.errors import OutputNotWritable, UsageError
from mktpred.store.layout import atomic_replace

MODEL_JSON = "model.json"
LGBM_FILE = "model.lgbm.txt"
LINEAR_FILE = "model.linear.json"
EVALUATION = "evaluation.parquet"
CURRENT = "current"
HISTORY = "history.jsonl"
_VERSION = re.compile(r"v(\d{4,})\Z")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(f"not a model name: {name!r} (letters, digits, . _ -)", where="--name")
    return name


def versions(name_dir: Path) -> list[str]:
    """Complete versions (with a model.json) in version order."""
    if not name_dir.is_dir():
        return []
    found = [p.name for p in name_dir.iterdir() if p.is_dir() and _VERSION.match(p.name) and (p / MODEL_JSON).is_file()]
    return sorted(found, key=lambda v: int(v[1:]))


def next_version(name_dir: Path) -> str:
    nums = [int(m.group(1)) for p in (name_dir.iterdir() if name_dir.is_dir() else [])
            if (m := _VERSION.match(p.name))]
    return f"v{(max(nums) + 1) if nums else 1:04d}"


def staging_dir(name_dir: Path) -> Path:
    """A hidden temporary directory in ``name_dir`` to build a version in."""
    tmp = name_dir / f".staging-{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise OutputNotWritable(f"cannot create the model directory: {exc.strerror or exc}", where=str(name_dir)) \
            from None
    return tmp


def publish(tmp: Path, name_dir: Path) -> Path:
    """Rename a finished staging directory to the next version (a reader never sees half a model)."""
    for _ in range(100):
        final = name_dir / next_version(name_dir)
        try:
            os.rename(tmp, final)
            return final
        except OSError:
            if final.exists():
                continue
            raise
    raise OutputNotWritable("cannot allocate a model version", where=str(name_dir))


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    atomic_replace(tmp, path)


def set_current(name_dir: Path, version: str) -> None:
    """Point ``<name>/current`` at ``version`` (a one-line file, replaced atomically)."""
    tmp = name_dir / (CURRENT + ".tmp")
    tmp.write_text(version + "\n", encoding="utf-8")
    atomic_replace(tmp, name_dir / CURRENT)


def current_version(name_dir: Path) -> str | None:
    p = name_dir / CURRENT
    if not p.is_file():
        return None
    v = p.read_text(encoding="utf-8").strip()
    return v or None


def append_history(name_dir: Path, record: dict[str, Any]) -> None:
    with open(name_dir / HISTORY, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def resolve(path: Path) -> Path:
    """A version directory, or ``<models_dir>/<name>`` meaning its current version."""
    path = Path(path)
    if (path / MODEL_JSON).is_file():
        return path
    if not path.is_dir():
        raise UsageError("no model directory here", where=str(path))
    v = current_version(path)
    if v is None:
        raise UsageError("not a model version directory and no 'current' pointer in it", where=str(path))
    target = path / v
    if not (target / MODEL_JSON).is_file():
        raise UsageError(f"'current' names {v!r}, which is missing or half-written", where=str(path))
    return target


@dataclass
class LoadedModel:
    """A saved model ready to predict: ``predict(X)`` takes the columns ``features`` in order and
    returns one column per name in ``output_columns``."""

    name: str
    version: str
    path: Path
    features: list[str]
    target: str
    threshold_bps: float | None
    horizon: str
    horizon_s: float
    interval_ns: int | None
    output_columns: list[str]
    meta: dict[str, Any]
    _impl: Any

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise UsageError(f"expected {len(self.features)} feature columns, got shape {X.shape}",
                             where=str(self.path))
        out: np.ndarray = self._impl.predict(X)
        return out

    def set_threads(self, threads: int) -> None:
        """Threads LightGBM predicts with: 1 (the default) suits one row at a time (live), more suit
        large batches.  Each row is computed the same way either way, so the numbers do not change."""
        if hasattr(self._impl, "threads"):
            self._impl.threads = max(1, int(threads))


def load_model(path: Path | str) -> LoadedModel:
    """Load a version directory (or ``<models_dir>/<name>``: its current version).

    A missing, half-written or incompatible directory raises :class:`UsageError` (exit 2)."""
    from mktpred.models.estimators import LgbmModel, LinearModel

    d = resolve(Path(path))
    try:
        meta = json.loads((d / MODEL_JSON).read_text(encoding="utf-8"))
        kind, target, threshold = meta["model"], meta["target"], meta.get("threshold_bps")
        features = list(meta["features"])
        classes = 0 if target == "return" else (3 if threshold is not None else 2)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"unreadable model.json: {exc}", where=str(d)) from None
    impl: Any
    if kind == "lightgbm":
        f = d / LGBM_FILE
        if not f.is_file():
            raise UsageError(f"model file {LGBM_FILE} missing (half-written model?)", where=str(d))
        import lightgbm as lgb

        impl = LgbmModel(classes, threads=1)
        try:
            impl.booster = lgb.Booster(model_file=str(f))
        except Exception as exc:
            raise UsageError(f"cannot load {LGBM_FILE}: {str(exc).splitlines()[0]}", where=str(d)) from None
        if impl.booster.num_feature() != len(features):
            raise UsageError("model file and model.json disagree on the feature count", where=str(d))
    elif kind == "logistic":
        f = d / LINEAR_FILE
        if not f.is_file():
            raise UsageError(f"model file {LINEAR_FILE} missing (half-written model?)", where=str(d))
        try:
            impl = LinearModel.from_params(classes, json.loads(f.read_text(encoding="utf-8")))
        except ValueError as exc:
            raise UsageError(f"unreadable {LINEAR_FILE}: {exc}", where=str(d)) from None
    else:
        raise UsageError(f"unknown model kind {kind!r} in model.json", where=str(d))
    outputs = ["ret_bps"] if classes == 0 else (["p_up"] if classes == 2 else ["p_down", "p_flat", "p_up"])
    return LoadedModel(name=str(meta.get("name", d.parent.name)), version=str(meta.get("version", d.name)), path=d,
                       features=features, target=target, threshold_bps=threshold, horizon=str(meta.get("horizon")),
                       horizon_s=float(meta["horizon_s"]), interval_ns=meta.get("interval_ns"),
                       output_columns=outputs, meta=meta, _impl=impl)
