"""Book audit: the rebuilt top of book against the ticker (:func:`mktpred.book.audit_book`)."""

from __future__ import annotations

from mktpred.report.section import Section, absent
from mktpred.store.reader import Store

NAME, TITLE = "book_audit", "Book audit"


def audit_section(store: Store, *, window_ms: int = 500, threshold: float = 0.99) -> Section:
    """The audit's JSON (match rates per product); absent without the l2 and ticker tables."""
    from mktpred.book.audit import audit_book

    tables = store.tables()
    if "l2" not in tables or "ticker" not in tables:
        return absent(NAME, TITLE, "the audit needs the l2 and ticker tables")
    res = audit_book(store, window_ms=window_ms, threshold=threshold)
    data = res.to_json()
    series = {p: {str(w): (g.rate(w) or 0.0) for w in res.windows} for p, g in res.product_totals().items()}
    return Section(NAME, TITLE, True, data=data, series=series)
