"""`mktpred book`: top-N order-book snapshots from the l2 table (the core is :mod:`mktpred.book`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal
from mktpred.config import load_config
from mktpred.errors import DataError
from mktpred.wording import plural

if TYPE_CHECKING:
    from mktpred.book import AuditResult, BookResult


@command("book")
def book_command(
    parquet_dir: Annotated[Path | None, typer.Option(help="The Parquet store.", show_default=False)] = None,
    depth: Annotated[int | None, typer.Option(help="Levels per side, 1..50 (default 10).", show_default=False)] = None,
    interval: Annotated[str | None, typer.Option(help="Snapshot grid, e.g. 100ms or 1s (default: config "
                                                      "book.interval).", show_default=False)] = None,
    every_update: Annotated[bool, typer.Option("--every-update", help="A snapshot after every level2 frame "
                                                                      "instead of a grid.")] = False,
    products: Annotated[str | None, typer.Option(help="Comma-separated product ids (default: all).",
                                                 show_default=False)] = None,
    start: Annotated[str | None, typer.Option(help="First time, e.g. 2026-08-09 or 2026-08-09T21:00:00Z.",
                                              show_default=False)] = None,
    end: Annotated[str | None, typer.Option(help="End time (exclusive).", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild days that are up to date too.")] = False,
    audit: Annotated[bool, typer.Option("--audit", help="Then audit the rebuilt top of book against the "
                                                        "ticker (exit 1 below the threshold).")] = False,
    audit_window_ms: Annotated[int | None, typer.Option(help="Audit tolerance window in ms (default 500).",
                                                        show_default=False)] = None,
    audit_threshold: Annotated[float | None, typer.Option(help="Minimum match rate within the window "
                                                               "(default 0.99).", show_default=False)] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rebuild top-N order-book snapshots from the l2 table into the store's book table, and audit them
    against the exchange's own ticker.

    Incremental: only days whose inputs changed are rebuilt.

    Example: mktpred book --depth 10 --interval 100ms --audit"""
    from mktpred.book import audit_book, build_book, parse_duration

    cfg = load_config(config, {
        "paths.parquet_dir": parquet_dir, "book.depth": depth, "book.interval": interval,
        "book.audit_window_ms": audit_window_ms, "book.audit_threshold": audit_threshold,
    })
    b = cfg.book
    interval_ns = None if every_update else parse_duration(b.interval)
    plist = [p.strip() for p in products.split(",") if p.strip()] if products else None
    term = Terminal()
    with term.progress("book") as cb:
        result = build_book(cfg.paths.parquet_dir, depth=b.depth, interval_ns=interval_ns, products=plist,
                            start=start, end=end, force=force, compression=cfg.convert.compression,
                            compression_level=cfg.convert.compression_level, progress=cb)
    report = None
    if audit:
        report = audit_book(cfg.paths.parquet_dir, products=plist, start=start, end=end,
                            window_ms=b.audit_window_ms, threshold=b.audit_threshold)
    if as_json:
        doc = result.to_json()
        if report is not None:
            doc["audit"] = report.to_json()
        term.json(doc)
    else:
        _render_build(term, result)
        if report is not None:
            _render_audit(term, report)
    if report is not None and not report.passed:
        raise DataError(f"audit: match rate within ±{report.window_ms} ms below "
                        f"{report.threshold:.2%} for {', '.join(report.failing)}")


def _render_build(term: Terminal, r: BookResult) -> None:
    rows = [(p.product, ", ".join(p.dates_written) or "-", f"{p.snapshots:,}", f"{p.updates:,}",
             f"{p.invalid_rows:,} ({len(p.invalid_spans)} spans)", f"{p.crossed_rows:,}",
             f"{p.updates_per_s:,.0f}" if p.updates else "-") for p in r.products]
    term.table(f"book: depth {r.depth}, {r.interval}", ["product", "days written", "snapshots", "updates",
                                                         "invalid", "crossed", "updates/s"], rows, to_stdout=True)
    skipped = sum(1 for p in r.products if not p.dates_written and p.dates_skipped)
    term.info(f"book: {r.snapshots:,} snapshots from {r.updates:,} level updates in {r.elapsed_s:.2f} s"
              + (f"; {plural(skipped, 'product')} up to date" if skipped else "")
              + (f"; {plural(r.gaps, 'sequence gap')} in the store" if r.gaps else ""))


def _render_audit(term: Terminal, a: AuditResult) -> None:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    rows = []
    for g in a.groups:
        rows.append((g.product, g.date, f"{g.tickers}", f"{g.exact}/{g.tickers} ({pct(g.rate())})",
                     *(pct(g.rate(w)) for w in a.windows), f"{g.no_book}", f"{g.invalid}"))
    term.table(f"audit: rebuilt top of book vs ticker (threshold {a.threshold:.1%} within ±{a.window_ms} ms)",
               ["product", "day", "tickers", "same moment", *(f"±{w} ms" for w in a.windows), "no book",
                "invalid"], rows, to_stdout=True)
    if a.worst:
        term.table("worst mismatches", ["product", "time", "seq", "ticker bid/ask", "book bid/ask", "nearest match"],
                   [(m.product, m.to_json()["time"], m.seq, f"{m.ticker_bid} / {m.ticker_ask}",
                     f"{m.book_bid} / {m.book_ask}",
                     "none" if m.nearest_ms is None else f"{m.nearest_ms:.1f} ms") for m in a.worst], to_stdout=True)
    tot = a.total()
    if not tot.tickers:
        term.warn("audit: no ticker could be compared (no ticker after a level2 snapshot)")
        return
    term.info(f"audit: {tot.exact}/{tot.tickers} tickers match at the same moment ({pct(tot.rate())}), "
              f"{tot.within.get(a.window_ms, 0)}/{tot.tickers} within ±{a.window_ms} ms "
              f"({pct(tot.rate(a.window_ms))}): {'pass' if a.passed else 'FAIL'}")
