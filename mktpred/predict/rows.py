"""Feature rows in, prediction messages out: the one definition of "the prediction at ``g``"
that batch ``predict`` and live ``serve`` share (DESIGN.md, "Predictions").

A prediction at grid point ``g`` is the stage-3 feature row for ``g`` with the model's features in
``model.features`` order as a float64 vector (None/null -> NaN), passed to
:meth:`~mktpred.models.registry.LoadedModel.predict`.  Invalid rows are predicted the same way and
marked ``valid = false``, so live and batch agree bit for bit.

    >>> from mktpred.models.registry import load_model
    >>> from mktpred.predict.rows import predict_rows
    >>> model = load_model("data/models/btc10s")
    >>> msgs = predict_rows(model, engine_rows)          # rows from FeatureEngine.on_l2/advance
    >>> msgs[0]["time"], msgs[0]["p_up"], msgs[0]["valid"]

Each message has the keys, in order: ``time`` (ISO-8601 UTC, nine fractional digits, ``Z``),
``time_ns``, ``product_id``, ``model``, ``version``, ``horizon_s``, ``valid``, then the model's
output columns (``p_up``; ``p_down, p_flat, p_up``; or ``ret_bps``; floats, null when not finite).
``serve`` appends ``latency_us`` (trigger to publish) as the last key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mktpred.coinbase.timestamps import format_iso_ns
from mktpred.models.registry import LoadedModel

#: the keys every message starts with, in order (the model's outputs follow, then latency_us live)
MESSAGE_KEYS = ("time", "time_ns", "product_id", "model", "version", "horizon_s", "valid")


def _num(v: Any) -> float:
    if v is None:
        return math.nan
    return float(v)


def feature_matrix(model: LoadedModel, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The ``(len(rows), len(model.features))`` float64 matrix; a missing or null feature is NaN."""
    X = np.empty((len(rows), len(model.features)), dtype=np.float64)
    for i, r in enumerate(rows):
        X[i] = [_num(r.get(c)) for c in model.features]
    return X


def outputs(model: LoadedModel, X: np.ndarray) -> np.ndarray:
    """``model.predict(X)`` as ``(n, len(model.output_columns))`` float64."""
    if X.shape[0] == 0:
        return np.empty((0, len(model.output_columns)), dtype=np.float64)
    p = np.asarray(model.predict(X), dtype=np.float64)
    return p.reshape(X.shape[0], len(model.output_columns))


def message(model: LoadedModel, time_ns: int, product_id: str, valid: bool, values: Sequence[float]) -> dict[str, Any]:
    """One prediction message (see the module docstring for the keys)."""
    msg: dict[str, Any] = {"time": format_iso_ns(int(time_ns)), "time_ns": int(time_ns), "product_id": product_id,
                           "model": model.name, "version": model.version, "horizon_s": float(model.horizon_s),
                           "valid": bool(valid)}
    for name, v in zip(model.output_columns, values, strict=True):
        msg[name] = float(v) if math.isfinite(v) else None
    return msg


def predict_rows(model: LoadedModel, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Prediction messages for feature rows (dicts with ``time`` in ns, ``product_id``, ``valid``
    and the model's feature columns, as :class:`~mktpred.features.engine.FeatureEngine` emits them)."""
    P = outputs(model, feature_matrix(model, rows))
    return [message(model, int(r["time"]), str(r["product_id"]), bool(r.get("valid")), P[i].tolist())
            for i, r in enumerate(rows)]
