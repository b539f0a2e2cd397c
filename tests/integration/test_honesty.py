"""Honesty of the whole chain on markets whose predictability is known: `simulate --to-raw` ->
`convert` -> `features` -> `train`.  No signal: no skill beyond noise.  A planted signal: the
models find it, LightGBM at least 90% of the way from a coin flip to the oracle."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from mktpred.config import load_config
from mktpred.convert.runner import run_convert
from mktpred.features.build import build_features
from mktpred.features.engine import FeatureSpec
from mktpred.models.train import train
from mktpred.simulate.to_raw import write_raw

S = 1_000_000_000
START = 1_790_000_000 * S
PRODUCTS = ["BTC-USD", "ETH-USD"]
HORIZON = "1s"  # the planted rule acts on the next mid move, about 1.6 moves a second per product


@dataclass
class Chain:
    oracle: dict[str, Any]
    meta: dict[str, Any]
    n_up: int
    n_down: int

    def auc(self, who: str) -> float:
        pooled = self.meta["metrics"]["pooled"] if who == "model" else self.meta["baselines"][who]["pooled"]
        return float(pooled["auc"])

    @property
    def se(self) -> float:
        """Standard error of a pooled AUC on these test rows if the scores carried no information.

        Under H0 the AUC is the Mann-Whitney statistic U/(n1 n0), whose variance with no ties is
        n1 n0 (n1 + n0 + 1) / 12 / (n1 n0)^2 = (n1 + n0 + 1) / (12 n1 n0).  At a 1 s horizon on a 1 s
        grid consecutive labels cover disjoint seconds, and with no signal each mid move is a fair
        coin independent of everything before it, so the labels are independent and the formula
        holds.  Four standard errors leave a false alarm about once in 16,000 runs."""
        return math.sqrt((self.n_up + self.n_down + 1) / (12 * self.n_up * self.n_down))


def _chain(root: Path, signal: float, minutes: int) -> Chain:
    raw, store = root / "raw", root / "parquet"
    write_raw(raw, products=PRODUCTS, span_ns=minutes * 60 * S, start_ns=START, seed=1, depth=500, rate=50.0,
              signal=signal)
    run_convert(load_config(None, {"paths.raw_dir": raw, "paths.parquet_dir": store}))
    build_features(store, FeatureSpec(S, (S,)))
    # two folds: three blocks, each fold trains on at least one block minus the 301 s purge gap
    result = train(store, root / "models", name="honesty", horizon=HORIZON, model="lightgbm", folds=2, seed=0)
    labels = pq.read_table(result.path / "evaluation.parquet").column("label").to_pylist()
    oracle = json.loads((raw / "oracle.json").read_text())
    return Chain(oracle, result.meta, sum(1 for y in labels if y == 1), sum(1 for y in labels if y == 0))


@pytest.fixture(scope="module")
def zero(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """30 simulated minutes with no signal, through the whole chain."""
    return _chain(tmp_path_factory.mktemp("zero"), 0.0, 30)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """One simulated hour with signal 2, through the whole chain."""
    return _chain(tmp_path_factory.mktemp("planted"), 2.0, 60)


def test_zero_signal_no_model_finds_skill(zero: Chain) -> None:
    """With no signal, LightGBM's and the logistic and imbalance baselines' pooled AUC are within 4 SE of
    0.5, and LightGBM is not better than the prior beyond 4 SE of a difference of two AUCs (sqrt(2) SE,
    taking their errors as independent: the prior's comes only from the folds' different base rates)."""
    assert zero.n_up > 500 and zero.n_down > 500, (zero.n_up, zero.n_down)
    bound = 4 * zero.se
    for who in ("model", "logistic", "imbalance"):
        assert abs(zero.auc(who) - 0.5) <= bound, (who, zero.auc(who), bound)
    assert zero.auc("model") - zero.auc("prior") <= math.sqrt(2) * bound, (zero.auc("model"), zero.auc("prior"))
    assert abs(zero.oracle["horizons"][HORIZON]["auc"] - 0.5) <= 4 * zero.oracle["horizons"][HORIZON]["se_h0"]


def test_planted_signal_is_found_close_to_the_oracle(planted: Chain) -> None:
    """With signal 2, LightGBM and logistic beat the prior by more than 6 SE, and LightGBM's edge over
    a coin flip is at least 90% of the oracle's at the horizon the signal lives on."""
    bound = 6 * planted.se
    for who in ("model", "logistic"):
        assert planted.auc(who) > planted.auc("prior") + bound, (who, planted.auc(who), planted.auc("prior"))
    oracle = planted.oracle["horizons"][HORIZON]["auc"]
    assert oracle > 0.5 + 6 * planted.oracle["horizons"][HORIZON]["se_h0"]
    assert planted.auc("model") - 0.5 >= 0.9 * (oracle - 0.5), (planted.auc("model"), oracle)
