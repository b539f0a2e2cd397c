"""How fast does `mktpred simulate` send?  Run by hand: `python bench/bench_simulate.py [--seconds 5]`.

The server runs in this process (its own thread); the reader runs in a separate process so the two
do not share a GIL.  Two readers:

* ``websocket-client``: ``recv_data()`` with ``skip_utf8_validation=True`` (what the collector uses);
* ``raw socket``: reads bytes and counts frames from their headers (no WebSocket library), which
  shows what the sender alone can do.

Modes: ``rate=0`` (the pre-serialised cycle, as fast as possible), ``rate=100000`` (the paced
market model asked for more than it can make, so it runs flat out: its own ceiling), both for one
product subscribed to level2+ticker+market_trades, and ``replay`` (the real capture in
../shared/samples at ``speed=0``, if present).
Prints frames/s and MB/s of payload received.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import socket
import struct
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

SUBSCRIBE = ["level2", "ticker", "market_trades"]


def ws_reader(url: str, products: list[str], seconds: float, out: Connection) -> None:
    import websocket

    ws = websocket.create_connection(url, skip_utf8_validation=True)
    for ch in SUBSCRIBE:
        ws.send(json.dumps({"type": "subscribe", "product_ids": products, "channel": ch}))
    n = size = 0
    first = last = time.perf_counter()
    ws.settimeout(1.0)  # a replay ends: stop when the stream goes quiet
    while last - first < seconds:
        try:
            _, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            break
        last = time.perf_counter()
        if n == 0:
            first = last
        n += 1
        size += len(data)
    out.send((n, size, max(last - first, 1e-9)))
    ws.close()


def raw_reader(url: str, products: list[str], seconds: float, out: Connection) -> None:
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    buf = buf.split(b"\r\n\r\n", 1)[1]
    for ch in SUBSCRIBE:
        payload = json.dumps({"type": "subscribe", "product_ids": products, "channel": ch}).encode()
        mask = b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        sock.sendall(bytes((0x81, 0x80 | len(payload))) + mask + masked)
    n = size = 0
    first = last = time.perf_counter()
    view = bytearray(buf)
    pos = 0
    sock.settimeout(1.0)
    while last - first < seconds:
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            break
        if not chunk:
            break
        last = time.perf_counter()
        view += chunk
        while True:  # count complete frames in the buffer
            if len(view) - pos < 2:
                break
            ln = view[pos + 1] & 0x7F
            hdr = 2
            if ln == 126:
                if len(view) - pos < 4:
                    break
                ln = struct.unpack_from("!H", view, pos + 2)[0]
                hdr = 4
            elif ln == 127:
                if len(view) - pos < 10:
                    break
                ln = struct.unpack_from("!Q", view, pos + 2)[0]
                hdr = 10
            if len(view) - pos < hdr + ln:
                break
            pos += hdr + ln
            n += 1
            size += ln
        if pos > 1 << 22:
            del view[:pos]
            pos = 0
    out.send((n, size, max(last - first, 1e-9)))
    sock.close()


def run(label: str, reader: str, seconds: float, **sim_kw: object) -> None:
    from mktpred.simulate import SimulatedExchange

    products = list(sim_kw.get("products", ["BTC-USD"]))  # type: ignore[call-overload]
    with SimulatedExchange(**sim_kw) as sim:  # type: ignore[arg-type]
        parent, child = mp.Pipe()
        target = ws_reader if reader == "websocket-client" else raw_reader
        p = mp.get_context("spawn").Process(target=target, args=(sim.url, products, seconds, child))
        p.start()
        n, size, dt = parent.recv()
        p.join()
    print(f"{label:<28} {reader:<17} {n:>9,} frames in {dt:5.2f} s = {n / dt:>9,.0f} frames/s, "
          f"{size / dt / 1e6:7.1f} MB/s, mean {size / max(n, 1):,.0f} B/frame")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--depth", type=int, default=2000)
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {mp.cpu_count()} CPUs; {args.seconds:g} s per run")
    for reader in ("raw socket", "websocket-client"):
        run("model rate=0 (cycle)", reader, args.seconds, products=["BTC-USD"], rate=0, depth=args.depth)
    for reader in ("raw socket", "websocket-client"):
        run("model rate=100000 (paced)", reader, args.seconds, products=["BTC-USD"], rate=100_000,
            depth=args.depth)
    sample = Path(__file__).resolve().parents[2] / "shared/samples/coinbase-advanced-trade-2026-08-09.frames.jsonl.zst"
    if sample.is_file():
        for reader in ("raw socket", "websocket-client"):
            run("replay capture speed=0", reader, min(args.seconds, 2.0), replay=sample, speed=0.0,
                products=["BTC-USD", "ETH-USD"])


if __name__ == "__main__":
    main()
