"""``mktpred predict --import-live``: the sealed JSONL prediction segments ``serve`` writes
(``<predictions_dir>/predictions_<YYYYMMDD>T<HHMMSS>Z.jsonl``, one message per line) into the
store's ``predictions`` table, ``source = "live"``, next to the batch rows.

Incremental: one manifest entry per segment (``predictions:live:<segment name>``, so moving the
folder does not re-import), whose fingerprint covers the segment's content and the features files
of the days its rows fall on: a segment is re-imported when it changed, or when ``features``
rewrote one of those days (its outcomes ``fwd_ret`` may now be known).  Each segment writes
``predictions/date=D/live_<segment stem>.parquet``; a re-import replaces those files.

``include_latest`` also reads ``.part`` segments up to their last complete line (a torn last line
is skipped and counted); once sealed, the segment is imported again in full under the same files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mktpred.coinbase.timestamps import parse_rfc3339_ns, utc_date
from mktpred.errors import OutputNotWritable, UsageError
from mktpred.naming import PART, PREDICTION_SEGMENT_RE, partition_date
from mktpred.predict import table as pt
from mktpred.store.manifest import file_hash
from mktpred.store.reader import Store, open_store
from mktpred.store.session import StoreSession


@dataclass
class ImportResult:
    """What ``mktpred predict --import-live`` did (its ``--json`` summary, or ``live`` in predict's)."""

    predictions_dir: Path
    segments_imported: list[str] = field(default_factory=list)
    segments_skipped: list[str] = field(default_factory=list)
    rows: int = 0
    rows_with_outcome: int = 0
    invalid_lines: int = 0
    truncated_lines: int = 0
    outputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"predictions_dir": str(self.predictions_dir), "segments_imported": self.segments_imported,
                "segments_skipped": self.segments_skipped, "rows": self.rows,
                "rows_with_outcome": self.rows_with_outcome, "invalid_lines": self.invalid_lines,
                "truncated_lines": self.truncated_lines, "outputs": self.outputs, "warnings": self.warnings}


def segments(predictions_dir: Path, include_latest: bool = False) -> list[Path]:
    """Sealed segments (and ``.part`` ones with ``include_latest``) in name (= time) order."""
    found = [p for p in predictions_dir.iterdir() if p.is_file() and PREDICTION_SEGMENT_RE.match(p.name)
             and (include_latest or not p.name.endswith(PART))]
    return sorted(found, key=lambda p: p.name)


def import_live(predictions_dir: Path | str, parquet_dir: Path | str, *, include_latest: bool = False,
                force: bool = False) -> ImportResult:
    """Import the prediction segments of ``predictions_dir`` into ``parquet_dir`` (see the module doc)."""
    pdir = Path(predictions_dir)
    if not pdir.is_dir():
        raise UsageError("no predictions directory (serve writes it)", where=str(pdir))
    root = Path(parquet_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)  # live predictions may arrive before any convert
    except OSError as exc:
        raise OutputNotWritable(f"cannot create the store: {exc.strerror or exc}", where=str(root)) from None
    store = open_store(root)
    with StoreSession.open(store.root) as session:
        return _import(store, session, pdir, include_latest, force)


def _import(store: Store, session: StoreSession, pdir: Path, include_latest: bool, force: bool) -> ImportResult:
    result = ImportResult(pdir)
    for seg in segments(pdir, include_latest):
        sealed_name = seg.name[: -len(PART)] if seg.name.endswith(PART) else seg.name
        key = f"{pt.TABLE}:live:{sealed_name}"
        entry = session.entry(key)
        content = file_hash(seg)
        if entry is not None and not force:
            prev_dates = {d for o in entry.outputs if (d := partition_date(Path(o)))}
            if pt.up_to_date(store, entry, pt.combine(content, pt.features_fingerprint(store, prev_dates))):
                result.segments_skipped.append(seg.name)
                continue
        rows, lines, invalid, truncated = read_segment(seg, partial=seg.name.endswith(PART))
        table = _table(store, rows)
        dates = {utc_date(int(r["time_ns"])) for r in rows}
        st = seg.stat()
        outs = pt.write_rows(session, key=key, stem="live_" + sealed_name[: -len(".jsonl")], rows=table,
                             hash=pt.combine(content, pt.features_fingerprint(store, dates)), size=st.st_size,
                             mtime_ns=st.st_mtime_ns, kind="predictions", lines=lines, invalid=invalid,
                             truncated=truncated, partial=seg.name.endswith(PART), engine="predict-live")
        result.segments_imported.append(seg.name)
        result.outputs += outs
        result.rows += table.num_rows
        result.rows_with_outcome += table.num_rows - table.column("fwd_ret").null_count
        result.invalid_lines += invalid
        result.truncated_lines += truncated
        if invalid:
            result.warnings.append(f"{seg.name}: {invalid:,} line(s) are not prediction messages (skipped)")
    return result


