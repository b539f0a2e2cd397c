"""``book_audit``: when the store has a ``book`` table, the top of book rebuilt from ``l2`` against
Coinbase's own ticker (:func:`mktpred.book.audit_book`, the audit ``mktpred book --audit`` runs).

It passes when, for every product of the ``book`` table, the share of tickers whose best bid/ask
the rebuilt book shows within ±``window_ms`` is at least ``threshold`` (config ``[book]``
``audit_window_ms`` / ``audit_threshold``).  The audit replays ``l2`` itself, so it only runs when
every ``l2``, ``ticker``, ``messages`` and ``events`` file is readable and on contract (otherwise
``readable`` / ``schema`` already fail, and this check says it did not run).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from mktpred.book.audit import AuditResult, Mismatch, audit_book
from mktpred.book.table import BOOK_TABLE
from mktpred.coinbase.timestamps import format_iso_ns
from mktpred.errors import MktpredError
from mktpred.validate.content import TableStats
from mktpred.validate.inventory import Inventory, _first_line
from mktpred.validate.report import MAX_LOCATIONS, CheckResult, Status

NAME = "book_audit"
#: the tables the audit reads
AUDIT_INPUTS = ("l2", "ticker", "messages", "events")
#: mismatches listed as locations
WORST = 10


def _products(stats: dict[str, TableStats], table: str) -> set[str]:
    return {str(g["product_id"]) for g in stats.get(table, TableStats(table)).groups
            if g.get("product_id") is not None}


def check_book_audit(inv: Inventory, stats: dict[str, TableStats], *, window_ms: int,
                     threshold: float) -> CheckResult | None:
    """The audit over the products of the ``book`` table; ``None`` when the store has no ``book``."""
    if not (inv.root / BOOK_TABLE).is_dir():
        return None
    broken = [f.rel for f in inv.files if f.table in AUDIT_INPUTS and not f.usable]
    if broken:
        more = f" (+{len(broken) - 1} more)" if len(broken) > 1 else ""
        return CheckResult(NAME, Status.WARN, 1, f"not run: {broken[0]} is unreadable or off contract{more}",
                           broken[:MAX_LOCATIONS], 0)
    chosen = sorted(_products(stats, BOOK_TABLE) & _products(stats, "l2") & _products(stats, "ticker"))
    if not chosen:
        return CheckResult(NAME, Status.PASS, 0, "not run: no product has book, l2 and ticker rows", [], 0)
    try:
        result = audit_book(inv.root, products=chosen, window_ms=window_ms, threshold=threshold, worst=WORST)
    except (MktpredError, OSError, ValueError, pa.ArrowException, duckdb.Error) as exc:
        return CheckResult(NAME, Status.FAIL, 1, f"the audit could not run: {_first_line(exc)}", [], 0)
    return audit_check(result)


def _pct(n: int, d: int) -> str:
    return f"{n / d:.1%}" if d else "n/a"


def mismatch_text(m: Mismatch, window_ms: int) -> str:
    """One location: the ticker, what the rebuilt book showed, how far the nearest match was."""
    def pair(bid: float | None, ask: float | None) -> str:
        return f"{'-' if bid is None else bid} / {'-' if ask is None else ask}"

    if m.nearest_ms is None:
        near = f"no match within ±{window_ms} ms"
    elif m.nearest_ms > window_ms:
        near = f"nearest match {m.nearest_ms:.1f} ms away, outside ±{window_ms} ms"
    else:
        near = f"matched {m.nearest_ms:.1f} ms away"
    state = "" if m.valid else " (book invalid after a gap)"
    return (f"{m.product} {format_iso_ns(m.time)} conn {m.conn} seq {m.seq}: ticker bid/ask "
            f"{pair(m.ticker_bid, m.ticker_ask)}, rebuilt book {pair(m.book_bid, m.book_ask)}{state}; {near}")


def audit_check(result: AuditResult) -> CheckResult:
    """The check's verdict from an :class:`AuditResult`: fail below the threshold for any product."""
    w = result.window_ms
    tot = result.total()
    within = tot.within.get(w, 0)
    summary = (f"{within:,}/{tot.tickers:,} tickers match the rebuilt top of book within ±{w} ms "
               f"({_pct(within, tot.tickers)}), {tot.exact:,} at the same moment ({_pct(tot.exact, tot.tickers)})")
    if result.passed:
        return CheckResult(NAME, Status.PASS, 0, f"{summary}; threshold {result.threshold:.2%}", [], tot.tickers)
    per = result.product_totals()
    failing = [(p, per[p]) for p in result.failing]
    unmatched = sum(g.tickers - g.within.get(w, 0) for _, g in failing)
    heads = [f"{p}: {g.within.get(w, 0):,}/{g.tickers:,} tickers within ±{w} ms ({_pct(g.within.get(w, 0), g.tickers)})"
             f", below the threshold {result.threshold:.2%}" for p, g in failing]
    locations = heads + [mismatch_text(m, w) for m in result.worst]
    return CheckResult(NAME, Status.FAIL, unmatched, "; ".join(heads), locations[:MAX_LOCATIONS], tot.tickers)
