"""The store reader used by book and features verifies Parquet page checksums: a flipped bit in a
data page fails the read (a DataError naming the file) instead of passing a wrong price on."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mktpred.errors import DataError
from mktpred.store.reader import Store
from mktpred.testing.store import NS_PER_S, ConnSpec, write_synthetic_store
from mktpred.validate import validate_store

MIDNIGHT = 1763769600 * NS_PER_S


def flip_a_price(path: Path) -> None:
    """Rewrite ``path`` uncompressed and plain-encoded (checksums on), then flip one bit in the
    middle of the ``price`` values, where no decoder notices."""
    table = pq.read_table(path)
    pq.write_table(table, path, compression="none", use_dictionary=False, write_page_checksum=True)
    rg = pq.read_metadata(path).row_group(0)
    col = next(rg.column(i) for i in range(rg.num_columns) if rg.column(i).path_in_schema == "price")
    offset = col.data_page_offset + col.total_compressed_size // 2
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.fixture
def store_with_flip(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "parquet"
    write_synthetic_store(root, [ConnSpec("c1", MIDNIGHT + 10 * NS_PER_S, 20)])
    victim = next((root / "l2").rglob("*.parquet"))
    before = pq.read_table(victim).column("price").to_pylist()
    flip_a_price(victim)
    after = pq.read_table(victim).column("price").to_pylist()  # no verification: silently different
    assert before != after and len(before) == len(after)
    return root, victim


def test_l2_batches_refuse_a_flipped_page(store_with_flip: tuple[Path, Path]) -> None:
    """l2_batches (book, features) raises DataError naming the damaged file."""
    root, victim = store_with_flip
    with pytest.raises(DataError) as info:
        for _ in Store(root).l2_batches("BTC-USD"):
            pass
    assert info.value.where == str(victim)
    assert "CRC checksum verification failed" in info.value.message


def test_read_refuses_a_flipped_page(store_with_flip: tuple[Path, Path]) -> None:
    """Store.read (ticker / trades for book audit and features) verifies checksums too."""
    root, _ = store_with_flip
    with pytest.raises(DataError, match="CRC checksum verification failed"):
        Store(root).read("l2")
    assert Store(root).read("ticker").num_rows > 0  # undamaged tables still read


def test_validate_names_the_flipped_file(store_with_flip: tuple[Path, Path]) -> None:
    """validate's decode pass fails readable for the same file."""
    root, victim = store_with_flip
    report = validate_store(root)
    assert {c.name for c in report.failed} == {"readable"}
    assert report.check("readable").locations[0].startswith(victim.relative_to(root).as_posix())
