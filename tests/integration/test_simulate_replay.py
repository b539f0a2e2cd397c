"""Replay fidelity: what a client receives equals the recording, apart from sequence_num."""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from mktpred.coinbase import format_rfc3339_ns
from mktpred.simulate import SimulatedExchange, parse_fault
from tests.integration.simclient import close_clients, open_client

T0 = 1_786_309_548_000_000_000


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Close every client a test opened, whatever happened."""
    yield
    close_clients()


def receive(sim: SimulatedExchange, n: int) -> list[bytes]:
    ws = open_client(sim, ("level2", "heartbeats"))
    out = []
    for _ in range(n):
        _, data = ws.recv_data()
        out.append(data)
    return out


def renumber(frame: bytes, seq: int) -> bytes:
    return re.sub(rb'("sequence_num":\s*)-?\d+', rb"\g<1>%d" % seq, frame, count=1)


def sample_frames(n: int = 40, spread_s: float = 0.0) -> list[bytes]:
    """Frames with odd spacing, a sequence that starts at 500 with a gap, and one without a number."""
    frames = []
    for i in range(n):
        ts = format_rfc3339_ns(T0 + int(i * spread_s / max(n - 1, 1) * 1e9))
        seq = 500 + i + (3 if i > 10 else 0)
        frames.append(f'{{"channel":"l2_data", "timestamp":"{ts}","sequence_num": {seq},'
                      f'"events":[{{"type":"update","product_id":"BTC-USD","updates":[]}}],"i":{i}}}'.encode())
    frames[5] = b'{"type":"error","message":"authentication failure"}'
    return frames


def write(path: Path, lines: list[bytes]) -> Path:
    data = b"\n".join(lines) + b"\n"
    if path.suffix == ".zst":
        data = zstandard.ZstdCompressor().compress(data)
    elif path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def expected(frames: list[bytes]) -> list[bytes]:
    out, seq = [], 0
    for f in frames:
        if b'"sequence_num"' in f:
            out.append(renumber(f, seq))
            seq += 1
        else:
            out.append(f)
    return out


@pytest.mark.parametrize("name", ["frames.jsonl", "frames.jsonl.zst", "frames.jsonl.gz", "records.jsonl.zst"])
def test_replayed_frames_equal_the_file(tmp_path: Path, name: str) -> None:
    """Each connection gets the file's frames byte for byte, renumbered 0,1,2,... (records: their msg)."""
    frames = sample_frames()
    lines = frames
    if name.startswith("records"):
        lines = [b'{"recv_ns":%d,"conn":"c-1","msg":%b}' % (T0 + i, f) for i, f in enumerate(frames)]
        lines.insert(3, b'{"recv_ns":1,"conn":"c-1","event":"open"}')
    path = write(tmp_path / name, lines)
    with SimulatedExchange(replay=path, speed=0) as sim:
        assert receive(sim, len(frames)) == expected(frames)
        assert receive(sim, len(frames)) == expected(frames)  # every connection from the start
        assert sim.connections()[0].last_seq == len(frames) - 2


def test_replay_keeps_the_original_pacing_scaled_by_speed(tmp_path: Path) -> None:
    """Frames spread over 2 s arrive over about 0.5 s at speed 4."""
    frames = sample_frames(20, spread_s=2.0)
    path = write(tmp_path / "paced.jsonl", frames)
    with SimulatedExchange(replay=path, speed=4) as sim:
        start = time.monotonic()
        got = receive(sim, len(frames))
        elapsed = time.monotonic() - start
    assert got == expected(frames)
    assert 0.4 <= elapsed < 20


def test_faults_apply_to_replays_too(tmp_path: Path) -> None:
    """A gap fault renumbers the replay with a hole, like it does the model."""
    path = write(tmp_path / "f.jsonl", sample_frames())
    with SimulatedExchange(replay=path, speed=0, faults=[parse_fault("gap:every=10,size=2")]) as sim:
        got = receive(sim, 15)
    nums = [json.loads(f)["sequence_num"] for f in got if b'"sequence_num"' in f]
    assert nums == [*range(10), *range(12, 16)]


def test_real_capture_replays_byte_for_byte(samples_dir: Path) -> None:
    """Replaying the real capture's raw records yields exactly the capture's frames file."""
    with (samples_dir / "coinbase-advanced-trade-2026-08-09.frames.jsonl.zst").open("rb") as fh, \
            zstandard.ZstdDecompressor().stream_reader(fh) as reader:
        frames = reader.read().splitlines()
    records = samples_dir / "coinbase-advanced-trade-2026-08-09.records.jsonl.zst"
    with SimulatedExchange(replay=records, speed=0) as sim:
        got = receive(sim, len(frames))
    assert len(got) == 1030
    assert got == frames  # the capture is numbered 0..1029 already
