"""Reading recordings for replay: verbatim msg extraction, record kinds, compression, timing."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest
import zstandard

from mktpred.errors import UsageError
from mktpred.simulate.replay import check_replay_file, extract_msg, read_replay

SPACED = b'{ "channel" : "ticker",  "timestamp":"2026-08-09T21:05:48.5Z", "sequence_num": 17, "events": [ ] }'


def test_msg_is_cut_out_verbatim_when_last() -> None:
    """A record whose msg is its last key yields the msg bytes exactly as written (spaces too)."""
    line = b'{"recv_ns":1,"conn":"c-1","msg":' + SPACED + b"}"
    assert extract_msg(line, orjson.loads(line)) == SPACED


def test_msg_is_cut_out_verbatim_in_any_key_order() -> None:
    """A record with msg first (and a "msg" lookalike inside a string) still yields the exact bytes."""
    line = b'{"msg": ' + SPACED + b' , "conn":"has \\"msg\\": inside","recv_ns":5}'
    assert extract_msg(line, orjson.loads(line)) == SPACED


def test_read_replay_handles_every_record_kind(tmp_path: Path) -> None:
    """Frames and records mix; events are skipped; raw records replay as recorded; times are kept."""
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([
        SPACED,
        b'{"recv_ns":2000000000,"conn":"c","event":"open"}',
        b'{"recv_ns":3000000000,"conn":"c","msg":{"channel":"l2_data","sequence_num":4,"events":[]}}',
        b'{"recv_ns":4000000000,"conn":"c","raw":"{\\"torn"}',
        b"",
    ]) + b"\n")
    got = [(t, fr.render(9), fr.channel) for t, fr in read_replay(path)]
    assert got == [
        (1786309548_500000000, SPACED.replace(b"17", b"9"), "ticker"),
        (3000000000, b'{"channel":"l2_data","sequence_num":9,"events":[]}', "l2_data"),
        (4000000000, b'{"torn', ""),
    ]


@pytest.mark.parametrize("suffix", [".zst", ".gz"])
def test_compressed_files_read_like_plain_ones(tmp_path: Path, suffix: str) -> None:
    """.zst and .gz recordings give the same frames as the plain file."""
    plain = tmp_path / "f.jsonl"
    plain.write_bytes(SPACED + b"\n" + SPACED + b"\n")
    packed = tmp_path / f"f.jsonl{suffix}"
    data = plain.read_bytes()
    packed.write_bytes(zstandard.ZstdCompressor().compress(data) if suffix == ".zst" else gzip.compress(data))
    check_replay_file(packed)
    assert [fr.render(0) for _, fr in read_replay(packed)] == [fr.render(0) for _, fr in read_replay(plain)]


def test_missing_replay_file_is_a_usage_error(tmp_path: Path) -> None:
    """A replay file that does not exist is reported as a usage error naming --replay."""
    with pytest.raises(UsageError, match="replay file not found"):
        check_replay_file(tmp_path / "nope.jsonl")
