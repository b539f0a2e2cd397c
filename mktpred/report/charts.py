"""Charts as inline SVG (matplotlib, Agg backend, imported lazily): one function per section's charts."""

from __future__ import annotations

import io
import re
from typing import Any

from mktpred.report.section import Section

_HEADER = re.compile(r"^.*?(?=<svg)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>", re.S)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "figure.dpi": 96})
    return plt


def to_svg(fig: Any) -> str:
    """The figure as an ``<svg>`` element: no XML prologue, no metadata (which carries URLs)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    _plt().close(fig)
    return _METADATA.sub("", _HEADER.sub("", buf.getvalue(), count=1))


def _times(ns: list[int]) -> list[Any]:
    import pandas as pd

    return list(pd.to_datetime(ns, utc=True).tz_localize(None))


def section_charts(s: Section) -> list[tuple[str, str]]:
    """``(caption, svg)`` for each chart of a section (none when the section is absent)."""
    if not s.available:
        return []
    plt = _plt()
    out: list[tuple[str, str]] = []
    if s.name == "coverage":
        for key, what in (("per_channel", "frames per minute per channel"), ("per_product", "rows per minute per product")):
            series = s.series.get(key) or {}
            if not series:
                continue
            fig, ax = plt.subplots(figsize=(9, 3))
            for name, by_min in sorted(series.items()):
                ks = sorted(by_min)
                ax.step(_times(ks), [by_min[k] for k in ks], where="post", label=name)
            for g in s.data["gaps"]:
                ax.axvline(_times([g["time_ns"]])[0], color="red", lw=1)
            for sil in s.data["silences"]:
                a, b = _times([sil["start_ns"], sil["end_ns"]])
                ax.axvspan(a, b, color="orange", alpha=0.3)
            ax.set_ylabel(what)
            ax.set_xlabel("UTC")
            ax.legend(fontsize=7, ncol=4)
            out.append((f"{what} (gaps red, silences orange)", to_svg(fig)))
    elif s.name == "market":
        fig, axes = plt.subplots(len(s.series), 2, figsize=(9, 2.2 * len(s.series)), squeeze=False)
        for row, (p, ser) in enumerate(sorted(s.series.items())):
            t = _times(ser["t"])
            axes[row][0].plot(t, ser["mid"])
            axes[row][0].set_ylabel(f"{p} mid")
            axes[row][1].plot(t, ser["spread_bps"], color="tab:orange")
            axes[row][1].set_ylabel(f"{p} spread bps")
        axes[-1][0].set_xlabel("UTC")
        axes[-1][1].set_xlabel("UTC")
        for ax in axes.flat:  # every row keeps its own time labels: products may span different hours
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        fig.tight_layout()
        out.append(("mid and spread per product", to_svg(fig)))
    elif s.name == "book_audit":
        fig, ax = plt.subplots(figsize=(6, 2.5))
        for p, rates in sorted(s.series.items()):
            ax.plot([int(w) for w in rates], list(rates.values()), marker="o", label=p)
        ax.set_xlabel("window ms")
        ax.set_ylabel("ticker matched")
        ax.legend(fontsize=7)
        out.append(("share of tickers the rebuilt book matches, by window", to_svg(fig)))
    elif s.name == "features":
        hist = s.series["hist"]
        if hist:
            cols = 4
            n = len(hist)
            fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(10, 1.8 * ((n + cols - 1) // cols)),
                                     squeeze=False)
            for i, (c, (counts, edges)) in enumerate(hist.items()):
                ax = axes[i // cols][i % cols]
                ax.stairs(counts, edges, fill=True)
                ax.set_title(c, fontsize=8)
            for j in range(n, len(axes) * cols):
                axes[j // cols][j % cols].axis("off")
            fig.tight_layout()
            out.append(("feature distributions (valid rows)", to_svg(fig)))
        corr = s.data["correlation"]
        labels = s.data["labels"]
        if corr and labels:
            import numpy as np

            m = np.array([[np.nan if corr[f][lab] is None else corr[f][lab] for lab in labels] for f in corr])
            fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(labels), 0.3 * len(corr) + 1))
            im = ax.imshow(m, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
            ax.set_xticks(range(len(labels)), labels)
            ax.set_yticks(range(len(corr)), list(corr))
            fig.colorbar(im, ax=ax)
            out.append(("correlation of each feature with each forward return", to_svg(fig)))
    elif s.name == "models":
        for key, doc in s.data["models"].items():
            folds = doc.get("folds")
            if folds:
                fig, ax = plt.subplots(figsize=(6, 2.5))
                ax.plot([f["fold"] for f in folds], [f["auc"] for f in folds], marker="o", label="model")
                for b, bd in doc["baselines"].items():
                    ax.plot([f["fold"] for f in bd["folds"]], [f["auc"] for f in bd["folds"]], marker=".", label=b)
                ax.set_xlabel("fold")
                ax.set_ylabel("AUC")
                ax.legend(fontsize=7)
                out.append((f"{key}: AUC per fold against the baselines", to_svg(fig)))
            ser = s.series.get(key)
            if ser:
                fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3))
                cal = ser["calibration"]
                a1.plot([0, 1], [0, 1], color="grey", lw=0.8)
                a1.plot([c["mean_p"] for c in cal], [c["frac_up"] for c in cal], marker="o")
                a1.set_xlabel("predicted p_up")
                a1.set_ylabel("observed share up")
                t = _times(ser["t"])
                a2.plot(t, ser["gross"], label="gross")
                a2.plot(t, ser["net"], label="net of half spread")
                a2.set_ylabel("cumulative signed fwd return")
                a2.legend(fontsize=7)
                fig.autofmt_xdate()
                out.append((f"{key}: calibration and cumulative return of the signal", to_svg(fig)))
    return out
