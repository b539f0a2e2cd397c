"""Scores: direction (accuracy, balanced accuracy, AUC, log loss, MCC) and return (R² vs a zero
forecast, Spearman IC, hit rate)."""

from __future__ import annotations

import math

import numpy as np


def _f(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def direction_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    """``p``: P(up) for two classes (n,) or (n, 1); class probabilities (n, 3) for three."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        log_loss,
        matthews_corrcoef,
        roc_auc_score,
    )

    n = int(y.shape[0])
    out: dict[str, float | None] = {"rows": n}
    if n == 0:
        return out | {"accuracy": None, "balanced_accuracy": None, "auc": None, "log_loss": None, "mcc": None}
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if p.ndim == 1:
        pc = np.clip(p, 1e-15, 1 - 1e-15)
        pred = (p > 0.5).astype(np.int64)
        auc = roc_auc_score(y, p) if len(np.unique(y)) == 2 else float("nan")
        ll = log_loss(y, np.column_stack([1 - pc, pc]), labels=[0, 1])
    else:
        pc = np.clip(p, 1e-15, 1.0)
        pc = pc / pc.sum(axis=1, keepdims=True)
        pred = p.argmax(axis=1)
        present = np.unique(y)
        auc = (roc_auc_score(y, pc, multi_class="ovr", average="macro", labels=[0, 1, 2])
               if len(present) == 3 else float("nan"))
        ll = log_loss(y, pc, labels=[0, 1, 2])
    return out | {"accuracy": _f(accuracy_score(y, pred)), "balanced_accuracy": _f(balanced_accuracy_score(y, pred)),
                  "auc": _f(auc), "log_loss": _f(ll), "mcc": _f(matthews_corrcoef(y, pred))}


def return_metrics(y: np.ndarray, f: np.ndarray) -> dict[str, float | None]:
    """``y`` and ``f`` in bps.  R² is against the zero forecast: ``1 - Σ(y-f)² / Σy²``."""
    from scipy.stats import spearmanr

    f = np.asarray(f, dtype=np.float64).reshape(-1)
    n = int(y.shape[0])
    out: dict[str, float | None] = {"rows": n}
    if n == 0:
        return out | {"r2": None, "ic": None, "hit_rate": None}
    ss = float(np.sum(y * y))
    r2 = 1.0 - float(np.sum((y - f) ** 2)) / ss if ss > 0 else float("nan")
    ic = float(spearmanr(y, f).statistic) if np.std(f) > 0 and np.std(y) > 0 else float("nan")
    moved = (y != 0) & (f != 0)
    hit = float(np.mean(np.sign(y[moved]) == np.sign(f[moved]))) if moved.any() else float("nan")
    return out | {"r2": _f(r2), "ic": _f(ic), "hit_rate": _f(hit)}


def score(classes: int, y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    """The metrics for the label kind (``classes`` 0 = return)."""
    return return_metrics(y, p) if classes == 0 else direction_metrics(y, p)


#: the metric retrain compares and whether larger is better, per label kind
HEADLINE = {0: "ic", 2: "auc", 3: "auc"}
