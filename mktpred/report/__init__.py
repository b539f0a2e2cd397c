"""``mktpred report``: one self-contained HTML page over a store and its models, and Power BI tables.

Each section (coverage, market, book audit, features, models) is computed by a pure function that returns
a :class:`Section`; ``--json`` prints the same numbers the page shows.  A section whose data is absent
says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mktpred.progress import Progress, ProgressCallback, no_progress
from mktpred.report.section import Section

__all__ = ["Report", "Section", "build_report", "write_report"]


@dataclass
class Report:
    """The sections, and where the page was written (when it was)."""

    parquet_dir: Path
    models_dir: Path
    sections: list[Section]
    out: Path | None = None
    bytes: int = 0
    powerbi: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"parquet_dir": str(self.parquet_dir), "models_dir": str(self.models_dir),
                "out": None if self.out is None else str(self.out), "bytes": self.bytes,
                "sections": {s.name: s.to_dict() for s in self.sections},
                **({"powerbi": self.powerbi} if self.powerbi else {})}


def build_report(parquet_dir: Path, models_dir: Path, *, max_silence_s: float = 5.0, audit_window_ms: int = 500,
                 audit_threshold: float = 0.99, progress: ProgressCallback = no_progress) -> Report:
    """Every section's numbers (no file written)."""
    from mktpred.report import audit, coverage, features, market, models
    from mktpred.report.audit import audit_section
    from mktpred.report.coverage import coverage_section
    from mktpred.report.features import features_section
    from mktpred.report.market import market_section
    from mktpred.report.models import models_section
    from mktpred.store.reader import open_store

    store = open_store(parquet_dir)
    steps = [(coverage, lambda: coverage_section(store, max_silence_s=max_silence_s)),
             (market, lambda: market_section(store)),
             (audit, lambda: audit_section(store, window_ms=audit_window_ms, threshold=audit_threshold)),
             (features, lambda: features_section(parquet_dir)),
             (models, lambda: models_section(models_dir))]
    sections = []
    for i, (mod, fn) in enumerate(steps):
        progress(Progress("report", files_done=i, files_total=len(steps), current=mod.TITLE.lower()))
        sections.append(_guarded(mod.NAME, mod.TITLE, fn))
    progress(Progress("report", files_done=len(steps), files_total=len(steps)))
    return Report(parquet_dir, models_dir, sections)


def _guarded(name: str, title: str, build: Callable[[], Section]) -> Section:
    """A section, or, when a file it reads is damaged or foreign, the section saying so (the rest of
    the report is still worth having; ``validate`` names the damage)."""
    import duckdb
    import pyarrow as pa

    from mktpred.errors import DataError
    from mktpred.report.section import absent

    try:
        return build()
    except (duckdb.Error, pa.ArrowException, DataError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return absent(name, title, f"could not be read: {first} (run mktpred validate)")


def write_report(report: Report, out: Path) -> Report:
    """Render the page and write it atomically to ``out``."""
    import contextlib
    import os

    from mktpred.errors import OutputNotWritable
    from mktpred.report.html import render_html

    text = render_html(report.sections)
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OutputNotWritable(f"cannot write the report: {exc.strerror or exc}", where=str(out)) from None
    report.out = out
    report.bytes = len(text.encode("utf-8"))
    return report
