"""The HTML assembler: one self-contained page (inline CSS and SVG, no script, no external URL)."""

from __future__ import annotations

import html
import json
from typing import Any

from mktpred.report.charts import section_charts
from mktpred.report.section import Section

_CSS = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}"
        ".absent{color:#a00}figure{margin:1em 0}figcaption{font-size:12px;color:#555}")


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _scalar(v: Any) -> str:
    return "" if v is None else _e(v)


def _table(rows: list[dict[str, Any]], cls: str = "") -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_scalar(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def _tables(s: Section) -> str:
    d = s.data
    parts: list[str] = []
    if s.name == "coverage":
        parts.append(_table([{"channel": c, "frames": n} for c, n in d["frames_per_channel"].items()]))
        parts.append(_table([{"product": p, "rows": n} for p, n in d["rows_per_product"].items()]))
        parts.append(f"<p>{d['frames']} frames over {d['minutes']} minutes; {len(d['gaps'])} gaps; "
                     f"{len(d['silences'])} silences longer than {_e(d['max_silence_s'])} s</p>")
        parts.append(_table(d["silences"]))
    elif s.name == "market":
        parts.append(_table([{"product": p, **v} for p, v in d["products"].items()]))
    elif s.name == "book_audit":
        parts.append(_table([{"product": p, "tickers": v.get("tickers"), "exact": v.get("exact")}
                             for p, v in d["products"].items()]))
        parts.append(f"<p>passed: {_e(d['passed'])}</p>")
    elif s.name == "features":
        parts.append(f"<p>{d['rows']} valid rows</p>")
        parts.append(_table([{"feature": f, **v} for f, v in d["distribution"].items()]))
        parts.append(_table([{"feature": f, **v} for f, v in d["correlation"].items()]))
    elif s.name == "models":
        for key, doc in d["models"].items():
            parts.append(f"<h3>{_e(key)}</h3>")
            if "error" in doc:
                parts.append(f'<p class="absent">{_e(doc["error"])}</p>')
                continue
            if "evaluation" in doc:
                parts.append(f"<p>{_e(doc['evaluation'])}</p>")
            rows = [{"who": "model", **doc["pooled"]}] + [{"who": b, **bd["pooled"]} for b, bd in doc["baselines"].items()]
            parts.append(_table(rows))
            parts.append(_table(doc["folds"]))
            if "signal" in doc:
                parts.append(_table([doc["signal"]]))
                parts.append(_table(doc["calibration"]))
    return "".join(parts)


def render_html(sections: list[Section], *, title: str = "mktpred report") -> str:
    """The page: a heading per section, its tables, its charts (or why the section is absent)."""
    body: list[str] = [f"<h1>{_e(title)}</h1>"]
    for s in sections:
        body.append(f'<section id="{_e(s.name)}"><h2>{_e(s.title)}</h2>')
        if not s.available:
            body.append(f'<p class="absent">absent: {_e(s.reason)}</p>')
        else:
            body.append(_tables(s))
            for caption, svg in section_charts(s):
                body.append(f'<figure class="chart">{svg}<figcaption>{_e(caption)}</figcaption></figure>')
        body.append("</section>")
    data = html.escape(json.dumps({s.name: s.to_dict() for s in sections}, default=str))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_CSS}</style></head><body>{''.join(body)}"
            f'<details><summary>numbers (JSON)</summary><pre id="report-json">{data}</pre></details>'
            "</body></html>")
