"""Small helpers for the words of summary lines (the core's messages and the CLI's)."""

from __future__ import annotations


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """``n`` with ``noun`` in the right number: ``1 segment``, ``2 segments``, ``1,200 entries``.

    Regular English plurals (``-s``, ``-es`` after s/x/ch/sh, ``-ies`` after a consonant + y);
    pass ``plural_form`` for any other word.
    """
    if n == 1:
        word = noun
    elif plural_form is not None:
        word = plural_form
    elif noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u", ""):
        word = noun[:-1] + "ies"
    elif noun.endswith(("s", "x", "ch", "sh")):
        word = noun + "es"
    else:
        word = noun + "s"
    return f"{n:,} {word}"
