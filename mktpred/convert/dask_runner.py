"""Converting segments on a Dask distributed cluster (``convert --scheduler ADDRESS``).

One task per segment runs :func:`mktpred.convert.engine.convert_segment` on a worker, which writes
that segment's Parquet (and quarantine, CSV) files into the store exactly as a local run does.
:func:`stream_on_dask` hands the driver each result as its task completes, so the driver saves the
manifest after every segment and a run killed midway keeps the segments that finished.  A segment
that fails is reported as a :class:`~mktpred.convert.engine.SegmentFailure` for that segment; the
others go on.

``ADDRESS`` is ``local:N`` (a LocalCluster of N worker processes on this machine, or one
LocalCUDACluster worker per GPU where dask-cuda is installed and the GPU engine is wanted and
usable), or the address of a running scheduler (``tcp://host:8786``).  Workers of a remote cluster
need mktpred installed and must see the raw segments and the store at the same paths as the driver
(a shared file system).  A job whose engine is ``"auto"`` is resolved on the worker that runs it,
so GPU workers use the GPU engine (falling back to the CPU per file, reported in the result) and
CPU workers the CPU engine.

``distributed`` is imported only inside :func:`stream_on_dask`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import uuid
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Any

from mktpred.convert.jobs import SegmentFailure, SegmentJob, SegmentResult
from mktpred.convert.segment import convert_segment
from mktpred.errors import EXIT_RUNTIME, MktpredError, RuntimeFailure, UsageError
from mktpred.progress import Progress, ProgressCallback, no_progress

_LOCAL = re.compile(r"local:(\d+)\Z")
CONNECT_TIMEOUT_S = 30.0

#: per worker process: the engine "auto" resolved to, keyed by what the choice depends on
_AUTO_CHOICE: dict[tuple[str, bool], str] = {}


def parse_scheduler(address: str) -> int | None:
    """Workers of a ``local:N`` address (``None`` for a scheduler address); bad forms are usage errors."""
    address = address.strip()
    if not address:
        raise UsageError("empty Dask scheduler address", where="--scheduler")
    m = _LOCAL.match(address)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise UsageError("local:N needs N >= 1 workers", where="--scheduler")
        return n
    if address.startswith("local"):
        raise UsageError(f"bad local cluster address {address!r} (expected local:N)", where="--scheduler")
    return None


def _resolve_auto(job: SegmentJob) -> SegmentJob:
    """On the worker: "auto" becomes the engine this worker can run."""
    if job.engine != "auto":
        return job
    from mktpred.gpu import FORCE_CPU_ENV

    key = (os.environ.get(FORCE_CPU_ENV, ""), job.config.gpu.enabled)
    if key not in _AUTO_CHOICE:
        from mktpred.convert.gpu_engine import gpu_unavailable_reason

        _AUTO_CHOICE[key] = "gpu" if gpu_unavailable_reason(job.config) is None else "cpu"
    return dataclasses.replace(job, engine=_AUTO_CHOICE[key], cpu_fallback=True)


def convert_on_worker(job: SegmentJob) -> SegmentResult | SegmentFailure:
    """The task run for one segment: never raises, a failure is returned for that segment."""
    try:
        return convert_segment(_resolve_auto(job))
    except MktpredError as exc:
        return SegmentFailure(job.source, str(exc), exc.exit_code)
    except Exception as exc:
        return SegmentFailure(job.source, f"{type(exc).__name__}: {exc}", EXIT_RUNTIME)


def _with_threads(job: SegmentJob, threads: int) -> SegmentJob:
    """Share this machine's cores between local workers (when the engine would take them all)."""
    if job.config.convert.threads != 0:
        return job
    cfg = job.config
    return dataclasses.replace(job, config=dataclasses.replace(
        cfg, convert=dataclasses.replace(cfg.convert, threads=threads)))


def _want_cuda_cluster(jobs: Sequence[SegmentJob]) -> int:
    """GPUs for a LocalCUDACluster: dask-cuda installed, GPU engine wanted and usable (else 0)."""
    import importlib.util

    if not jobs or not any(j.engine in ("gpu", "auto") for j in jobs):
        return 0
    if importlib.util.find_spec("dask_cuda") is None:
        return 0
    from mktpred.gpu import detect_gpu

    status = detect_gpu(jobs[0].config)
    return sum(d.visible for d in status.devices) if status.usable else 0


