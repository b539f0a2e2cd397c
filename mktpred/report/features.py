"""Features: the distribution of each feature and its correlation with each ``fwd_ret_<h>`` label.

The correlation is *within products*: each product's mean is taken out of the feature and the label
before they are correlated over all rows, so two products at different price levels (BTC-USD near
65,000, ETH-USD near 1,900) do not make ``mid`` look predictive by their levels alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mktpred.report.section import Section, absent, r6

NAME, TITLE = "features", "Features"
#: columns of the features table that are not features
_NOT_FEATURES = {"time", "product_id", "conn", "seq", "valid", "best_bid", "best_ask"}


def read_features(parquet_dir: Path, table: str = "features") -> Any:
    """The features table as pandas (None when absent)."""
    import pyarrow.dataset as ds

    files = sorted(str(p) for p in (parquet_dir / table).glob("date=*/*.parquet"))
    if not files:
        return None
    return ds.dataset(files, format="parquet").to_table().to_pandas()


def features_section(parquet_dir: Path, *, table: str = "features", bins: int = 30) -> Section:
    """Count, mean, std and quantiles per feature over valid rows; Pearson correlation with each label
    within products (see the module docstring)."""
    import numpy as np

    df = read_features(parquet_dir, table)
    if df is None or df.empty:
        return absent(NAME, TITLE, f"no {table} table in the store (run mktpred features)")
    if "valid" in df.columns:
        df = df[df["valid"].fillna(False).astype(bool)]
    labels = [c for c in df.columns if c.startswith("fwd_")]
    feats = [c for c in df.columns if c not in _NOT_FEATURES and not c.startswith("fwd_")
             and np.issubdtype(df[c].dtype, np.number)]
    dist: dict[str, dict[str, float | int | None]] = {}
    hist: dict[str, tuple[list[float], list[float]]] = {}
    for c in feats:
        v = df[c].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            dist[c] = {"count": 0, "mean": None, "std": None, "p05": None, "p50": None, "p95": None}
            continue
        q05, q50, q95 = np.quantile(v, [0.05, 0.5, 0.95])
        dist[c] = {"count": int(v.size), "mean": r6(v.mean()), "std": r6(v.std()), "p05": r6(q05), "p50": r6(q50),
                   "p95": r6(q95)}
        counts, edges = np.histogram(v, bins=bins)
        hist[c] = (counts.tolist(), edges.tolist())
    corr: dict[str, dict[str, float | None]] = {}
    by = df["product_id"] if "product_id" in df.columns else None
    for c in feats:
        corr[c] = {}
        for lab in labels:
            pair = df[[c, lab]].astype(float).dropna()
            if by is not None and len(pair):
                pair = pair - pair.groupby(by.loc[pair.index]).transform("mean")
            ok = len(pair) > 2 and pair[c].std() > 0 and pair[lab].std() > 0
            corr[c][lab] = r6(float(np.corrcoef(pair[c], pair[lab])[0, 1])) if ok else None
    products = sorted(df["product_id"].dropna().unique().tolist()) if "product_id" in df.columns else []
    data = {"rows": len(df), "products": products,
            "labels": labels, "distribution": dist, "correlation": corr}
    return Section(NAME, TITLE, True, data=data, series={"hist": hist})
