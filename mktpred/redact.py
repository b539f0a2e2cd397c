"""Credentials never reach a terminal, a log or a record: URLs are shown without them."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """The URL without credentials or query string (they may carry secrets), for logs and records."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if port:
        host = f"{host}:{port}"
    netloc = ("***@" if parts.username or parts.password else "") + host
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def redact_text(text: str) -> str:
    """``text`` with :func:`redact_url` applied when it is a URL (``scheme://...``), else as is."""
    if "://" not in text:
        return text
    scheme = text.split("://", 1)[0]
    return redact_url(text) if scheme.isalpha() else text