@contextmanager
def _client(address: str, jobs: Sequence[SegmentJob], processes: bool, timeout_s: float) -> Iterator[Any]:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise RuntimeFailure("Dask distributed is not installed (pip install 'mktpred[dask]')",
                             where="--scheduler") from None
    n = parse_scheduler(address)
    if n is None:
        try:
            client = Client(address, timeout=timeout_s)
        except (OSError, TimeoutError) as exc:
            raise RuntimeFailure(f"cannot reach the Dask scheduler at {address}: {exc}",
                                 where="--scheduler") from None
        with client:
            yield client
        return
    gpus = _want_cuda_cluster(jobs) if processes else 0
    if gpus:
        from dask_cuda import LocalCUDACluster

        cluster = LocalCUDACluster(n_workers=min(n, gpus), threads_per_worker=1, dashboard_address=None)
    else:
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=processes, dashboard_address=None)
    with cluster, Client(cluster) as client:
        yield client


def stream_on_dask(jobs: Sequence[SegmentJob], address: str, *, processes: bool = True,
                   connect_timeout_s: float = CONNECT_TIMEOUT_S,
                   ) -> Generator[SegmentResult | SegmentFailure, None, None]:
    """Convert ``jobs`` on the cluster at ``address``, one task per segment, yielding each result
    (or failure) as its task completes.

    ``processes=False`` runs a ``local:N`` cluster's workers as threads of this process (tests).
    Raises only for the cluster itself (bad address, unreachable scheduler).  Closing the generator
    early (an interrupt in the caller) cancels the tasks not yet finished and closes the client
    (and a ``local:N`` cluster).
    """
    n_local = parse_scheduler(address)
    if not jobs:
        return
    if n_local is not None:
        threads = max(1, (os.cpu_count() or 1) // n_local)
        jobs = [_with_threads(j, threads) for j in jobs]
    with _client(address, jobs, processes, connect_timeout_s) as client:
        from distributed import as_completed

        run = uuid.uuid4().hex[:8]
        futures = [client.submit(convert_on_worker, job, key=f"mktpred-convert-{run}-{i}", pure=False)
                   for i, job in enumerate(jobs)]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut in as_completed(futures):
                i = index[fut.key]
                if fut.status != "finished":  # the worker died, or the task was cancelled or never ran
                    exc = fut.exception() if fut.status == "error" else None
                    why = f"{type(exc).__name__}: {exc}" if exc is not None else fut.status
                    out: SegmentResult | SegmentFailure = SegmentFailure(
                        jobs[i].source, f"Dask task failed: {why}", EXIT_RUNTIME)
                else:
                    out = fut.result()
                fut.release()
                yield out
        finally:
            pending = [f for f in futures if not f.done()]
            if pending:
                client.cancel(pending)


def run_on_dask(jobs: Sequence[SegmentJob], address: str, progress: ProgressCallback = no_progress, *,
                processes: bool = True, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                ) -> list[SegmentResult | SegmentFailure]:
    """All of :func:`stream_on_dask` at once: one result or failure per job, in job order.

    ``progress`` hears once per segment, as it completes (``convert`` itself streams instead, to
    save the manifest after each segment).
    """
    parse_scheduler(address)
    sizes = {j.source: os.path.getsize(j.source) if os.path.exists(j.source) else 0 for j in jobs}
    total_bytes = sum(sizes.values())
    by_source: dict[str, SegmentResult | SegmentFailure] = {}
    done = rows = done_bytes = 0
    progress(Progress("convert", 0, len(jobs), 0, total_bytes, 0, ""))
    with closing(stream_on_dask(jobs, address, processes=processes, connect_timeout_s=connect_timeout_s)) as stream:
        for out in stream:
            by_source[out.source] = out
            done += 1
            done_bytes += sizes.get(out.source, 0)
            if isinstance(out, SegmentResult):
                rows += sum(out.rows.values())
            progress(Progress("convert", done, len(jobs), done_bytes, total_bytes, rows,
                              os.path.basename(out.source)))
    return [by_source[j.source] for j in jobs if j.source in by_source]
