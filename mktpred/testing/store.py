"""A synthetic store written straight to Parquet per the contract, for benchmarks and tests.

It models what ``collect`` + ``convert`` produce: connections whose frames carry one
``sequence_num`` counter each (heartbeats once a second, level2 / ticker / trade frames in
between), segments rotated at UTC midnight, one file per table, date partition and segment (split
into ``-<k>`` parts past ``max_rows_per_file`` if given; row groups of ``row_group_rows``; page
checksums on), the collector's own events, a manifest and, when
``raw_dir`` is given, placeholder raw segment files the manifest points at.  Everything is
generated with numpy and written with PyArrow, so 100M rows take minutes, not hours.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from mktpred.store.layout import StoreLayout
from mktpred.store.manifest import Manifest, SourceEntry, file_hash
from mktpred.store.schemas import TABLE_SCHEMAS
from mktpred.store.writer import write_parquet_file

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S
_CHANNELS = np.array(["l2_data", "ticker", "market_trades", "heartbeats"])
_BASE_PRICE = {"BTC-USD": 65_000.0, "ETH-USD": 3_200.0}


@dataclass(frozen=True)
class ConnSpec:
    """One WebSocket connection: frames at ``frames_per_s`` from ``start_ns`` for ``seconds``."""

    conn: str
    start_ns: int
    seconds: float
    frames_per_s: int = 20
    products: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    l2_rows_per_frame: int = 4
    #: ``(frame_index, n_missing)``: sequence numbers skipped before that frame (the exchange's gap)
    gaps: tuple[tuple[int, int], ...] = ()
    #: whether the collector recorded those gaps as ``gap`` events
    gaps_recorded: bool = True
    closed: bool = True
    #: False: a reconnect within the same collector run (frames go on into the open segment)
    new_segment: bool = True
    #: ``(from_s, to_s)`` after ``start_ns`` when the server sends nothing (not even heartbeats)
    silent: tuple[tuple[float, float], ...] = ()


@dataclass
class SyntheticStore:
    """What :func:`write_synthetic_store` wrote."""

    root: Path
    raw_dir: Path | None
    rows: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)


def _segment_stem(ns: int) -> str:
    return "coinbase_" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ns // NS_PER_S))


def _strings(values: np.ndarray, indices: np.ndarray) -> pa.Array:
    """A plain ``string`` array from a small dictionary and per-row indices (fast for 10M rows)."""
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)),
                                          pa.array(values.tolist(), pa.string())).cast(pa.string())


def _ts(ns: np.ndarray, unit: str = "ns") -> pa.Array:
    return pa.array(ns.astype(np.int64), pa.timestamp(unit, tz="UTC"))


def _ticker_top(px: np.ndarray, ticks: np.ndarray, prod: np.ndarray, l2_frame: np.ndarray, l2_prod: np.ndarray,
                side: np.ndarray, l2_price: np.ndarray, n_products: int) -> tuple[np.ndarray, np.ndarray]:
    """Each ticker's best bid / ask: the top of the book the level2 frames before it built (the
    ticker's price -/+ 0.01 before the product's first level2 frame), as ``mktpred book`` rebuilds it."""
    best_bid, best_ask = px - 0.01, px + 0.01
    for p in range(n_products):
        rows = np.flatnonzero(l2_prod == p)
        if not len(rows):
            continue
        top_bid = np.maximum.accumulate(np.where(side[rows] == 0, l2_price[rows], -np.inf))
        top_ask = np.minimum.accumulate(np.where(side[rows] == 1, l2_price[rows], np.inf))
        mine = np.flatnonzero(prod[ticks] == p)
        before = np.searchsorted(l2_frame[rows], ticks[mine], side="left") - 1
        ok = before >= 0
        best_bid[mine[ok]] = top_bid[before[ok]]
        best_ask[mine[ok]] = top_ask[before[ok]]
    return best_bid, best_ask


def _conn_tables(spec: ConnSpec, rng: np.random.Generator) -> dict[str, pa.Table]:
    """Every table's rows for one connection, in receive order."""
    fps = spec.frames_per_s
    n = max(int(spec.seconds * fps), 1)
    step = NS_PER_S // fps
    idx = np.arange(n, dtype=np.int64)
    t = spec.start_ns + idx * step + rng.integers(0, step // 2, n)
    chan = rng.choice(3, size=n, p=[0.8, 0.12, 0.08])
    chan[idx % fps == 0] = 3  # one heartbeat a second
    prod = rng.integers(0, len(spec.products), n)
    if spec.silent:  # the server sends nothing then (the sequence goes on without a gap)
        keep = np.ones(n, dtype=bool)
        for a, b in spec.silent:
            keep &= ~((t >= spec.start_ns + int(a * NS_PER_S)) & (t < spec.start_ns + int(b * NS_PER_S)))
        t, chan, prod = t[keep], chan[keep], prod[keep]
        n = len(t)
        idx = np.arange(n, dtype=np.int64)
    recv = t + 2_000_000 + rng.integers(0, 500_000, n)
    seq = idx.copy()
    for at, missing in spec.gaps:
        seq[at:] += missing
    n_products = len(spec.products)
    products = np.array(spec.products)
    base = np.array([_BASE_PRICE.get(p, 100.0) for p in spec.products])
    k = spec.l2_rows_per_frame
    n_rows = np.select([chan == 0, chan == 1, chan == 2], [k, 1, 1], 0).astype(np.int32)
    conn_idx = np.zeros(n, dtype=np.int32)
    conn_dict = np.array([spec.conn])
    out: dict[str, pa.Table] = {}

    out["messages"] = pa.table({
        "recv_time": _ts(recv), "time": _ts(t), "conn": _strings(conn_dict, conn_idx),
        "seq": pa.array(seq), "channel": _strings(_CHANNELS, chan),
        "n_events": pa.array(np.ones(n, dtype=np.int32)), "n_rows": pa.array(n_rows),
    }, schema=TABLE_SCHEMAS["messages"])

    f = np.flatnonzero(chan == 0)
    r = np.repeat(f, k)
    m = len(r)
    side = rng.integers(0, 2, m)
    first_frame = np.zeros(n, dtype=bool)
    for p in range(n_products):  # the first level2 frame of each product is its snapshot
        hit = f[prod[f] == p]
        if len(hit):
            first_frame[hit[0]] = True
    snap_rows = np.flatnonzero(first_frame[r])
    side[snap_rows] = np.arange(len(snap_rows)) % 2  # a snapshot has both sides
    l2_price = np.round(base[prod[r]] * (1 + (side * 2 - 1) * rng.random(m) * 1e-3), 2)
    # never 0 (a removed level), so the book only grows and its top is a running max / min
    l2_size = np.maximum(np.round(rng.exponential(0.5, m), 8), 1e-8)
    out["l2"] = pa.table({
        "recv_time": _ts(recv[r]), "time": _ts(t[r]), "event_time": _ts(t[r] // 1000, "us"),
        "conn": _strings(conn_dict, conn_idx[r]), "seq": pa.array(seq[r]),
        "product_id": _strings(products, prod[r]), "is_snapshot": pa.array(first_frame[r]),
        "side": _strings(np.array(["bid", "ask"]), side),
        "price": pa.array(l2_price), "size": pa.array(l2_size),
    }, schema=TABLE_SCHEMAS["l2"])

    f = np.flatnonzero(chan == 1)
    px = np.round(base[prod[f]] * (1 + rng.normal(0, 1e-4, len(f))), 2)
    best_bid, best_ask = _ticker_top(px, f, prod, r, prod[r], side, l2_price, n_products)
    ones = np.ones(len(f))
    out["ticker"] = pa.table({
        "recv_time": _ts(recv[f]), "time": _ts(t[f]), "conn": _strings(conn_dict, conn_idx[f]),
        "seq": pa.array(seq[f]), "product_id": _strings(products, prod[f]),
        "is_snapshot": pa.array(np.zeros(len(f), dtype=bool)), "price": pa.array(px),
        "volume_24h": pa.array(ones * 1000.0), "low_24h": pa.array(px * 0.98),
        "high_24h": pa.array(px * 1.02), "low_52w": pa.array(px * 0.5), "high_52w": pa.array(px * 1.5),
        "price_pct_chg_24h": pa.array(rng.normal(0, 1, len(f))), "best_bid": pa.array(best_bid),
        "best_bid_size": pa.array(ones * 0.5), "best_ask": pa.array(best_ask),
        "best_ask_size": pa.array(ones * 0.25),
    }, schema=TABLE_SCHEMAS["ticker"])

    f = np.flatnonzero(chan == 2)
    out["trades"] = pa.table({
        "recv_time": _ts(recv[f]), "time": _ts(t[f]), "conn": _strings(conn_dict, conn_idx[f]),
        "seq": pa.array(seq[f]), "product_id": _strings(products, prod[f]),
        "is_snapshot": pa.array(np.zeros(len(f), dtype=bool)),
        "trade_id": pa.array(f + 1_000_000).cast(pa.string()),
        "side": _strings(np.array(["bid", "ask"]), trade_side := rng.integers(0, 2, len(f))),
        "price": pa.array(np.round(base[prod[f]], 2)),
        "size": pa.array(np.round(rng.exponential(0.1, len(f)) + 1e-8, 8)),
        "trade_time": _ts(t[f] // 1000, "us"),
        # a trade at the bid was a taker sell, at the ask a taker buy
        "aggressor": _strings(np.array(["sell", "buy"]), trade_side),
    }, schema=TABLE_SCHEMAS["trades"])

    ev_recv = [spec.start_ns - 50_000_000, spec.start_ns - 10_000_000]
    ev_name = ["open", "subscribed"]
    expected: list[int | None] = [None, None]
    got: list[int | None] = [None, None]
    if spec.gaps_recorded:
        for at, missing in spec.gaps:
            ev_recv.append(int(recv[at]))
            ev_name.append("gap")
            expected.append(int(seq[at] - missing))
            got.append(int(seq[at]))
    if spec.closed:
        ev_recv.append(int(recv[-1]) + 1_000_000)
        ev_name.append("close")
        expected.append(None)
        got.append(None)
    order = np.argsort(np.array(ev_recv), kind="stable")
    ev = np.array(ev_recv)[order]
    out["events"] = pa.table({
        "recv_time": _ts(ev), "time": _ts(ev), "conn": pa.array([spec.conn] * len(ev)),
        "event": pa.array([ev_name[i] for i in order]),
        "expected": pa.array([expected[i] for i in order], pa.int64()),
        "got": pa.array([got[i] for i in order], pa.int64()),
        "detail": pa.array(["{}"] * len(ev)),
    }, schema=TABLE_SCHEMAS["events"])
    return out


def write_synthetic_store(
    root: Path,
    conns: list[ConnSpec],
    *,
    raw_dir: Path | None = None,
    max_rows_per_file: int | None = None,
    row_group_rows: int = 1_000_000,
    seed: int = 7,
    compression: str = "zstd",
) -> SyntheticStore:
    """Write a clean store for ``conns`` (segments rotate at UTC midnight) with its manifest.

    Adds to a store already at ``root`` (its manifest is kept), so big stores can be written a day
    at a time with bounded memory."""
    rng = np.random.default_rng(seed)
    layout = StoreLayout(root)
    result = SyntheticStore(root=root, raw_dir=raw_dir)
    manifest = Manifest.load(root)
    # segments: a connection's frames belong to the segment open when they arrived; a new
    # segment opens at each UTC midnight and at each connection start that finds none open
    per_segment: dict[int, dict[str, list[pa.Table]]] = {}
    run_start = conns[0].start_ns - 50_000_000 if conns else 0
    for spec in conns:
        if spec.new_segment:
            run_start = spec.start_ns - 50_000_000
        tables = _conn_tables(spec, rng)
        for table, data in tables.items():
            recv = data.column("recv_time").cast(pa.int64()).to_numpy()
            day = recv // NS_PER_DAY
            opened = np.maximum(day * NS_PER_DAY, run_start)
            for seg_open in np.unique(opened):
                part = data.filter(pa.array(opened == seg_open))
                per_segment.setdefault(int(seg_open), {}).setdefault(table, []).append(part)
        del tables
    for seg_open in sorted(per_segment):
        stem = _segment_stem(seg_open)
        source = (raw_dir / f"{stem}.jsonl") if raw_dir is not None else root.parent / "raw" / f"{stem}.jsonl"
        outputs: list[str] = []
        rows: dict[str, int] = {}
        for table in TABLE_SCHEMAS:
            parts = per_segment[seg_open].get(table)
            if not parts:
                continue
            data = pa.concat_tables(parts)
            tday = data.column("time").cast(pa.int64()).to_numpy() // NS_PER_DAY
            for d in np.unique(tday):
                chunk = data.filter(pa.array(tday == d))
                date = time.strftime("%Y-%m-%d", time.gmtime(int(d) * 86_400))
                per_file = max_rows_per_file or chunk.num_rows
                for k, start in enumerate(range(0, chunk.num_rows, per_file)):
                    path = layout.data_file(table, date, stem, k)
                    write_parquet_file(chunk.slice(start, per_file), path, compression=compression,
                                       row_group_rows=row_group_rows)
                    outputs.append(path.relative_to(root).as_posix())
                    result.files.append(path)
            rows[table] = data.num_rows
            result.rows[table] = result.rows.get(table, 0) + data.num_rows
        if raw_dir is not None:
            raw_dir.mkdir(parents=True, exist_ok=True)
            source.write_text(f'{{"recv_ns": {seg_open}, "conn": "synthetic", "event": "open"}}\n')
            st = source.stat()
            size, mtime, digest = st.st_size, st.st_mtime_ns, file_hash(source)
        else:
            size, mtime, digest = 0, 0, ""
        manifest.put(SourceEntry(
            source=str(source.resolve()), kind="raw", size=size, mtime_ns=mtime, hash=digest,
            rows=rows, lines=sum(rows.get(t, 0) for t in ("messages", "events")),
            outputs=outputs, engine="synthetic", mktpred_version="synthetic",
            converted_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
        result.segments.append(stem)
    manifest.save(root)
    return result
