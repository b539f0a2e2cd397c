"""What the ``convert`` and ``csv2parquet`` run summaries share: totals, rates and the final check."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

from mktpred.errors import EXIT_DATA, DataError, MktpredError, TooManyInvalidLines


class Failure(Protocol):
    """An input that could not be converted (the others go on)."""

    @property
    def source(self) -> str: ...
    @property
    def error(self) -> str: ...
    @property
    def exit_code(self) -> int: ...


class RunSummary:
    """Mixin for a run summary dataclass that declares these fields itself."""

    #: ``"<n> <failed_what>; first: ..."``, e.g. ``"segment(s) could not be converted"``
    failed_what: ClassVar[str]
    #: ``"<n> <invalid_what> quarantined, ..."``, e.g. ``"invalid line(s)"``
    invalid_what: ClassVar[str]

    parquet_dir: str
    rows: dict[str, int]
    invalid: int
    max_invalid: int
    input_bytes: int
    seconds: float
    failures: Sequence[Failure]
    notes: list[str]

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def counted_invalid(self) -> int:
        """The quarantined lines ``max_invalid`` is held against (``convert``: every run's)."""
        return self.invalid

    @property
    def too_many_invalid(self) -> bool:
        return self.counted_invalid > self.max_invalid

    def per_second(self, count: float) -> int:
        """``count`` over the run's seconds, rounded (a run of 0 s counts as 1 ns)."""
        return round(count / max(self.seconds, 1e-9))

    @property
    def mb_per_s(self) -> float:
        return round(self.input_bytes / 1e6 / max(self.seconds, 1e-9), 1)

    def failures_json(self) -> list[dict[str, Any]]:
        return [{"source": f.source, "error": f.error} for f in self.failures]

    def check(self) -> None:
        """Raise the error this run ends with, if any (after the summary was shown)."""
        if self.failures:
            worst = max(self.failures, key=lambda f: f.exit_code)
            err: type[MktpredError] = DataError if worst.exit_code == EXIT_DATA else MktpredError
            raise err(f"{len(self.failures)} {self.failed_what}; first: {worst.error}", where=worst.source)
        if self.too_many_invalid:
            raise TooManyInvalidLines(
                f"{self.counted_invalid} {self.invalid_what} quarantined, more than the {self.max_invalid} allowed "
                f"(--max-invalid)", where=str(Path(self.parquet_dir) / "_quarantine"))
