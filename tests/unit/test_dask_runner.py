"""Converting on Dask distributed (mktpred.convert.dask_runner), with real clusters in this process.

Stores are compared file by file with PyArrow: a Dask run must write exactly what a local run writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mktpred.cli.app import app
from mktpred.config import Config, load_config
from mktpred.convert import dask_runner
from mktpred.convert.gpu_engine import gpu_unavailable_reason
from mktpred.convert.jobs import SegmentFailure, SegmentJob, SegmentResult
from mktpred.convert.runner import run_convert
from mktpred.convert.segment import run_job
from mktpred.errors import RuntimeFailure, UsageError
from mktpred.progress import Progress
from mktpred.store.manifest import Manifest
from mktpred.testing.raw import SynthSpec, write_segment

STEMS = ("coinbase_20260809T210548Z", "coinbase_20260810T000000Z", "coinbase_20260811T000000Z")


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small generated segments (one per day)."""
    raw = tmp_path_factory.mktemp("raw")
    for i, stem in enumerate(STEMS):
        spec = SynthSpec(seed=20 + i, snapshot_levels=400, start_ns=1_786_309_548_228_568_804 + i * 86_400 * 10**9)
        write_segment(raw / f"{stem}.jsonl", spec, n_lines=600)
    return raw


def _jobs(raw: Path, store: Path, engine: str = "cpu") -> list[SegmentJob]:
    cfg = load_config(overrides={"convert.threads": 1})
    return [SegmentJob(source=str(raw / f"{s}.jsonl"), store_root=str(store), engine=engine, config=cfg)
            for s in STEMS]


def _assert_same_store(a: Path, b: Path) -> None:
    """The same Parquet files, each with equal contents (read back with PyArrow)."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.parquet"))
    files_b = sorted(p.relative_to(b) for p in b.rglob("*.parquet"))
    assert files_a == files_b and files_a
    for rel in files_a:
        ta, tb = pq.read_table(a / rel), pq.read_table(b / rel)
        assert ta.num_rows and ta.equals(tb), rel


def test_dask_run_writes_the_same_store_as_a_local_run(raw_dir: Path, tmp_path: Path) -> None:
    """local:2 (in-process workers): one result per segment in job order, and the same files as run_job."""
    events: list[Progress] = []
    results = dask_runner.run_on_dask(_jobs(raw_dir, tmp_path / "dask"), "local:2", events.append,
                                      processes=False)
    assert [type(r) for r in results] == [SegmentResult] * 3
    assert [Path(r.source).name for r in results] == [f"{s}.jsonl" for s in STEMS]
    for job in _jobs(raw_dir, tmp_path / "local"):
        run_job(job)
    _assert_same_store(tmp_path / "local", tmp_path / "dask")
    last = events[-1]
    assert (last.files_done, last.files_total) == (3, 3)
    assert last.bytes_done == last.bytes_total == sum((raw_dir / f"{s}.jsonl").stat().st_size for s in STEMS)
    assert last.rows == sum(sum(r.rows.values()) for r in results if isinstance(r, SegmentResult))
    assert [e.files_done for e in events] == [0, 1, 2, 3]


def test_failure_of_one_segment_is_reported_and_others_complete(raw_dir: Path, tmp_path: Path) -> None:
    """A segment that vanished fails alone, with its error; the two others are converted."""
    jobs = _jobs(raw_dir, tmp_path / "store")
    missing = tmp_path / "coinbase_20260812T000000Z.jsonl"
    jobs.insert(1, SegmentJob(source=str(missing), store_root=str(tmp_path / "store"), engine="cpu",
                              config=jobs[0].config))
    results = dask_runner.run_on_dask(jobs, "local:2", processes=False)
    assert [type(r) for r in results] == [SegmentResult, SegmentFailure, SegmentResult, SegmentResult]
    failure = results[1]
    assert isinstance(failure, SegmentFailure)
    assert failure.source == str(missing)
    assert "cannot read segment" in failure.error and failure.exit_code == 2
    assert len(list((tmp_path / "store").rglob("*.parquet"))) >= 3 * 4


@pytest.mark.skipif(gpu_unavailable_reason(Config()) is None, reason="a usable GPU is present")
def test_gpu_job_on_cpu_worker_fails_for_that_segment(raw_dir: Path, tmp_path: Path) -> None:
    """A job asking for the GPU engine on a worker without one fails with exit 3; others complete."""
    jobs = _jobs(raw_dir, tmp_path / "store")
    jobs[0] = SegmentJob(source=jobs[0].source, store_root=jobs[0].store_root, engine="gpu", config=jobs[0].config)
    results = dask_runner.run_on_dask(jobs, "local:1", processes=False)
    assert isinstance(results[0], SegmentFailure) and results[0].exit_code == 3
    assert results[0].error.startswith("GPU engine unavailable")
    assert all(isinstance(r, SegmentResult) for r in results[1:])


@pytest.mark.skipif(gpu_unavailable_reason(Config()) is None, reason="a usable GPU is present")
def test_auto_is_resolved_on_the_worker(raw_dir: Path, tmp_path: Path) -> None:
    """engine="auto" is decided by the worker that runs the task: the CPU engine here."""
    results = dask_runner.run_on_dask(_jobs(raw_dir, tmp_path / "store", engine="auto")[:1], "local:1",
                                      processes=False)
    assert isinstance(results[0], SegmentResult) and results[0].engine == "cpu"


def test_existing_scheduler_by_address(raw_dir: Path, tmp_path: Path) -> None:
    """A running cluster is reached by its tcp:// address, as a remote one would be."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://")
        results = dask_runner.run_on_dask(_jobs(raw_dir, tmp_path / "store")[:2], address)
    assert [type(r) for r in results] == [SegmentResult] * 2


