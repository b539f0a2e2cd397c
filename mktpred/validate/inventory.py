"""What is on disk: the data files of each table, their Parquet footers, and anything else.

Walking the store and reading footers (schema, row counts) touches metadata only, so these
checks cost milliseconds per file whatever the data size.

Besides the contract tables, a folder the manifest's entries write to (``csv2parquet --format
generic --table NAME``) is a table too: its files are listed (``<NAME>/date=D/*.parquet``, or
``<NAME>/*.parquet`` without a time column) and read, but have no contract schema to check.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mktpred.book.table import BOOK_TABLE, MAX_DEPTH, book_schema, depth_of
from mktpred.naming import PARTITION_RE
from mktpred.store.layout import MANIFEST_NAME, QUARANTINE_DIR, TMP_SUFFIX
from mktpred.store.schemas import TABLE_SCHEMAS
from mktpred.validate.report import CheckResult, Finding, Status

#: tables derived from the contract tables by later stages (``mktpred book``); checked like the
#: others, against the schema their own module defines
DERIVED_TABLES = (BOOK_TABLE,)
KNOWN_TABLES = (*TABLE_SCHEMAS, *DERIVED_TABLES)

_PART_SUFFIX = re.compile(r"-\d+\Z")


@dataclass
class DataFile:
    """One ``<table>/date=<D>/<stem>[-k].parquet`` file and what its footer says."""

    path: Path
    rel: str  #: path relative to the store root, ``/``-separated (as the manifest lists it)
    table: str
    date: str
    size: int
    rows: int | None = None  #: from the footer; None when it cannot be read
    schema: pa.Schema | None = None
    error: str | None = None  #: why it cannot be read (footer or data pages)
    schema_ok: bool = False
    segment: str = ""  #: the source it came from (manifest), else its stem without ``-k``
    contract: bool = True  #: False: a table with no contract (generic CSV); only read, not checked

    @property
    def usable(self) -> bool:
        """Readable and with the contract schema: the content checks read it."""
        return self.error is None and self.schema_ok

    @property
    def stem(self) -> str:
        return _PART_SUFFIX.sub("", self.path.name[: -len(".parquet")])


@dataclass
class Inventory:
    """Every file under the store, sorted by kind."""

    root: Path
    files: list[DataFile] = field(default_factory=list)
    stray: list[Finding] = field(default_factory=list)
    has_manifest: bool = False

    def usable(self, table: str) -> list[DataFile]:
        return [f for f in self.files if f.table == table and f.usable]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def scan_store(root: Path, owned_tables: Collection[str] = ()) -> Inventory:
    """List the store's files: data files per table and partition, stray and temporary files.

    ``owned_tables``: folders the manifest writes to besides the contract tables (generic CSV)."""
    inv = Inventory(root=root)
    for entry in sorted(root.iterdir()):
        name = entry.name
        if entry.is_file():
            if name == MANIFEST_NAME:
                inv.has_manifest = True
            elif name.endswith(TMP_SUFFIX) or ".tmp" in name:
                inv.stray.append(Finding(name, "leftover temporary file"))
            continue
        if name == QUARANTINE_DIR or name.startswith((".", "_")):
            continue
        if name in KNOWN_TABLES:
            _scan_table(inv, entry)
        elif name in owned_tables:
            _scan_table(inv, entry, contract=False)
        else:
            inv.stray.append(Finding(f"{name}/", "not a table of the store contract (not checked)", Status.WARN))
    return inv


def _scan_table(inv: Inventory, table_dir: Path, *, contract: bool = True) -> None:
    """A contract table's files are all in ``date=`` partitions; a table without a contract may
    also keep files in its own folder (``date`` is then empty)."""
    table = table_dir.name
    for dirpath, dirnames, filenames in os.walk(table_dir):
        here = Path(dirpath)
        dirnames.sort()
        rel_dir = here.relative_to(inv.root).as_posix()
        m = PARTITION_RE.match(here.name) if here != table_dir else None
        if here != table_dir and (m is None or here.parent != table_dir):
            for name in sorted(filenames):
                inv.stray.append(Finding(f"{rel_dir}/{name}", "file outside a date= partition"))
            if m is None:
                inv.stray.append(Finding(f"{rel_dir}/", "folder that is not a date=YYYY-MM-DD partition"))
            continue
        for name in sorted(filenames):
            path = here / name
            rel = f"{rel_dir}/{name}"
            if m is None and contract:
                inv.stray.append(Finding(rel, "file outside a date= partition"))
            elif name.endswith(TMP_SUFFIX) or ".tmp" in name:
                inv.stray.append(Finding(rel, "leftover temporary file"))
            elif not name.endswith(".parquet") or name.startswith("."):
                inv.stray.append(Finding(rel, "not a Parquet data file"))
            else:
                inv.files.append(DataFile(path=path, rel=rel, table=table, date=m.group(1) if m else "",
                                          size=path.stat().st_size, contract=contract))


def read_footers(inv: Inventory) -> None:
    """Read each file's footer: row count and schema (an unreadable footer is recorded, not raised)."""
    for f in inv.files:
        try:
            meta = pq.read_metadata(f.path)
            f.rows = meta.num_rows
            f.schema = meta.schema.to_arrow_schema()
        except (OSError, pa.ArrowException, ValueError) as exc:
            f.error = _first_line(exc)
            continue
        f.schema_ok = f.contract and schema_problem(f.table, f.schema) == ""


