"""Helpers for the `mktpred serve` tests: a small trained model, the serve process, SSE/WS clients,
and the batch side of live = batch (convert -> features -> the model, row by row)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pyarrow.dataset as ds

from mktpred.models.registry import MODEL_JSON, set_current
from mktpred.models.train import train
from tests.integration.procs import reaped, wait_until
from tests.unit.features_synth import make_features

WAIT = 60.0
MSG_KEYS = ["time", "time_ns", "product_id", "model", "version", "horizon_s", "valid", "p_up", "latency_us"]


def train_small_model(root: Path) -> Path:
    """A LightGBM direction model (10 s) on synthetic 1-s features; returns ``<models>/<name>``."""
    make_features(root / "pq", seconds=1500, signal=1.0, seed=5)
    train(root / "pq", root / "models", name="m", horizon="10s", folds=1)
    return root / "models" / "m"


def copy_as_new_version(name_dir: Path, src: str, dst: str) -> None:
    """Publish a copy of version ``src`` as ``dst`` (same trees, another version) and promote it."""
    shutil.copytree(name_dir / src, name_dir / dst)
    meta = json.loads((name_dir / dst / MODEL_JSON).read_text())
    meta["version"] = dst
    (name_dir / dst / MODEL_JSON).write_text(json.dumps(meta))
    set_current(name_dir, dst)


def free_port() -> int:
    """A loopback port free right now (the simulator binds it later, after serve is up)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """``python -m mktpred serve`` with stderr collected line by line.  Its timer waits 1 s past a grid
    point (``--grace-ms 1000``, not 50): on this shared machine a reader thread held up for more than
    50 ms would let the timer publish a grid point before its last frame is read, and the test would
    measure the machine's load instead of the rule (the 50 ms rule itself is unit-tested)."""

    def __init__(self, model: Path, url: str, work: Path, *extra: str, products: str = "BTC-USD,ETH-USD") -> None:
        env = {**os.environ, "MKTPRED_COLLECT_BACKOFF_INITIAL_S": "0.05", "MKTPRED_COLLECT_BACKOFF_MAX_S": "0.2",
               "MKTPRED_COLLECT_FLUSH_INTERVAL_S": "0.2", "MKTPRED_COLLECT_STALL_TIMEOUT_S": "5"}
        self.raw = work / "raw"
        self.preds = work / "preds"
        cmd = [sys.executable, "-m", "mktpred", "serve", "--model", str(model), "--url", url, "--products",
               products, "--raw-dir", str(self.raw), "--predictions-dir", str(self.preds), "--port", "0",
               "--json", "--grace-ms", "1000", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.err: list[str] = []
        self._t = threading.Thread(target=self._read_err, daemon=True)
        self._t.start()
        self.http = ""

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)

    def wait_ready(self) -> str:
        ok = wait_until(lambda: any("listening on" in ln for ln in self.err) or self.proc.poll() is not None, WAIT)
        assert ok and self.proc.poll() is None, "".join(self.err)
        line = next(ln for ln in self.err if "listening on" in ln)
        self.http = line.split("listening on ")[1].split()[0]
        return self.http

    def health(self) -> dict[str, Any]:
        r = httpx.get(self.http + "/health", timeout=10)
        assert r.status_code == 200, "".join(self.err)
        return r.json()  # type: ignore[no-any-return]

    def terminate(self) -> dict[str, Any]:
        """SIGTERM; returns the ``--json`` summary after asserting exit 0."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=WAIT)
        self._t.join(5)
        assert self.proc.returncode == 0, "".join(self.err)
        return json.loads(out)  # type: ignore[no-any-return]


@contextmanager
def serving(model: Path, url: str, work: Path, *extra: str, **kw: Any) -> Iterator[ServeProcess]:
    sp = ServeProcess(model, url, work, *extra, **kw)
    with reaped(sp.proc, 10):
        yield sp


class SSEClient(threading.Thread):
    """Reads ``/stream`` until it ends; ``messages`` are the decoded ``data:`` lines."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.messages: list[dict[str, Any]] = []
        self.events: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.stream("GET", self.url + "/stream", timeout=httpx.Timeout(60, read=60)) as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        self.events.append(line[7:])
                    elif line.startswith("data: "):
                        self.messages.append(json.loads(line[6:]))
        except BaseException as exc:
            self.error = exc