def read_segment(path: Path, partial: bool = False) -> tuple[list[dict[str, Any]], int, int, int]:
    """``(rows, lines, invalid, truncated)``: the prediction messages of one segment.  In a ``.part``
    (``partial``) a last line without its ``\\n`` is torn (being written or cut by a crash): skipped."""
    data = path.read_bytes()
    pieces = data.split(b"\n")
    tail = pieces.pop()  # b"" when the file ends with a newline
    truncated = 0
    if tail:
        if partial:
            truncated = 1
        else:
            pieces.append(tail)
    rows: list[dict[str, Any]] = []
    invalid = 0
    lines = 0
    for raw in pieces:
        if not raw.strip():
            continue
        lines += 1
        row = parse_message(raw)
        if row is None:
            invalid += 1
        else:
            rows.append(row)
    return rows, lines, invalid, truncated


def _number(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError("not a number")
    return float(v) if math.isfinite(v) else None


def parse_message(raw: bytes) -> dict[str, Any] | None:
    """One message as a table row, or None when it is not a prediction message."""
    try:
        msg = json.loads(raw)
        if not isinstance(msg, dict):
            return None
        t = msg.get("time_ns")
        if not isinstance(t, int) or isinstance(t, bool):
            t = parse_rfc3339_ns(str(msg["time"]))
        for k in ("product_id", "model", "version"):
            if not isinstance(msg.get(k), str):
                return None
        valid = msg.get("valid")
        horizon = _number(msg.get("horizon_s"))
        if not isinstance(valid, bool) or horizon is None:
            return None
        lat = msg.get("latency_us")
        if lat is not None and (not isinstance(lat, int) or isinstance(lat, bool)):
            return None
        row = {"time_ns": int(t), "product_id": msg["product_id"], "model": msg["model"],
               "version": msg["version"], "horizon_s": horizon, "valid": valid, "latency_us": lat}
        if not any(c in msg for c in pt.OUTPUT_COLUMNS):
            return None
        for c in pt.OUTPUT_COLUMNS:
            row[c] = _number(msg.get(c))
        return row
    except (ValueError, KeyError, TypeError):
        return None


def _table(store: Store, rows: list[dict[str, Any]]) -> pa.Table:
    t = np.array([r["time_ns"] for r in rows], dtype=np.int64)
    prod = np.array([r["product_id"] for r in rows], dtype=object)
    hz = np.array([r["horizon_s"] for r in rows], dtype=np.float64)
    fwd = pt.join_fwd_ret(store, t, prod, hz)
    cols: dict[str, Any] = {
        "time": pa.array(t, pa.int64()).cast(pt.SCHEMA.field("time").type),
        "product_id": pa.array(prod.tolist(), pa.string()),
        "model": pa.array([r["model"] for r in rows], pa.string()),
        "version": pa.array([r["version"] for r in rows], pa.string()),
        "horizon_s": pa.array(hz, pa.float64()),
        "valid": pa.array([r["valid"] for r in rows], pa.bool_()),
    }
    for c in pt.OUTPUT_COLUMNS:
        cols[c] = pa.array([r[c] for r in rows], pa.float64())
    cols["source"] = pa.array(["live"] * len(rows), pa.string())
    cols["latency_us"] = pa.array([r["latency_us"] for r in rows], pa.int64())
    cols["fwd_ret"] = pa.array(fwd, pa.float64(), mask=~np.isfinite(fwd))
    return pa.table(cols, schema=pt.SCHEMA)
