"""Data generators for the tests and the benchmarks (not used by any command).

- :mod:`mktpred.testing.raw`: realistic raw JSONL segments (``SynthSpec``, ``write_segment``,
  ``ensure_segment``), for convert tests and ``bench/bench_convert.py``.
- :mod:`mktpred.testing.store`: a Parquet store with known gaps, silences and duplicates
  (``write_synthetic_store``), for validate tests and ``bench/bench_validate.py``.
"""