def test_unreachable_scheduler_is_a_runtime_failure(raw_dir: Path, tmp_path: Path) -> None:
    """Nothing listening at the address: one clear error (exit 3) naming it, after the connect timeout."""
    with pytest.raises(RuntimeFailure) as err:
        dask_runner.run_on_dask(_jobs(raw_dir, tmp_path)[:1], "tcp://127.0.0.1:9", connect_timeout_s=2)
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in str(err.value)
    assert err.value.exit_code == 3


@pytest.mark.parametrize(("address", "workers"), [("local:2", 2), (" local:16 ", 16), ("tcp://10.0.0.5:8786", None),
                                                  ("scheduler.example:8786", None)])
def test_parse_scheduler(address: str, workers: int | None) -> None:
    """local:N gives N workers; anything else is a scheduler address."""
    assert dask_runner.parse_scheduler(address) == workers


@pytest.mark.parametrize("address", ["", "local:0", "local:two", "local"])
def test_bad_scheduler_address_is_a_usage_error(address: str) -> None:
    """Malformed local addresses are usage errors (exit 2) naming --scheduler."""
    with pytest.raises(UsageError) as err:
        dask_runner.parse_scheduler(address)
    assert err.value.exit_code == 2 and err.value.where == "--scheduler"


def test_cli_scheduler_local_gives_the_same_store(raw_dir: Path, tmp_path: Path) -> None:
    """`convert --scheduler local:2` (worker processes) gives the same store and manifest rows as a local run."""
    runner = CliRunner()
    docs = {}
    for name, extra in (("local", []), ("dask", ["--scheduler", "local:2"])):
        args = ["convert", "--raw-dir", str(raw_dir), "--parquet-dir", str(tmp_path / name), "--engine", "cpu",
                "--json", *extra]
        result = runner.invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        docs[name] = json.loads(result.stdout)
    assert docs["dask"]["converted"] == 3 and docs["dask"]["rows"] == docs["local"]["rows"]
    _assert_same_store(tmp_path / "local", tmp_path / "dask")
    keep = ("size", "hash", "rows", "lines", "invalid", "outputs", "engine")
    entries = {}
    for name in docs:
        m = Manifest.load(tmp_path / name)
        entries[name] = {k: {f: getattr(e, f) for f in keep} for k, e in m.entries.items()}
    assert len(entries["dask"]) == 3 and entries["dask"] == entries["local"]


def _cfg(raw: Path, store: Path, engine: str = "cpu") -> Config:
    return load_config(overrides={"convert.threads": 1, "convert.engine": engine, "paths.raw_dir": str(raw),
                                  "paths.parquet_dir": str(store)})


def test_convert_streams_results_progress_once_manifest_each_time(raw_dir: Path, tmp_path: Path) -> None:
    """run_convert on a cluster: progress once per segment as each completes, the manifest saved before each."""
    from distributed import LocalCluster

    store = tmp_path / "store"
    seen: list[tuple[int, int, str]] = []

    def progress(p: Progress) -> None:
        saved = len(Manifest.load(store).entries) if (store / "_manifest.json").exists() else 0
        seen.append((p.files_done, saved, p.current))

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=None) as cluster:
        summary = run_convert(_cfg(raw_dir, store), scheduler=cluster.scheduler_address, progress=progress)
    assert [(done, saved) for done, saved, _ in seen] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert sorted(name for _, _, name in seen[1:]) == sorted(f"{s}.jsonl" for s in STEMS)
    assert [Path(r.source).name for r in summary.segments] == [name for _, _, name in seen[1:]]
    assert (summary.converted, summary.engines) == (3, {"cpu": 3})


def test_dask_run_killed_midway_keeps_the_finished_segments(raw_dir: Path, tmp_path: Path) -> None:
    """Ctrl-C after two results: those two are in the manifest with their files; a re-run converts only the third."""
    from distributed import LocalCluster

    store = tmp_path / "store"

    def interrupt_after_two(p: Progress) -> None:
        if p.files_done == 2:
            raise KeyboardInterrupt

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=None) as cluster:
        with pytest.raises(KeyboardInterrupt):
            run_convert(_cfg(raw_dir, store), scheduler=cluster.scheduler_address, progress=interrupt_after_two)
    kept = Manifest.load(store).entries
    assert len(kept) == 2
    for entry in kept.values():
        assert entry.outputs and all((store / o).is_file() for o in entry.outputs)
    again = run_convert(_cfg(raw_dir, store))
    assert (again.skipped, again.converted, again.failed) == (2, 1, 0)
    (redone,) = again.segments
    assert redone.source not in kept
    assert len(Manifest.load(store).entries) == 3


@pytest.mark.skipif(gpu_unavailable_reason(Config()) is None, reason="a usable GPU is present")
def test_convert_auto_on_dask_is_chosen_by_each_worker(raw_dir: Path, tmp_path: Path) -> None:
    """--engine auto --scheduler: jobs carry "auto", each worker resolves it (the CPU engine here) and says so."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=None) as cluster:
        summary = run_convert(_cfg(raw_dir, tmp_path / "store", engine="auto"), scheduler=cluster.scheduler_address)
    assert (summary.engine, summary.converted, summary.engines) == ("auto", 3, {"cpu": 3})
    assert summary.engine_reason == "each Dask worker uses the GPU engine where it can, else the CPU engine"
    assert {e.engine for e in Manifest.load(tmp_path / "store").entries.values()} == {"cpu"}
