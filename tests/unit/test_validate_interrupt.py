"""DuckDB reports a cancelled query as an error, not as ``KeyboardInterrupt``: a Ctrl-C (SIGINT)
during a query raises ``RuntimeError("Query interrupted")`` (DuckDB 2.0, seen in `mktpred validate`
tracebacks), ``con.interrupt()`` raises ``duckdb.InterruptException``.  validate turns both back
into ``KeyboardInterrupt`` (exit 130, no traceback); other errors pass through."""

from __future__ import annotations

import threading

import duckdb
import pytest

from mktpred.validate.core import duckdb_interrupts, is_interrupt


def test_an_interrupted_query_becomes_keyboard_interrupt() -> None:
    """A long query interrupted from another thread surfaces as KeyboardInterrupt inside the guard."""
    con = duckdb.connect()
    timer = threading.Timer(0.2, con.interrupt)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt) as info, duckdb_interrupts():
            con.execute("SELECT sum(hash(range)) FROM range(20000000000)").fetchall()
    finally:
        timer.cancel()
        con.close()
    assert info.value.__cause__ is None


def test_the_sigint_form_is_recognised() -> None:
    """DuckDB's SIGINT error (a bare RuntimeError) counts as an interrupt; other RuntimeErrors do not."""
    assert is_interrupt(RuntimeError("Query interrupted"))
    assert not is_interrupt(RuntimeError("something else"))
    with pytest.raises(KeyboardInterrupt), duckdb_interrupts():
        raise RuntimeError("Query interrupted")


def test_other_errors_pass_through() -> None:
    """A DuckDB error that is not an interrupt is raised unchanged."""
    con = duckdb.connect()
    with pytest.raises(duckdb.CatalogException), duckdb_interrupts():
        con.execute("SELECT * FROM no_such_table")
    con.close()
