"""Market: mid and spread per product over time, from the ticker's best bid/ask (else the ``book`` table)."""

from __future__ import annotations

from mktpred.coinbase.timestamps import format_iso_ns
from mktpred.report.section import Section, absent, r6
from mktpred.store.reader import Store

NAME, TITLE = "market", "Market"


def market_section(store: Store, *, points: int = 500) -> Section:
    """Mid and spread (bps) per product, averaged in up to ``points`` buckets; summary per product."""
    import duckdb

    sources = [(t, b, a, [str(f) for f in store.files(t)])
               for t, b, a in (("ticker", "best_bid", "best_ask"), ("book", "bid_price_0", "ask_price_0"))]
    found = [s for s in sources if s[3]]
    if not found:
        return absent(NAME, TITLE, "no ticker or book table in the store")
    table, bid, ask, files = found[0]
    con = duckdb.connect()
    base = (f"SELECT product_id, epoch_ns(time) AS t, ({bid} + {ask}) / 2 AS mid, {ask} - {bid} AS spread "
            f"FROM read_parquet($f) WHERE {bid} > 0 AND {ask} > 0")
    try:
        summary = con.execute(
            f"SELECT product_id, count(*), min(t), max(t), avg(mid), min(mid), max(mid), "
            f"avg(1e4 * spread / mid), median(1e4 * spread / mid) FROM ({base}) GROUP BY 1 ORDER BY 1",
            {"f": files}).fetchall()
    except duckdb.BinderException:
        return absent(NAME, TITLE, f"the {table} table has no best bid/ask columns")
    if not summary:
        return absent(NAME, TITLE, f"the {table} table has no quotes")
    products: dict[str, dict[str, object]] = {}
    series: dict[str, dict[str, list[float]]] = {}
    for p, n, lo, hi, avg_mid, min_mid, max_mid, avg_bps, med_bps in summary:
        products[str(p)] = {"quotes": int(n), "first": format_iso_ns(int(lo)), "last": format_iso_ns(int(hi)),
                            "mean_mid": r6(avg_mid),
                            "min_mid": r6(min_mid), "max_mid": r6(max_mid), "mean_spread_bps": r6(avg_bps),
                            "median_spread_bps": r6(med_bps)}
        width = max(1, (int(hi) - int(lo)) // points + 1)
        rows = con.execute(f"SELECT (t - $lo) // $w * $w + $lo AS b, avg(mid), avg(1e4 * spread / mid) "
                           f"FROM ({base}) WHERE product_id = $p GROUP BY 1 ORDER BY 1",
                           {"f": files, "p": p, "lo": int(lo), "w": width}).fetchall()
        series[str(p)] = {"t": [r[0] for r in rows], "mid": [r[1] for r in rows], "spread_bps": [r[2] for r in rows]}
    return Section(NAME, TITLE, True, data={"source": table, "products": products}, series=series)
