"""Reading the ``features`` table for training: column pruning, feature selection, labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mktpred.errors import DataError, UsageError
from mktpred.store.manifest import file_hash
from mktpred.store.reader import TimeLike, open_store, to_ns

TABLE = "features"
IDENTITY = ("time", "product_id", "conn", "seq", "valid")
LABEL_PREFIX = "fwd_"
TARGETS = ("direction", "return")


def label_column(horizon: str) -> str:
    """``10s`` -> ``fwd_ret_10s``."""
    return f"{LABEL_PREFIX}ret_{horizon}"


def select_features(schema: pa.Schema, requested: list[str] | None = None) -> list[str]:
    """The feature columns: the requested ones (checked), else every numeric non-identity,
    non-label column in table order.  A ``fwd_*`` column is never a feature: it looks forward."""
    names = list(schema.names)
    if requested:
        for c in requested:
            if c.startswith(LABEL_PREFIX):
                raise UsageError(f"refusing feature {c!r}: fwd_* columns are labels (future information)",
                                 where="--features")
            if c in IDENTITY:
                raise UsageError(f"refusing feature {c!r}: an identity column, not a feature", where="--features")
            if c not in names:
                raise UsageError(f"no column {c!r} in the features table", where="--features")
            t = schema.field(c).type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
                raise UsageError(f"refusing feature {c!r}: not numeric ({t})", where="--features")
        return list(requested)
    out = []
    for f in schema:
        if f.name in IDENTITY or f.name.startswith(LABEL_PREFIX):
            continue
        if pa.types.is_integer(f.type) or pa.types.is_floating(f.type):
            out.append(f.name)
    return out


@dataclass
class Frame:
    """Rows usable for training: valid, with a non-null label, in time order."""

    time: np.ndarray          # int64 ns
    product: np.ndarray       # object (str)
    X: np.ndarray             # float64 (n, k), NaN where null
    fwd: np.ndarray           # float64 log return over the horizon
    spread_bps: np.ndarray    # float64 (NaN when the table has none)
    imb_1: np.ndarray         # float64 (NaN when the table has none)
    features: list[str]
    products: list[str]
    files: dict[str, str]     # relative path -> content hash
    rows_read: int
    rows_invalid: int
    rows_no_label: int

    def __len__(self) -> int:
        return int(self.time.shape[0])


def read_frame(parquet_dir: Path, horizon: str, *, features: list[str] | None = None,
               products: list[str] | None = None, start: TimeLike = None, end: TimeLike = None) -> Frame:
    """Read only the columns training needs (PyArrow with partition pruning and column pruning)."""
    store = open_store(parquet_dir)
    lo, hi = to_ns(start), to_ns(end)
    files = store.files(TABLE, lo, hi)
    if not files:
        raise UsageError("no features table in range: run `mktpred features` first", where=str(parquet_dir))
    schema = ds.dataset([str(f) for f in files], format="parquet").schema
    label = label_column(horizon)
    if label not in schema.names:
        have = ", ".join(n for n in schema.names if n.startswith(LABEL_PREFIX)) or "none"
        raise UsageError(f"the features table has no label {label} (has: {have})", where="--horizon")
    feats = select_features(schema, features)
    if not feats:
        raise UsageError("the features table has no numeric feature column", where=str(parquet_dir))
    extra = [c for c in ("spread_bps", "imb_1") if c in schema.names and c not in feats]
    cols = ["time", "product_id", "valid", label, *feats, *extra]
    table = store.read(TABLE, products=products, start=lo, end=hi, columns=cols)
    n_read = table.num_rows
    valid = pc.fill_null(table.column("valid"), False)
    n_invalid = n_read - int(pc.sum(valid).as_py() or 0)
    table = table.filter(valid)
    has_label = pc.is_valid(table.column(label))
    n_nolabel = table.num_rows - int(pc.sum(has_label).as_py() or 0)
    table = table.filter(has_label)
    # deterministic order whatever the file layout: time, then product
    table = table.sort_by([("time", "ascending"), ("product_id", "ascending")])

    def num(c: str) -> np.ndarray:
        if c not in table.column_names:
            return np.full(table.num_rows, np.nan)
        return np.asarray(pc.cast(table.column(c), pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)

    X = np.column_stack([num(c) for c in feats]) if table.num_rows else np.empty((0, len(feats)))
    prod = np.asarray(table.column("product_id").to_pylist(), dtype=object)
    return Frame(
        time=np.asarray(pc.cast(table.column("time"), pa.int64()).to_numpy(), dtype=np.int64),
        product=prod, X=X, fwd=num(label), spread_bps=num("spread_bps"), imb_1=num("imb_1"),
        features=feats, products=sorted({str(p) for p in prod}),
        files={str(f.relative_to(store.root)): file_hash(f) for f in files},
        rows_read=n_read, rows_invalid=n_invalid, rows_no_label=n_nolabel,
    )


@dataclass(frozen=True)
class LabelSpec:
    """What is predicted: ``direction`` (2 classes, or 3 with a threshold) or ``return`` in bps."""

    target: str = "direction"
    threshold_bps: float | None = None

    @property
    def classes(self) -> int:
        if self.target == "return":
            return 0
        return 3 if self.threshold_bps is not None else 2

    @property
    def output_columns(self) -> list[str]:
        return {0: ["ret_bps"], 2: ["p_up"], 3: ["p_down", "p_flat", "p_up"]}[self.classes]

    def check(self) -> None:
        if self.target not in TARGETS:
            raise UsageError(f"unknown target {self.target!r} (direction or return)", where="--target")
        if self.threshold_bps is not None:
            if self.target != "direction":
                raise UsageError("--threshold-bps applies to --target direction only", where="--threshold-bps")
            if not self.threshold_bps > 0:
                raise UsageError("--threshold-bps must be > 0", where="--threshold-bps")

    def labels(self, fwd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(y, keep)``: the label for every row and which rows have one (direction drops no-move
        rows).  Classes: 0/1 = down/up; 0/1/2 = down/flat/up; return: bps as float."""
        bps = fwd * 1e4
        if self.target == "return":
            return bps, np.isfinite(bps)
        if self.threshold_bps is None:
            keep = np.isfinite(bps) & (bps != 0)
            return (bps > 0).astype(np.int64), keep
        t = self.threshold_bps
        y = np.where(bps > t, 2, np.where(bps < -t, 0, 1)).astype(np.int64)
        return y, np.isfinite(bps)


def apply_labels(frame: Frame, spec: LabelSpec) -> tuple[Frame, np.ndarray, int]:
    """The frame restricted to rows with a label, the labels, and how many no-move rows were left out."""
    y, keep = spec.labels(frame.fwd)
    dropped = int((~keep).sum())
    if not keep.all():
        frame = Frame(frame.time[keep], frame.product[keep], frame.X[keep], frame.fwd[keep],
                      frame.spread_bps[keep], frame.imb_1[keep], frame.features, frame.products, frame.files,
                      frame.rows_read, frame.rows_invalid, frame.rows_no_label)
        y = y[keep]
    if len(frame) == 0:
        raise DataError("no labelled rows to train on (valid rows with a non-null, non-zero label)")
    return frame, y, dropped
