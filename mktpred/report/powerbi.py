"""``--powerbi DIR``: the tables a Power BI report needs, as Parquet and CSV, one folder per table.

``DIR/parquet/<table>/date=YYYY-MM-DD/<table>.parquet`` and ``DIR/csv/<table>/date=YYYY-MM-DD/<table>.csv``
(CSV times ISO 8601 UTC with ``Z``, as ``convert --write-csv``).  Tables: ``features`` (the store's
features), ``predictions`` (the store's predictions with their outcome ``fwd_ret``, when that table
exists), ``daily_metrics`` (per model, per UTC day of its evaluation rows: rows, accuracy, AUC, the
signal's gross and net signed return) and ``coverage_hourly`` (frames per hour per channel).
Incremental: ``DIR/_sources.json`` keeps a fingerprint of each date's sources; a date whose sources did
not change is not rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mktpred.naming import partition_name, safe_name
from mktpred.report.models import current_versions

_STATE = "_sources.json"


def _fingerprint(files: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for f in sorted(files):
        st = f.stat()
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _write(out: Path, table: str, date: str, data: pa.Table) -> None:
    from mktpred.convert.csv_export import parquet_to_csv
    from mktpred.store.writer import write_parquet_file

    part, name = partition_name(date), safe_name(table)
    pq_path = out / "parquet" / name / part / f"{name}.parquet"
    write_parquet_file(data, pq_path)
    parquet_to_csv(pq_path, out / "csv" / name / part / f"{name}.csv")


def _auc(y: Any, p: Any) -> float | None:
    import numpy as np
    import pandas as pd

    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if pos == 0 or neg == 0:
        return None
    ranks = pd.Series(p).rank().to_numpy()
    return float((ranks[np.asarray(y) == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def daily_metrics(ev: Any, key: str) -> Any:
    """Per UTC day: rows, accuracy, AUC, and the signal's gross and net (half-spread cost) signed return."""
    import numpy as np
    import pandas as pd

    ev = ev.copy()
    ev["date"] = pd.to_datetime(ev["time"], utc=True).dt.strftime("%Y-%m-%d")
    rows = []
    for date, g in ev.groupby("date", sort=True):
        p, y = g["prediction"].to_numpy(float), g["label"].to_numpy(float)
        sig = np.sign(p - 0.5)
        gross = np.nan_to_num(sig * g["fwd_ret"].to_numpy(float))
        cost = np.where(sig != 0, np.nan_to_num(g["spread_bps"].to_numpy(float)) * 1e-4 / 2, 0.0)
        rows.append({"date": date, "model": key, "rows": len(g), "accuracy": float(((p > 0.5) == (y == 1)).mean()),
                     "auc": _auc(y, p), "signed_return": float(gross.sum()),
                     "signed_return_net": float((gross - cost).sum())})
    return pd.DataFrame(rows)


def export_powerbi(parquet_dir: Path, models_dir: Path, out: Path) -> dict[str, dict[str, int]]:
    """Write the tables; returns per table how many dates were written and how many were unchanged."""
    import duckdb
    import pandas as pd

    from mktpred.store.reader import open_store

    state_path = out / _STATE
    state: dict[str, dict[str, str]] = json.loads(state_path.read_text()) if state_path.is_file() else {}
    summary: dict[str, dict[str, int]] = {}
    store = open_store(parquet_dir)

    def emit(table: str, date: str, fp: str, make: Any) -> None:
        doc = summary.setdefault(table, {"written": 0, "skipped": 0})
        if state.get(table, {}).get(date) == fp and (out / "parquet" / safe_name(table) / partition_name(date)).is_dir():
            doc["skipped"] += 1
            return
        _write(out, table, date, make())
        state.setdefault(table, {})[date] = fp
        doc["written"] += 1

    for table in ("features", "predictions"):
        for date in store.layout.dates(table):
            files = sorted((store.layout.partition_dir(table, date)).glob("*.parquet"))
            if files:
                import pyarrow.dataset as ds

                emit(table, date, _fingerprint(files),
                     lambda files=files: ds.dataset([str(f) for f in files], format="parquet").to_table())
    from mktpred.report.models import EVAL_COLUMNS

    evals = [(f"{v.parent.name}/{v.name}", v / "evaluation.parquet") for v in current_versions(models_dir)
             if (v / "evaluation.parquet").is_file()
             and set(EVAL_COLUMNS) <= set(pq.read_schema(v / "evaluation.parquet").names)]
    if evals:  # every current model's rows of one day go into that day's one file
        fp = _fingerprint([p for _, p in evals], "|".join(k for k, _ in evals))
        daily = pd.concat([daily_metrics(pd.read_parquet(p), k) for k, p in evals], ignore_index=True)
        for date, g in daily.groupby("date", sort=True):
            emit("daily_metrics", f"{date}", fp,
                 lambda g=g: pa.Table.from_pandas(g.reset_index(drop=True), preserve_index=False))
    con = duckdb.connect()
    for date in store.layout.dates("messages"):
        files = sorted(store.layout.partition_dir("messages", date).glob("*.parquet"))
        if files:
            emit("coverage_hourly", date, _fingerprint(files), lambda files=files: con.sql(
                "SELECT time_bucket(INTERVAL 1 hour, time::TIMESTAMP)::TIMESTAMP_NS AS hour, channel, count(*) AS frames "
                "FROM read_parquet($f) WHERE time IS NOT NULL GROUP BY ALL ORDER BY 1, 2",
                params={"f": [str(f) for f in files]}).to_arrow_table())
    out.mkdir(parents=True, exist_ok=True)
    tmp = state_path.with_name(_STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, state_path)
    return summary
