"""``mktpred validate``: prove a Parquet store is complete and sound, and show where it is not."""

from mktpred.validate.core import validate_store
from mktpred.validate.report import (
    CheckResult,
    CoverageRow,
    Finding,
    SequenceGap,
    Silence,
    Status,
    ValidationReport,
)

__all__ = [
    "CheckResult",
    "CoverageRow",
    "Finding",
    "SequenceGap",
    "Silence",
    "Status",
    "ValidationReport",
    "validate_store",
]
