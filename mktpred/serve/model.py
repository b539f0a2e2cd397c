"""The model ``serve`` predicts with: loading and checking it before connecting, and watching
``<models_dir>/<name>/current`` for a newly promoted version (hot reload)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mktpred.errors import MktpredError, UsageError
from mktpred.features.engine import FEATURE_COLUMNS, FeatureSpec
from mktpred.models.registry import MODEL_JSON, LoadedModel, current_version, load_model

#: engine columns a model may use as features (everything numeric after the key columns)
ENGINE_FEATURES = frozenset(FEATURE_COLUMNS[5:])
CROSS_FEATURES = ("cross_ret_1", "cross_ofi_1")


@dataclass(frozen=True)
class ServedModel:
    """A loaded model with the feature spec it needs."""

    model: LoadedModel
    spec: FeatureSpec

    @property
    def label(self) -> str:
        return f"{self.model.name} {self.model.version}"


def check_model(model: LoadedModel) -> FeatureSpec:
    """The feature spec ``model`` was trained on; :class:`UsageError` when the online engine cannot
    compute its features."""
    where = str(model.path)
    if not model.interval_ns or int(model.interval_ns) <= 0:
        raise UsageError("model.json has no grid interval (interval_ns): incompatible feature set", where=where)
    unknown = [f for f in model.features if f not in ENGINE_FEATURES and f not in CROSS_FEATURES]
    if unknown:
        raise UsageError(f"incompatible feature set: the feature engine has no column {unknown[0]!r}", where=where)
    cross = model.meta.get("cross") or None
    if any(f in CROSS_FEATURES for f in model.features) and not cross:
        raise UsageError("the model uses cross_* features but model.json names no cross product", where=where)
    if not model.output_columns:
        raise UsageError("the model has no output columns", where=where)
    return FeatureSpec(int(model.interval_ns), (), cross if isinstance(cross, str) else None)


def load_served(path: Path) -> ServedModel:
    """Load and check ``path`` (a version directory or ``<models_dir>/<name>``)."""
    path = Path(path)
    if not path.exists():
        raise UsageError("model directory not found", where=str(path))
    model = load_model(path)
    return ServedModel(model, check_model(model))


def name_dir_of(path: Path) -> Path | None:
    """``<models_dir>/<name>`` when ``path`` names it (follow ``current``), else ``None`` (a fixed version)."""
    path = Path(path)
    return None if (path / MODEL_JSON).is_file() else path


class ModelWatcher(threading.Thread):
    """Polls ``<name>/current``; a changed pointer loads the new version off the hot path and hands it
    to ``on_model`` (the pipeline switches at its next grid point).  A version that fails to load or
    needs another feature spec is reported to ``on_error`` and skipped."""

    def __init__(self, name_dir: Path, current: str, spec: FeatureSpec, on_model: Callable[[ServedModel], None],
                 on_error: Callable[[str], None], poll_s: float = 0.25) -> None:
        super().__init__(name="mktpred-serve-models", daemon=True)
        self.name_dir = name_dir
        self.seen = current
        self.spec = spec
        self.on_model = on_model
        self.on_error = on_error
        self.poll_s = poll_s
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.poll_s):
            self.check()

    def check(self) -> None:
        """One look at the pointer (also called directly by tests)."""
        try:
            v = current_version(self.name_dir)
        except OSError:
            return
        if v is None or v == self.seen:
            return
        self.seen = v
        try:
            served = load_served(self.name_dir / v)
        except MktpredError as exc:
            self.on_error(f"model {v} not loaded: {exc}")
            return
        if served.spec != self.spec:
            self.on_error(f"model {v} not loaded: it needs another feature spec ({served.spec}) than the one "
                          f"serving ({self.spec})")
            return
        self.on_model(served)
