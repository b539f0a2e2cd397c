"""Stage 2: order books rebuilt from the store's level2 table, and their audit against the ticker."""

from mktpred.book.audit import AuditGroup, AuditResult, Mismatch, audit_book, top_of_book_states
from mktpred.book.build import BookResult, ProductBook, build_book
from mktpred.book.gaps import GapIndex, load_gaps
from mktpred.book.levels import TopBook
from mktpred.book.replay import Replayer, ReplayStats
from mktpred.book.table import BookChunk, book_schema, parse_duration

__all__ = [
    "AuditGroup",
    "AuditResult",
    "BookChunk",
    "BookResult",
    "GapIndex",
    "Mismatch",
    "ProductBook",
    "ReplayStats",
    "Replayer",
    "TopBook",
    "audit_book",
    "book_schema",
    "build_book",
    "load_gaps",
    "parse_duration",
    "top_of_book_states",
]
