"""What does one big frame cost the recorder in memory?  Run by hand:

    python bench/bench_collect_frame.py [--mb 5 125]

For each size, a level2-snapshot-shaped frame is built in this process and served once by a raw
socket server on 127.0.0.1; a fresh child process runs the recorder (``max_frame_mb`` raised to let
the frame through), waits for the frame to be recorded and reports its peak RSS growth
(``VmHWM`` after minus before) and, in a second child, the peak of Python allocations
(tracemalloc, which also counts memory that was allocated but never touched).  Both are printed as
multiples of the frame size.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import multiprocessing as mp
import socket
import struct
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path


def serve_once(frame: bytes) -> tuple[socket.socket, threading.Thread]:
    """A listener on 127.0.0.1 that upgrades one connection, sends ``frame`` and keeps it open."""
    listener = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        conn, _ = listener.accept()
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        conn.sendall(struct.pack("!BBQ", 0x81, 127, len(frame)))
        conn.sendall(frame)
        while conn.recv(65536):  # until the recorder hangs up
            pass
        conn.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return listener, t


def snapshot(size_bytes: int) -> bytes:
    level = {"side": "offer", "event_time": "2026-08-09T21:05:48.228568Z", "price_level": "60000.00",
             "new_quantity": "0.12345678"}
    n = size_bytes // (len(json.dumps(level, separators=(",", ":"))) + 1)
    updates = [dict(level, price_level=f"{60000 + i * 0.01:.2f}") for i in range(n)]
    return json.dumps({"channel": "l2_data", "client_id": "", "timestamp": "2026-08-09T21:05:48.228568804Z",
                       "sequence_num": 0, "events": [{"type": "snapshot", "product_id": "BTC-USD",
                                                      "updates": updates}]}, separators=(",", ":")).encode()


def _hwm() -> int:
    """This process's peak RSS in bytes (``VmHWM``: unlike ``ru_maxrss`` it does not carry over the
    parent's peak through fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def child(url: str, size: int, traced: bool, out: Connection) -> None:
    import tracemalloc

    from mktpred.collect import Collector, CollectSettings

    with tempfile.TemporaryDirectory() as tmp:
        s = CollectSettings(url=url, products=("BTC-USD",), channels=("level2",), raw_dir=Path(tmp),
                            stall_timeout_s=60.0, max_frame_bytes=size + 1)
        stop = threading.Event()
        c = Collector(s, stop=stop)
        if traced:
            tracemalloc.start()
        base_traced = tracemalloc.get_traced_memory()[0] if traced else 0
        before = _hwm()
        t = threading.Thread(target=c.run)
        t.start()
        while c.stats[0].frames < 1:
            time.sleep(0.01)
        stop.set()
        t.join()
        after = _hwm()
        peak_traced = tracemalloc.get_traced_memory()[1] - base_traced if traced else 0
        out.send((after - before, peak_traced))


def measure(frame: bytes, traced: bool) -> tuple[int, int]:
    listener, server = serve_once(frame)
    url = f"ws://127.0.0.1:{listener.getsockname()[1]}"
    recv, send = mp.Pipe(duplex=False)
    p = mp.get_context("spawn").Process(target=child, args=(url, len(frame), traced, send))
    p.start()
    result: tuple[int, int] = recv.recv()
    p.join()
    server.join(30)
    listener.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, nargs="+", default=[5.0, 125.0])
    args = ap.parse_args()
    for mb in args.mb:
        frame = snapshot(int(mb * 2**20))
        rss, _ = measure(frame, traced=False)
        _, traced = measure(frame, traced=True)
        print(f"frame {len(frame) / 2**20:,.1f} MiB: peak RSS growth {rss / 2**20:,.0f} MiB "
              f"({rss / len(frame):.1f}x), traced Python peak {traced / 2**20:,.0f} MiB ({traced / len(frame):.1f}x)")


if __name__ == "__main__":
    main()
