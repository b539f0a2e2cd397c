"""`validate --deep` re-hashes every source against the manifest: bit rot in a raw segment whose
mtime was restored passes the ordinary raw check but fails ``source_hashes``."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from typer.testing import CliRunner

from mktpred.cli.app import app
from mktpred.config import Config
from mktpred.convert.runner import run_convert
from mktpred.progress import Progress
from mktpred.testing.raw import SynthSpec, generate_lines
from mktpred.validate import Status, validate_store

STEM = "coinbase_20260809T210548Z"


def converted(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A 400-line raw segment converted into a store: (raw dir, segment, store)."""
    raw = tmp_path / "raw"
    raw.mkdir()
    seg = raw / f"{STEM}.jsonl"
    seg.write_bytes(b"".join(ln + b"\n" for ln in generate_lines(SynthSpec(seed=9, snapshot_levels=20), n_lines=400)))
    cfg = Config()
    run_convert(replace(cfg, paths=replace(cfg.paths, raw_dir=raw, parquet_dir=tmp_path / "parquet")))
    return raw, seg, tmp_path / "parquet"


def rot(path: Path, offset: int) -> None:
    """Flip one bit at ``offset`` and put the modification time back, as a backup restore would."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size


def test_bit_rot_with_restored_mtime_fails_only_deep(tmp_path: Path) -> None:
    """The ordinary raw check passes the rotted segment; --deep fails source_hashes naming it."""
    raw, seg, store = converted(tmp_path)
    rot(seg, seg.stat().st_size // 2)
    plain = validate_store(store, raw_dir=raw)
    assert plain.ok and plain.check("raw_converted").status is Status.PASS  # the blind spot --deep closes
    deep = validate_store(store, raw_dir=raw, deep_check=True)
    check = deep.check("source_hashes")
    assert check.status is Status.FAIL and check.count == 1
    assert check.locations == [f"{seg.name}: content differs from the hash recorded at conversion although "
                               "size and mtime are unchanged (bit rot or a restored mtime)"]
    assert {c.name for c in deep.failed} == {"source_hashes"}


def test_deep_passes_an_intact_store_and_reports_progress(tmp_path: Path) -> None:
    """An untouched store passes --deep; the re-hash reports its bytes to the progress callback."""
    raw, seg, store = converted(tmp_path)
    seen: list[Progress] = []
    report = validate_store(store, raw_dir=raw, deep_check=True, progress=seen.append)
    check = report.check("source_hashes")
    assert check.status is Status.PASS and check.checked == 1
    assert check.details.startswith("1 sources (0.00 GiB) re-hashed, all match the manifest")
    rehash = [p for p in seen if p.stage == "rehash"]
    assert rehash[-1].bytes_done == rehash[-1].bytes_total == seg.stat().st_size
    assert "source_hashes" not in {c.name for c in validate_store(store).checks}  # only with --deep


def test_a_missing_source_is_a_warning(tmp_path: Path) -> None:
    """A source deleted after conversion cannot be verified: a warning, exit 0."""
    _, seg, store = converted(tmp_path)
    seg.unlink()
    check = validate_store(store, deep_check=True).check("source_hashes")
    assert check.status is Status.WARN
    assert check.locations == [f"{seg.name}: source not found (moved or deleted): cannot be verified"]


def test_cli_deep_exit_1_and_json(tmp_path: Path) -> None:
    """`mktpred validate --deep --json` exits 1 on the rotted segment and lists source_hashes."""
    raw, seg, store = converted(tmp_path)
    rot(seg, 10)
    result = CliRunner().invoke(app, ["validate", "--parquet-dir", str(store), "--raw-dir", str(raw), "--deep",
                                      "--json"], catch_exceptions=False)
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    (check,) = [c for c in doc["checks"] if c["name"] == "source_hashes"]
    assert check["status"] == "fail" and check["count"] == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: 1 check failed: source_hashes ({store})"
