"""`mktpred serve` bad input: one line on stderr, exit 2, before connecting (no raw segment, no socket)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mktpred.cli.app import app
from tests.unit.serve_frames import write_model

runner = CliRunner()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}"


def _serve(tmp_path: Path, model: Path, *extra: str) -> tuple[int, str]:
    r = runner.invoke(app, ["serve", "--model", str(model), "--url", _closed_port_url(), "--raw-dir",
                            str(tmp_path / "raw"), "--predictions-dir", str(tmp_path / "preds"), "--port", "0",
                            "--duration", "30", *extra])
    return r.exit_code, r.stderr


def _half_written(tmp_path: Path) -> Path:
    d = write_model(tmp_path / "models" / "m", "v0001")
    (d / "model.linear.json").unlink()
    return d


def _pointer_to_missing(tmp_path: Path) -> Path:
    write_model(tmp_path / "models" / "m", "v0001")
    (tmp_path / "models" / "m" / "current").write_text("v0007\n")
    return tmp_path / "models" / "m"


def _unknown_feature(tmp_path: Path) -> Path:
    return write_model(tmp_path / "models" / "m", "v0001", features=["mid", "sentiment"])


def _no_interval(tmp_path: Path) -> Path:
    return write_model(tmp_path / "models" / "m", "v0001", interval_ns=None)


def _cross_without_product(tmp_path: Path) -> Path:
    return write_model(tmp_path / "models" / "m", "v0001", features=["mid", "cross_ret_1"])


@pytest.mark.parametrize(("make", "needle"), [
    (lambda p: p / "nowhere", "model directory not found"),
    (_half_written, "model.linear.json missing"),
    (_pointer_to_missing, "'current' names 'v0007'"),
    (_unknown_feature, "no column 'sentiment'"),
    (_no_interval, "no grid interval"),
    (_cross_without_product, "names no cross product"),
])
def test_bad_model_is_one_line_exit_2_before_connecting(tmp_path: Path, make: object, needle: str) -> None:
    """A missing, half-written or incompatible model: exit 2 with one `error:` line naming the
    directory, and nothing recorded (the recorder never started)."""
    model = make(tmp_path)  # type: ignore[operator]
    code, err = _serve(tmp_path, model)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "raw").exists() and not (tmp_path / "preds").exists()


def test_port_in_use_is_exit_3_and_seals_nothing_half_done(tmp_path: Path) -> None:
    """An HTTP port already taken: one line, exit 3, no .part left behind."""
    d = write_model(tmp_path / "models" / "m", "v0001")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        code, err = _serve(tmp_path, d, "--port", str(s.getsockname()[1]))
    assert code == 3, err
    assert err.strip().splitlines()[-1].startswith("error: cannot serve HTTP")
    assert not list((tmp_path / "preds").glob("*.part"))


def test_duration_run_with_no_exchange_is_exit_3_like_collect(tmp_path: Path) -> None:
    """With the exchange unreachable, a --duration run that received no frame fails as collect does:
    exit 3, and the one error line says why."""
    d = write_model(tmp_path / "models" / "m", "v0001")
    r = runner.invoke(app, ["serve", "--model", str(d), "--url", _closed_port_url(), "--raw-dir",
                            str(tmp_path / "raw"), "--predictions-dir", str(tmp_path / "preds"), "--port", "0",
                            "--duration", "1", "--json"])
    assert r.exit_code == 3, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no frame received in 1 s") and "Connection refused" in last, r.stderr
    assert "Traceback" not in r.stderr


def test_negative_grace_is_a_usage_error(tmp_path: Path) -> None:
    """--grace-ms below 0: one line, exit 2, nothing recorded."""
    d = write_model(tmp_path / "models" / "m", "v0001")
    code, err = _serve(tmp_path, d, "--grace-ms", "-1")
    assert code == 2 and err.strip().splitlines() == ["error: --grace-ms must be between 0 and 3600000, got -1.0 "
                                                      "(--grace-ms)"], err
    assert not (tmp_path / "raw").exists()