class WSClient(threading.Thread):
    """Reads ``/ws`` until the server closes it."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        import websocket

        self.ws = websocket.create_connection(url.replace("http://", "ws://") + "/ws", timeout=60)
        self.messages: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        import websocket

        try:
            while True:
                try:
                    text = self.ws.recv()
                except websocket.WebSocketConnectionClosedException:
                    return
                if not text:
                    return
                self.messages.append(json.loads(text))
        except BaseException as exc:
            self.error = exc
        finally:
            self.ws.shutdown()


def live_messages(preds: Path) -> list[dict[str, Any]]:
    """Every message of every sealed prediction segment, in order (no ``.part`` may be left)."""
    assert not list(preds.glob("*.part")), list(preds.iterdir())
    out: list[dict[str, Any]] = []
    for seg in sorted(preds.glob("predictions_*.jsonl")):
        data = seg.read_bytes()
        assert data.endswith(b"\n")
        out += [json.loads(x) for x in data.split(b"\n")[:-1]]
    return out


def _mktpred(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "mktpred", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _predictions(pq: Path, source: str) -> list[dict[str, Any]]:
    """The store's ``predictions`` rows of one ``source``, read back with PyArrow's dataset reader."""
    tbl = ds.dataset(str(pq / "predictions"), format="parquet", partitioning="hive").to_table()
    rows = tbl.to_pylist()
    times = tbl.column("time").cast("int64").to_pylist()
    return [dict(r, time_ns=t) for r, t in zip(rows, times, strict=True) if r["source"] == source]


def batch_predictions(raw: Path, name_dir: Path, work: Path) -> tuple[dict[tuple[str, int], tuple[bool, float]],
                                                                       dict[str, int]]:
    """The batch pipeline on the raw segments serve recorded, as a user runs it: ``mktpred convert``
    -> ``mktpred features`` -> ``mktpred predict``; the ``predictions`` table read back.  Returns
    ``{(product, time_ns): (valid, p_up)}`` and each product's last batch row time."""
    pq = work / "batch_pq"
    _mktpred("convert", "--raw-dir", str(raw), "--parquet-dir", str(pq))
    _mktpred("features", "--parquet-dir", str(pq), "--interval", "1s", "--horizons", "10s")
    # serve predicts every product it records; predict defaults to the model's training products
    feats = ds.dataset(str(pq / "features"), format="parquet", partitioning="hive").to_table(columns=["product_id"])
    products = ",".join(sorted(set(feats.column("product_id").to_pylist())))
    summary = json.loads(_mktpred("predict", "--model", str(name_dir), "--parquet-dir", str(pq), "--products",
                                  products, "--json"))
    assert summary["features_computed"] is None  # the features step above made them
    out: dict[tuple[str, int], tuple[bool, float]] = {}
    last: dict[str, int] = {}
    for r in _predictions(pq, "batch"):
        out[(r["product_id"], r["time_ns"])] = (bool(r["valid"]), float(r["p_up"]))
        last[r["product_id"]] = max(last.get(r["product_id"], 0), r["time_ns"])
    assert len(out) == summary["rows"]
    return out, last


def imported_live(preds: Path, work: Path) -> list[dict[str, Any]]:
    """``mktpred predict --import-live``: serve's sealed prediction segments into the store next to
    the batch rows; the ``live`` rows read back."""
    _mktpred("predict", "--import-live", "--predictions-dir", str(preds), "--parquet-dir", str(work / "batch_pq"))
    return _predictions(work / "batch_pq", "live")


def compare_live_batch(live: list[dict[str, Any]], batch: dict[tuple[str, int], tuple[bool, float]],
                       last: dict[str, int]) -> int:
    """Every batch row is live with the same ``valid`` and ``p_up`` (|Δ| <= 1e-9); live rows beyond it
    lie past the product's last frame (the timer's); returns the number of rows compared."""
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for m in live:
        key = (m["product_id"], m["time_ns"])
        assert key not in seen, f"duplicate live prediction {key}"
        seen[key] = m
    missing = sorted(k for k in batch if k not in seen)
    assert not missing, f"{len(missing)} batch rows not predicted live, first {missing[:3]}"
    extra = sorted(k for k in seen if k not in batch and k[1] <= last.get(k[0], -1))
    assert not extra, f"{len(extra)} live predictions the batch does not have, first {extra[:3]}"
    for key, (valid, p) in batch.items():
        m = seen[key]
        assert m["valid"] is valid, (key, m, valid)
        assert abs(m["p_up"] - p) <= 1e-9, (key, m["p_up"], p)
    return len(batch)
