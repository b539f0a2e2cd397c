"""Coverage: frames per minute per channel (``messages``), rows per minute per product (``ticker``/``l2``),
gaps (``events``) and silences longer than ``max_silence_s`` between frames of one connection."""

from __future__ import annotations

from mktpred.coinbase.timestamps import format_iso_ns
from mktpred.report.section import Section, absent, r6
from mktpred.store.reader import Store

NAME, TITLE = "coverage", "Coverage"
_MINUTE_NS = 60 * 10**9


def coverage_section(store: Store, *, max_silence_s: float = 5.0) -> Section:
    """Frames per minute per channel, gaps and silences; absent without a ``messages`` table."""
    import duckdb

    files = [str(f) for f in store.files("messages")]
    if not files:
        return absent(NAME, TITLE, "no messages table in the store")
    con = duckdb.connect()
    rows = con.execute(
        "SELECT epoch_ns(time) // $m * $m AS minute, channel, count(*) FROM read_parquet($f) "
        "WHERE time IS NOT NULL GROUP BY ALL ORDER BY minute, channel",
        {"f": files, "m": _MINUTE_NS}).fetchall()
    per_channel: dict[str, dict[int, int]] = {}
    for minute, channel, n in rows:
        per_channel.setdefault(str(channel), {})[int(minute)] = int(n)
    totals = {c: sum(v.values()) for c, v in sorted(per_channel.items())}
    per_product: dict[str, dict[int, int]] = {}
    for table in ("ticker", "l2"):
        pfiles = [str(f) for f in store.files(table)]
        if not pfiles or per_product:
            continue
        for minute, product, n in con.execute(
                "SELECT epoch_ns(time) // $m * $m, product_id, count(*) FROM read_parquet($f) "
                "GROUP BY ALL ORDER BY 1, 2", {"f": pfiles, "m": _MINUTE_NS}).fetchall():
            per_product.setdefault(str(product), {})[int(minute)] = int(n)
    gaps: list[dict[str, object]] = []
    efiles = [str(f) for f in store.files("events")]
    if efiles:
        for t, conn, expected, got in con.execute(
                "SELECT epoch_ns(time), conn, expected, got FROM read_parquet($f) WHERE event = 'gap' "
                "ORDER BY 1", {"f": efiles}).fetchall():
            gaps.append({"time_ns": int(t), "conn": conn, "expected": expected, "got": got})
    silences = [{"conn": c, "start_ns": int(a), "end_ns": int(b), "seconds": r6((b - a) / 1e9)}
                for c, a, b in con.execute(
                    "SELECT conn, t, nt FROM (SELECT conn, epoch_ns(time) t, lead(epoch_ns(time)) OVER "
                    "(PARTITION BY conn ORDER BY time) nt FROM read_parquet($f) WHERE time IS NOT NULL) "
                    "WHERE nt - t > $s ORDER BY t", {"f": files, "s": int(max_silence_s * 1e9)}).fetchall()]
    span = con.execute("SELECT epoch_ns(min(time)), epoch_ns(max(time)), count(*) FROM read_parquet($f)",
                       {"f": files}).fetchone()
    assert span is not None
    data = {"frames": int(span[2]), "first": None if span[0] is None else format_iso_ns(int(span[0])),
            "last": None if span[1] is None else format_iso_ns(int(span[1])), "frames_per_channel": totals,
            "rows_per_product": {p: sum(v.values()) for p, v in sorted(per_product.items())},
            "minutes": len({m for v in per_channel.values() for m in v}),
            "gaps": gaps, "max_silence_s": max_silence_s, "silences": silences}
    return Section(NAME, TITLE, True, data=data,
                   series={"per_channel": per_channel, "per_product": per_product})
