"""Batch predictions (``mktpred predict``): a saved model over the features table into the store's
``predictions`` table, live prediction segments imported next to them, and the shared definition
of a prediction message (:func:`predict_rows`) that ``serve`` uses too."""

from mktpred.predict.rows import MESSAGE_KEYS, feature_matrix, predict_rows

__all__ = ["MESSAGE_KEYS", "feature_matrix", "predict_rows"]
