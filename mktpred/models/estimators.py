"""The model families (LightGBM, logistic/linear) and the baselines, behind one small shape:
``fit(X, y)`` then ``predict(X) -> (n, outputs)`` (P(up); P(down, flat, up); or bps)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: chosen for speed on 2 cores (bench/bench_train.py): 63 bins and half-row bagging (seeded, so
#: deterministic) cut the boosting time by about half against 255 bins and no bagging
LGBM_PARAMS: dict[str, Any] = {"n_estimators": 100, "learning_rate": 0.1, "num_leaves": 31,
                               "min_child_samples": 50, "max_bin": 63, "subsample": 0.5, "subsample_freq": 1,
                               "colsample_bytree": 1.0, "reg_lambda": 1.0}


def _as_out(p: np.ndarray, classes: int) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if classes == 3:
        return p.reshape(-1, 3)
    return p.reshape(-1, 1)


class LinearModel:
    """Logistic regression (direction) or ridge regression (return) on standardised features;
    missing values become the training mean.  Predicts from its own parameters, so a saved model
    needs no scikit-learn object."""

    def __init__(self, classes: int, seed: int = 0) -> None:
        self.classes = classes
        self.seed = seed
        self.params: dict[str, Any] = {}

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearModel:
        mean = np.nanmean(X, axis=0) if len(X) else np.zeros(X.shape[1])
        mean = np.where(np.isfinite(mean), mean, 0.0)
        Z = np.where(np.isfinite(X), X, mean) - mean
        scale = Z.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        Z = Z / scale
        if self.classes == 0:
            from sklearn.linear_model import Ridge

            r = Ridge(alpha=1.0).fit(Z, y)
            coef, icpt = np.atleast_2d(r.coef_), np.atleast_1d(r.intercept_)
        else:
            from sklearn.linear_model import LogisticRegression

            m = LogisticRegression(C=1.0, max_iter=300, random_state=self.seed).fit(Z, y)
            coef, icpt = np.atleast_2d(m.coef_), np.atleast_1d(m.intercept_)
            if self.classes == 3 and len(m.classes_) != 3:  # a class absent from training: keep 3 outputs
                full_c, full_i = np.zeros((3, X.shape[1])), np.full(3, -30.0)
                for j, c in enumerate(m.classes_):
                    full_c[int(c)] = coef[j] if coef.shape[0] > 1 else coef[0]
                    full_i[int(c)] = icpt[j] if icpt.shape[0] > 1 else icpt[0]
                coef, icpt = full_c, full_i
        self.params = {"mean": mean.tolist(), "scale": scale.tolist(), "coef": coef.tolist(),
                       "intercept": icpt.tolist()}
        return self

    @classmethod
    def from_params(cls, classes: int, params: dict[str, Any]) -> LinearModel:
        m = cls(classes)
        m.params = params
        return m

    def predict(self, X: np.ndarray) -> np.ndarray:
        mean, scale = np.asarray(self.params["mean"]), np.asarray(self.params["scale"])
        coef, icpt = np.asarray(self.params["coef"]), np.asarray(self.params["intercept"])
        Z = (np.where(np.isfinite(X), X, mean) - mean) / scale
        s = Z @ coef.T + icpt
        if self.classes == 0:
            return s.reshape(-1, 1)
        if self.classes == 2:
            return (1.0 / (1.0 + np.exp(-s))).reshape(-1, 1)
        s = s - s.max(axis=1, keepdims=True)
        e = np.exp(s)
        return e / e.sum(axis=1, keepdims=True)


class LgbmModel:
    """LightGBM, deterministic: fixed seed, fixed thread count, ``deterministic=True``, row-wise."""

    def __init__(self, classes: int, seed: int = 0, threads: int = 2) -> None:
        self.classes = classes
        self.seed = seed
        self.threads = threads
        self.booster: Any = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> LgbmModel:
        import lightgbm as lgb

        common = dict(LGBM_PARAMS, random_state=self.seed, n_jobs=self.threads, deterministic=True,
                      force_row_wise=True, verbose=-1)
        est: Any
        if self.classes == 0:
            est = lgb.LGBMRegressor(**common)
        else:
            est = lgb.LGBMClassifier(**common)
        est.fit(X, y)
        self.booster = est.booster_
        if self.classes == 3 and list(est.classes_) != [0, 1, 2]:
            from mktpred.errors import DataError

            raise DataError("a training fold lacks one of the three classes: lower --threshold-bps or use more data")
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return _as_out(self.booster.predict(X, num_threads=self.threads), self.classes)


# -- baselines ------------------------------------------------------------------------------------
def _shares(y: np.ndarray, classes: int) -> np.ndarray:
    """Class shares with add-one smoothing (a class never seen in training is not probability 0)."""
    counts = np.bincount(y.astype(np.int64), minlength=classes).astype(np.float64) + 1.0
    return counts / counts.sum()


def prior_params(y: np.ndarray, classes: int) -> list[float]:
    """The training class shares (direction) or the zero forecast (return)."""
    if classes == 0:
        return [0.0]
    s = _shares(y, classes)
    return [float(s[1])] if classes == 2 else [float(v) for v in s]


def imbalance_params(imb: np.ndarray, y: np.ndarray, classes: int) -> dict[str, list[float]]:
    """Per sign of ``imb_1`` (-1, 0, +1; missing counts as 0), the training class shares (or mean bps)."""
    sgn = np.sign(np.nan_to_num(imb))
    out: dict[str, list[float]] = {}
    for key, s in (("neg", -1), ("zero", 0), ("pos", 1)):
        m = sgn == s
        if classes == 0:
            out[key] = [float(y[m].mean()) if m.any() else 0.0]
        else:
            sh = _shares(y[m], classes)
            out[key] = [float(sh[1])] if classes == 2 else [float(v) for v in sh]
    return out


def predict_prior(params: list[float], n: int) -> np.ndarray:
    return np.tile(np.asarray(params, dtype=np.float64), (n, 1))


def predict_imbalance(params: dict[str, list[float]], imb: np.ndarray) -> np.ndarray:
    sgn = np.sign(np.nan_to_num(imb))
    out = np.empty((len(imb), len(params["pos"])))
    for key, s in (("neg", -1), ("zero", 0), ("pos", 1)):
        out[sgn == s] = params[key]
    return out
