"""Raw JSONL segments to the Parquet store: the engine interface, the CPU engine, the runner.

Public API: :func:`run_convert` (the ``convert`` command as a call), :func:`convert_segment`
(one segment; picklable for Dask), :func:`select_engine`, :class:`ConversionEngine`.
"""

from mktpred.convert.engine import ConversionEngine, EngineBatch, EngineRejected
from mktpred.convert.factory import select_engine
from mktpred.convert.jobs import SegmentFailure, SegmentJob, SegmentResult
from mktpred.convert.runner import ConvertSummary, run_convert
from mktpred.convert.segment import convert_segment

__all__ = [
    "ConversionEngine",
    "ConvertSummary",
    "EngineBatch",
    "EngineRejected",
    "SegmentFailure",
    "SegmentJob",
    "SegmentResult",
    "convert_segment",
    "run_convert",
    "select_engine",
]
