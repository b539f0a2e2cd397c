"""Models: metrics per fold against the baselines (``model.json``), calibration and the cumulative signed
forward return of the signal ``sign(p_up - 0.5) * fwd_ret`` before and after a cost of half the spread
(``evaluation.parquet``) for the current version of every model under ``models_dir``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mktpred.report.section import Section, absent, r6

NAME, TITLE = "models", "Models"
EVAL_COLUMNS = ("time", "label", "prediction", "fwd_ret", "spread_bps")
METRICS = ("rows", "accuracy", "balanced_accuracy", "auc", "log_loss", "mcc")


def current_versions(models_dir: Path) -> list[Path]:
    """The current version directory of every model (``<name>/current`` names it)."""
    out: list[Path] = []
    if not models_dir.is_dir():
        return out
    for d in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        cur = d / "current"
        if cur.is_file():
            v = d / cur.read_text(encoding="utf-8").strip()
            if (v / "model.json").is_file():
                out.append(v)
    return out


def evaluate_frame(df: Any, bins: int = 10) -> tuple[dict[str, Any], dict[str, Any]]:
    """Calibration bins and the signal's cumulative return (gross and net of half the spread)."""
    import numpy as np

    df = df.sort_values("time", kind="stable")
    p = df["prediction"].to_numpy(dtype=float)
    y = df["label"].to_numpy(dtype=float)
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    calib = []
    for b in range(bins):
        m = idx == b
        if m.any():
            calib.append({"bin": b, "lo": b / bins, "hi": (b + 1) / bins, "rows": int(m.sum()),
                          "mean_p": r6(p[m].mean()), "frac_up": r6(y[m].mean())})
    sig = np.sign(p - 0.5)
    ret = df["fwd_ret"].to_numpy(dtype=float)
    cost = np.where(sig != 0, df["spread_bps"].to_numpy(dtype=float) * 1e-4 / 2, 0.0)
    gross = np.nan_to_num(sig * ret)
    net = gross - np.nan_to_num(cost)
    cg, cn = np.cumsum(gross), np.cumsum(net)
    data = {"calibration": calib, "signal": {"rows": len(df), "trades": int((sig != 0).sum()),
                                             "cum_return": r6(cg[-1] if len(cg) else 0.0),
                                             "cum_return_net": r6(cn[-1] if len(cn) else 0.0)}}
    t = df["time"].astype("int64").to_numpy()
    step = max(1, len(t) // 1000)
    return data, {"t": t[::step].tolist(), "gross": cg[::step].tolist(), "net": cn[::step].tolist(),
                  "calibration": calib}


def _metrics(block: dict[str, Any]) -> dict[str, Any]:
    return {k: block.get(k) for k in METRICS}


def models_section(models_dir: Path) -> Section:
    """Per current model: pooled and per-fold metrics of the model and each baseline; calibration; signal."""
    import pandas as pd

    versions = current_versions(models_dir)
    if not versions:
        return absent(NAME, TITLE, f"no model with a current version under {models_dir} (run mktpred train)")
    models: dict[str, Any] = {}
    series: dict[str, Any] = {}
    for v in versions:
        try:
            spec = json.loads((v / "model.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            models[f"{v.parent.name}/{v.name}"] = {"error": f"model.json unreadable: {exc}"}
            continue
        key = f"{spec.get('name', v.parent.name)}/{spec.get('version', v.name)}"
        metrics = spec.get("metrics", {})
        doc: dict[str, Any] = {
            "model": spec.get("model"), "target": spec.get("target"), "horizon": spec.get("horizon"),
            "products": spec.get("products", []), "train_span": spec.get("train_span"),
            "pooled": _metrics(metrics.get("pooled", {})),
            "folds": [{"fold": f.get("fold"), **_metrics(f)} for f in metrics.get("folds", [])],
            "baselines": {b: {"pooled": _metrics(m.get("pooled", {})),
                              "folds": [{"fold": f.get("fold"), **_metrics(f)} for f in m.get("folds", [])]}
                          for b, m in spec.get("baselines", {}).items()}}
        ev = v / "evaluation.parquet"
        if not ev.is_file():
            doc["evaluation"] = "no evaluation.parquet"
        elif spec.get("target", "direction") != "direction":
            doc["evaluation"] = "calibration and signal are shown for direction models only"
        else:
            frame = pd.read_parquet(ev)
            missing = [c for c in EVAL_COLUMNS if c not in frame.columns]
            if missing:
                doc["evaluation"] = f"evaluation.parquet lacks {', '.join(missing)}"
            else:
                extra, ser = evaluate_frame(frame)
                doc.update(extra)
                series[key] = ser
        models[key] = doc
    return Section(NAME, TITLE, True, data={"models": models}, series=series)
