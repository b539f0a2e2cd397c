"""The result of one report section: its JSON numbers, the series its charts draw, or why it is absent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Section:
    """One section: ``data`` is what ``--json`` prints; ``series`` feeds the charts only."""

    name: str
    title: str
    available: bool
    reason: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "available": self.available, "reason": self.reason, **self.data}


def absent(name: str, title: str, reason: str) -> Section:
    """A section whose data is not there."""
    return Section(name, title, False, reason)


def r6(x: float | None) -> float | None:
    """Rounded to 6 decimals (what both the HTML and the JSON show); NaN becomes None."""
    if x is None or x != x:
        return None
    return round(float(x), 6)