def contract_schema(table: str, actual: pa.Schema) -> pa.Schema:
    """The schema a file of ``table`` must have; for ``book``, the one for the depth its columns imply."""
    if table == BOOK_TABLE:
        return book_schema(min(max(depth_of(actual), 1), MAX_DEPTH))
    return TABLE_SCHEMAS[table]


def schema_problem(table: str, actual: pa.Schema) -> str:
    """Empty when ``actual`` is the contract schema of ``table``, else what differs."""
    if table == BOOK_TABLE:
        depth = depth_of(actual)
        if depth == 0:
            return "no level columns (bid_price_0 ...): not a book table"
        if depth > MAX_DEPTH:
            return f"{depth} levels per side, at most {MAX_DEPTH}"
    return _schema_diff(actual, contract_schema(table, actual))


def _schema_diff(actual: pa.Schema, expected: pa.Schema) -> str:
    """Empty when equal (names, order, types incl. unit and time zone), else what differs."""
    if actual.names == expected.names and all(a.type == e.type for a, e in zip(actual, expected, strict=True)):
        return ""
    problems: list[str] = []
    missing = [n for n in expected.names if n not in actual.names]
    extra = [n for n in actual.names if n not in expected.names]
    if missing:
        problems.append("missing " + ", ".join(missing))
    if extra:
        problems.append("unexpected " + ", ".join(extra))
    for e in expected:
        if e.name in actual.names:
            a = actual.field(e.name)
            if a.type != e.type:
                problems.append(f"{e.name} is {a.type}, expected {e.type}")
    if not problems:
        problems.append(f"columns in order {', '.join(actual.names)}, expected {', '.join(expected.names)}")
    return "; ".join(problems)


def check_readable(inv: Inventory) -> CheckResult:
    """Every Parquet file opens and its data pages decode (errors recorded by the decode pass)."""
    findings = [Finding(f.rel, f"cannot be read: {f.error}") for f in inv.files if f.error is not None]
    return CheckResult.from_findings("readable", findings, checked=len(inv.files),
                                     passed=f"{len(inv.files)} files open and decode")


def check_schema(inv: Inventory) -> CheckResult:
    """Each readable file's schema equals its table's contract exactly (``book``: for the depth its
    columns imply; book files of different depths are a warning, since one dataset read of them
    needs ``union_by_name``)."""
    findings: list[Finding] = []
    checked = 0
    depths: dict[int, list[str]] = {}
    for f in inv.files:
        if f.schema is None or not f.contract:
            continue
        checked += 1
        diff = schema_problem(f.table, f.schema)
        if diff:
            findings.append(Finding(f.rel, diff))
        elif f.table == BOOK_TABLE:
            depths.setdefault(depth_of(f.schema), []).append(f.rel)
    if len(depths) > 1:
        mix = ", ".join(f"{d} levels: {len(rels)} files (e.g. {rels[0]})" for d, rels in sorted(depths.items()))
        findings.append(Finding(f"{BOOK_TABLE}/", f"files of different depths ({mix})", Status.WARN,
                                count=sum(len(r) for r in depths.values())))
    return CheckResult.from_findings("schema", findings, checked=checked,
                                     passed=f"{checked} files match the contract")


def check_stray(inv: Inventory) -> CheckResult:
    """No stray or leftover temporary file in the dataset folders."""
    return CheckResult.from_findings("stray_files", list(inv.stray), checked=len(inv.files) + len(inv.stray),
                                     passed="no stray or temporary files")
