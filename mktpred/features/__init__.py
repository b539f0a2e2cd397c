"""Stage 3: the ``features`` table (DESIGN.md, "Stage 3: the ``features`` table").

:class:`FeatureEngine` is the one incremental implementation: ``mktpred features`` feeds it from
the store (:mod:`mktpred.features.batch`), ``serve`` from the live socket.
"""

from mktpred.features.engine import FEATURE_COLUMNS, FeatureEngine, FeatureSpec, aggressor_of
from mktpred.features.labels import add_labels, label_name

__all__ = ["FEATURE_COLUMNS", "FeatureEngine", "FeatureSpec", "add_labels", "aggressor_of", "label_name"]
