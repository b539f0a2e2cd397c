"""Stage 4: purged walk-forward models over the ``features`` table (train, evaluate, retrain, registry)."""
