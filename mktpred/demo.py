"""``mktpred demo``: the whole chain, offline, in one call.

:func:`run_demo` starts the built-in simulator on a free localhost port, records it with the real
collector for ``seconds``, seals, converts the segments into a Parquet store and validates it, all
inside one work directory (``raw/``, ``parquet/``, ``csv/``; the configuration's ``[paths]`` are not
used).  It returns a :class:`DemoResult` with the figures a newcomer wants to see and three
ready-to-run example queries over the new store.  It never prints: what happens is reported to a
:class:`DemoObserver`.

With ``with_faults`` the simulator stalls the first connection, drops the second and skips a
sequence number every so many frames (see :func:`fault_plan`), so the recorder has to recover
twice and ``validate`` has gaps to report.  The run is *as expected* (:attr:`DemoResult.ok`) when every step ran, validation
found no failing check and, with faults, each fault fired, the recorder reconnected after the drop
and the stall, and validation reported the injected gaps as gaps the collector recorded.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mktpred.config import Config
from mktpred.errors import Interrupted, OutputNotWritable, UsageError
from mktpred.progress import Progress
from mktpred.wording import plural

if TYPE_CHECKING:  # the stages are imported when the demo runs: `mktpred --help` stays fast
    from mktpred.collect import CollectResult, CollectStatus
    from mktpred.convert.runner import ConvertSummary
    from mktpred.features.build import FeaturesResult
    from mktpred.models.train import TrainResult
    from mktpred.predict.batch import PredictResult
    from mktpred.report import Report
    from mktpred.simulate import FaultEvent
    from mktpred.simulate.to_raw import ToRawResult
    from mktpred.validate import ValidationReport

DEFAULT_SECONDS = 15.0
#: with faults the stall alone costs ``STALL_TIMEOUT_S`` before the recorder reconnects
MIN_FAULT_SECONDS = 6.0
#: the demo's recorder declares a link dead after this much silence (the config's default, 10 s,
#: would not fit in a 15 s run); the injected stall is longer
STALL_TIMEOUT_S = 2.0
STALL_S = 3.0
#: the simulated market the model learns from: one hour of the first product trains in seconds.  It
#: ends MARKET_LEAD_S before the live leg starts (on a whole second, so a seed gives the same grid,
#: model and figures on every run), so the store has no silence between the two
MARKET_SPAN_S = 3600.0
MARKET_SIGNAL = 1.0
MARKET_LEAD_S = 2
#: the planted rule acts on the next mid move, so its skill is largest at the shortest horizon
HORIZON = "1s"
#: the model trains on the first TRAIN_SHARE of the market; predictions start one purge gap later
TRAIN_SHARE = 0.7
MODEL_NAME = "demo"
#: five walk-forward folds, each test block longer than the 301 s purge gap
MIN_MARKET_SPAN_S = 1800.0


class DemoObserver:
    """What :func:`run_demo` reports while it runs; override what you want to show.

    ``stage(name, detail)`` is called when each stage starts (``simulate``, ``collect``, ``market``,
    ``convert``, ``validate``, ``features``, ``train``, ``predict``, ``report``); ``note`` receives
    one-line remarks inside a stage (the training folds); ``collect_status`` receives the recorder's snapshots every
    ``status_every_s`` seconds (read right after ``stage("collect", ...)`` returns, so ``stage`` may
    set it); ``progress`` receives the convert and validate :class:`~mktpred.progress.Progress`
    events (their ``stage`` is ``convert``, ``decode``, ...).
    """

    status_every_s: float = 1.0

    def stage(self, name: str, detail: str) -> None:
        """A stage starts."""

    def collect_status(self, status: CollectStatus) -> None:
        """A recorder status snapshot (counters, rates, notices such as reconnects and gaps)."""

    def progress(self, event: Progress) -> None:
        """Market, convert, validate, features and report progress."""

    def note(self, text: str) -> None:
        """A one-line remark inside a stage."""

    def done(self) -> None:
        """The last stage ended (successfully or not)."""


@dataclass(frozen=True)
class DemoQuery:
    """One ready-to-run example over the demo's store: Python code run from the work directory."""

    title: str
    code: str
    #: a package the example needs that mktpred does not install (``None``: runs as installed)
    needs: str | None = None

    @property
    def command(self) -> str:
        """The example as one shell command (``python -c "..."``), run from the work directory."""
        return f'python -c "{self.code}"'

    @property
    def runnable(self) -> bool:
        """Whether what it needs is installed here (checked without importing it)."""
        return self.needs is None or importlib.util.find_spec(self.needs) is not None

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "command": self.command, "code": self.code, "needs": self.needs,
                "runnable": self.runnable}


def example_queries(store: str = "parquet") -> list[DemoQuery]:
    """DuckDB SQL, PyArrow and pandas examples over the store at ``store`` (a relative path)."""
    for bad in ('"', "$", "`", "\\", "'"):
        if bad in store:
            raise ValueError(f"store path {store!r} cannot be quoted into the examples")
    duck = (
        "import duckdb; duckdb.sql('''SELECT product_id, side, count(*) AS trades, "
        "round(sum(price * size) / sum(size), 2) AS vwap, min(time) AS first, max(time) AS last "
        f"FROM read_parquet('{store}/trades/*/*.parquet', hive_partitioning = true) "
        "GROUP BY ALL ORDER BY ALL''').show()"
    )
    arrow = (
        "import pyarrow.dataset as ds, pyarrow.compute as pc; "
        f"t = ds.dataset('{store}/ticker', format='parquet', partitioning='hive').to_table(); "
        "spread = pc.subtract(t['best_ask'], t['best_bid']); "
        "print(t.num_rows, 'ticker rows, mean spread', round(pc.mean(spread).as_py(), 4), "
        "'last price', t['price'][-1])"
    )
    pandas = (
        "import pandas as pd; "
        f"df = pd.read_parquet('{store}/l2', columns=['product_id', 'side', 'is_snapshot', 'size']); "
        "print(df.groupby(['product_id', 'side', 'is_snapshot']).size().unstack())"
    )
    return [
        DemoQuery("DuckDB SQL: trades and VWAP per product and side", duck),
        DemoQuery("PyArrow: ticker rows and the mean bid-ask spread", arrow),
        DemoQuery("pandas: level2 updates per product and side (snapshot rows vs. updates)", pandas),
    ]


def fault_plan(seconds: float, rate: float) -> list[str]:
    """The ``--with-faults`` fault specs, placed by frame count for a ``seconds`` run at ``rate``
    model messages/s: connection 0 stalls ``STALL_S`` seconds at ~15 % of the run (the recorder
    gives up on it ``STALL_TIMEOUT_S`` later and reconnects); connection 1 is dropped (TCP abort)
    once it has sent ~25 % of the run's frames; connection 2 runs to the end.  A one-frame sequence
    gap is injected every ~12 % of the run's frames on each connection."""
    per_s = rate + 1.0  # the model's messages plus one heartbeat a second
    gap_every = max(10, round(0.12 * seconds * per_s))
    stall_after = max(gap_every + 5, round(0.15 * seconds * per_s))
    drop_after = max(stall_after + 10, round(0.25 * seconds * per_s))
    return [f"stall:seconds={STALL_S:g},after={stall_after}", f"drop:after={drop_after}",
            f"gap:every={gap_every}"]


def default_workdir(cwd: Path, now: datetime | None = None) -> Path:
    """``<cwd>/mktpred-demo-<UTC stamp>``; ``-2``, ``-3``... when that exists already."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = cwd / f"mktpred-demo-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


@dataclass
class DemoResult:
    """Everything one demo run did (``mktpred demo --json`` prints :meth:`to_dict`)."""

    workdir: Path
    url: str
    seconds: float
    with_faults: bool
    faults: list[str]
    collect: CollectResult
    #: frames recorded per channel as Coinbase names them in frames (``l2_data``, ``ticker``, ...)
    frames_per_channel: dict[str, int]
    convert: ConvertSummary
    validation: ValidationReport
    fault_log: list[FaultEvent] = field(default_factory=list)
    #: seconds per stage
    timings: dict[str, float] = field(default_factory=dict)
    #: why the run is not as expected (empty when it is)
    problems: list[str] = field(default_factory=list)
    queries: list[DemoQuery] = field(default_factory=list)
    #: the prediction half (absent with ``market_span_s = 0``)
    market: ToRawResult | None = None
    features: FeaturesResult | None = None
    trained: TrainResult | None = None
    predicted: PredictResult | None = None
    report: Report | None = None

    @property
    def raw_dir(self) -> Path:
        return self.workdir / "raw"

    @property
    def store(self) -> Path:
        return self.workdir / "parquet"

    @property
    def models_dir(self) -> Path:
        return self.workdir / "models"

    @property
    def report_path(self) -> Path:
        return self.workdir / "report.html"

    @property
    def skill(self) -> dict[str, Any] | None:
        """The model against its baselines and the oracle at the demo's horizon: the walk-forward
        (pooled out-of-sample) AUCs and the held-out predictions' AUCs (``None`` without a model)."""
        if self.trained is None or self.predicted is None or self.market is None:
            return None
        meta = self.trained.meta
        oracle = self.market.oracle.get("horizons", {}).get(HORIZON, {})
        return {
            "horizon": HORIZON,
            "oracle_auc": oracle.get("auc"),
            "walk_forward": {"model": meta["metrics"]["pooled"].get("auc"),
                             **{b: v["pooled"].get("auc") for b, v in meta["baselines"].items()},
                             "rows": meta["metrics"]["pooled"].get("rows")},
            "held_out": {"model": self.predicted.metrics.get("auc"),
                         **{b: v.get("auc") for b, v in self.predicted.baselines.items()},
                         "rows": self.predicted.scored_rows, "in_sample": self.predicted.in_sample},
        }

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def elapsed_s(self) -> float:
        return round(sum(self.timings.values()), 3)

    @property
    def gaps_reported(self) -> int:
        """Sequence gaps ``validate`` found in the store."""
        return self.validation.gaps_total

    def to_dict(self) -> dict[str, Any]:
        conv = self.convert.to_json()
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "workdir": str(self.workdir),
            "raw_dir": str(self.raw_dir),
            "store": str(self.store),
            "url": self.url,
            "seconds": self.seconds,
            "with_faults": self.with_faults,
            "faults": list(self.faults),
            "faults_fired": [dataclasses.asdict(f) for f in self.fault_log],
            "frames": self.collect.frames,
            "frames_per_channel": dict(self.frames_per_channel),
            "rows": dict(self.convert.rows),
            "reconnects": self.collect.reconnects,
            "stalls": self.collect.stalls,
            "gaps": self.collect.gaps,
            "gaps_reported": self.gaps_reported,
            "validate_status": self.validation.status.value,
            "convert_seconds": conv["seconds"],
            "rows_per_s": conv["rows_per_s"],
            "mb_per_s": conv["mb_per_s"],
            "elapsed_s": self.elapsed_s,
            "timings": dict(self.timings),
            "queries": [q.to_dict() for q in self.queries],
            "collect_summary": self.collect.to_dict(),
            "convert_summary": conv,
            "validation": self.validation.to_dict(),
            "market": None if self.market is None else self.market.to_json(),
            "features": None if self.features is None else self.features.to_json(),
            "model": None if self.trained is None else self.trained.to_json(),
            "predict": None if self.predicted is None else self.predicted.to_json(),
            "skill": self.skill,
            "report": None if self.report is None else str(self.report_path),
            "report_bytes": None if self.report is None else self.report.bytes,
        }


def _frames_per_channel(status: CollectStatus | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for conn in status.connections if status is not None else ():
        for ch in conn.channels:
            out[ch.channel] = out.get(ch.channel, 0) + ch.frames
    return dict(sorted(out.items()))


def _problems(result: DemoResult) -> list[str]:
    """Why the run is not what the demo promises (empty when it is)."""
    problems = []
    if result.collect.frames == 0:
        problems.append("the recorder received no frames from the simulator")
    if result.convert.failures or result.convert.too_many_invalid:
        problems.append(f"convert: {result.convert.failed} segment(s) failed, "
                        f"{result.convert.invalid} invalid line(s)")
    failed = [c.name for c in result.validation.failed]
    if failed:
        problems.append(f"validate: check(s) failed: {', '.join(failed)}")
    if result.with_faults:
        fired = {f.kind for f in result.fault_log}
        missing = [k for k in ("stall", "drop", "gap") if k not in fired]
        if missing:
            problems.append(f"fault(s) did not fire: {', '.join(missing)}")
        if result.collect.reconnects < 2:
            problems.append(f"expected the recorder to reconnect after the drop and the stall, "
                            f"it reconnected {result.collect.reconnects} time(s)")
        if result.collect.stalls < 1:
            problems.append("the recorder did not detect the stall")
        if result.collect.gaps < 1:
            problems.append("the recorder did not record the injected gap")
        gaps = result.validation.gaps
        if not gaps:
            problems.append("validate did not report the injected gap")
        elif not all(g.known for g in gaps):
            problems.append("validate reported gaps the recorder did not record")
    skill = result.skill
    if skill is not None and result.market is not None and result.market.signal > 0:
        held = skill["held_out"]
        if held["model"] is None or held["prior"] is None or held["model"] <= held["prior"]:
            problems.append(f"the model found no skill in a market with a planted signal (held-out AUC "
                            f"{held['model']}, prior {held['prior']})")
    return problems


def _timed(timings: dict[str, float], stage: str, start: float) -> float:
    now = time.monotonic()
    timings[stage] = round(now - start, 3)
    return now


def run_demo(
    cfg: Config,
    *,
    workdir: Path,
    seconds: float = DEFAULT_SECONDS,
    with_faults: bool = False,
    market_span_s: float = MARKET_SPAN_S,
    signal: float = MARKET_SIGNAL,
    stop: threading.Event | None = None,
    observer: DemoObserver | None = None,
) -> DemoResult:
    """Simulate, collect for ``seconds``, write ``market_span_s`` of a simulated market with a planted
    ``signal`` (0 skips it and the model stages), convert and validate, then features, train, predict
    and the report, inside ``workdir``.

    Uses ``cfg.simulate`` (products, rate, seed, depth; always 127.0.0.1 on a free port),
    ``cfg.collect`` (channels, flush interval, buffer, backoff; the stall timeout is
    :data:`STALL_TIMEOUT_S`), ``cfg.convert`` and ``cfg.validate``; never ``cfg.paths``.
    Setting ``stop`` ends the recording early and raises :class:`Interrupted` after the current
    stage (the recorder also sets it when it ends; the demo clears it then).  Raises :class:`UsageError` for bad arguments and :class:`OutputNotWritable` when
    ``workdir`` cannot be created; data problems are in :attr:`DemoResult.problems`.
    """
    from mktpred.collect import CollectSettings, run_collect
    from mktpred.convert.runner import run_convert
    from mktpred.simulate import SimulatedExchange, parse_fault
    from mktpred.validate import validate_store

    if not seconds > 0:
        raise UsageError(f"--seconds must be > 0, got {seconds:g}", where="--seconds")
    if not 0 <= market_span_s <= 24 * 3600:
        raise UsageError(f"--market-span must be 0 (no model) or up to 24h, got {market_span_s:g} s",
                         where="--market-span")
    if 0 < market_span_s < MIN_MARKET_SPAN_S:
        raise UsageError(f"--market-span must be at least {MIN_MARKET_SPAN_S / 60:g} min to train on, "
                         f"got {market_span_s:g} s", where="--market-span")
    if not signal >= 0:
        raise UsageError(f"--signal must be >= 0, got {signal:g}", where="--signal")
    sim_cfg = cfg.simulate
    if with_faults and seconds < MIN_FAULT_SECONDS:
        raise UsageError(f"--with-faults needs --seconds >= {MIN_FAULT_SECONDS:g} (the stall alone costs "
                         f"the recorder {STALL_TIMEOUT_S:g} s), got {seconds:g}", where="--seconds")
    if with_faults and sim_cfg.rate == 0:
        raise UsageError("--with-faults needs simulate.rate > 0 (faults are placed by frame count)",
                         where="simulate.rate")
    obs = observer or DemoObserver()
    stop = stop or threading.Event()
    workdir = workdir.absolute()
    raw_dir, store, csv_dir = workdir / "raw", workdir / "parquet", workdir / "csv"
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputNotWritable(f"cannot create the demo directory: {exc.strerror or exc}", str(workdir)) from None
    run_cfg = dataclasses.replace(cfg, paths=dataclasses.replace(cfg.paths, raw_dir=raw_dir, parquet_dir=store,
                                                                 csv_dir=csv_dir))
    faults = fault_plan(seconds, sim_cfg.rate) if with_faults else []
    timings: dict[str, float] = {}
    live_start_ns = time.time_ns()
    try:
        t = time.monotonic()
        obs.stage("simulate", f"simulator: {', '.join(sim_cfg.products)} at {sim_cfg.rate:g} msg/s"
                              f"{'; faults: ' + ', '.join(faults) if faults else ''}")
        sim = SimulatedExchange(products=list(sim_cfg.products), rate=sim_cfg.rate, seed=sim_cfg.seed,
                                depth=sim_cfg.depth, faults=[parse_fault(f) for f in faults],
                                host="127.0.0.1", port=0)
        with sim:
            t = _timed(timings, "simulate", t)
            settings = dataclasses.replace(
                CollectSettings.from_config(run_cfg, duration_s=seconds), url=sim.url,
                products=tuple(sim_cfg.products), connections=1, stall_timeout_s=STALL_TIMEOUT_S,
                max_reconnects=0)
            obs.stage("collect", f"collect: recording {sim.url} for {seconds:g} s into {raw_dir}")
            last: list[CollectStatus] = []

            def on_status(st: CollectStatus) -> None:
                last[:] = [st]
                obs.collect_status(st)

            collected = run_collect(settings, stop=stop, on_status=on_status, status_every_s=obs.status_every_s)
            fault_log = list(sim.fault_log)
            url = sim.url
        t = _timed(timings, "collect", t)
        if collected.stopped_by == "stop":
            raise Interrupted(f"interrupted; what was recorded is sealed in {raw_dir}")
        stop.clear()  # the recorder sets it when it ends; from here on it means "the user stopped us"

        market = None
        if market_span_s > 0:
            end_ns = (live_start_ns // 10**9 - MARKET_LEAD_S) * 10**9
            market = _market(raw_dir, sim_cfg.products[0], end_ns - round(market_span_s) * 10**9, end_ns, signal,
                             sim_cfg.seed, sim_cfg.depth, obs)
            t = _timed(timings, "market", t)
            if stop.is_set():
                raise Interrupted(f"interrupted; the raw segments so far are in {raw_dir}")

        obs.stage("convert", f"convert: {plural(len(collected.segments), 'sealed segment')} -> {store}")
        converted = run_convert(run_cfg, progress=obs.progress)
        t = _timed(timings, "convert", t)
        if stop.is_set():
            raise Interrupted(f"interrupted; the store so far is in {store}")

        obs.stage("validate", f"validate: {store}")
        report = validate_store(store, raw_dir=raw_dir, max_silence_s=run_cfg.validate.max_silence_s,
                                progress=obs.progress)
        t = _timed(timings, "validate", t)
        result = DemoResult(workdir=workdir, url=url, seconds=seconds, with_faults=with_faults, faults=faults,
                            collect=collected, frames_per_channel=_frames_per_channel(last[0] if last else None),
                            convert=converted, validation=report, fault_log=fault_log, timings=timings,
                            queries=example_queries("parquet"), market=market)
        if market is not None:
            _model_stages(result, run_cfg, stop, obs, t)
        else:
            _report_stage(result, run_cfg, obs, t)
    finally:
        obs.done()
    result.problems = _problems(result)
    return result


def _market(raw_dir: Path, product: str, start_ns: int, end_ns: int, signal: float, seed: int, depth: int,
            obs: DemoObserver) -> ToRawResult:
    """``simulate --to-raw``: the simulated market with its planted signal and oracle, just before the
    live leg."""
    from mktpred.simulate.to_raw import write_raw

    obs.stage("market", f"market: {(end_ns - start_ns) / 3.6e12:g} h of simulated {product} with signal "
                        f"{signal:g} (simulate --to-raw), ending just before the live leg -> {raw_dir}")
    return write_raw(raw_dir, products=[product], span_ns=end_ns - start_ns, start_ns=start_ns, seed=seed,
                     depth=depth, signal=signal, progress=obs.progress)


def _model_stages(result: DemoResult, cfg: Config, stop: threading.Event, obs: DemoObserver, t: float) -> None:
    """Features, train on the first part of the simulated market, predict the rest, the report."""
    from mktpred.book.table import parse_duration
    from mktpred.coinbase.timestamps import format_rfc3339_ns
    from mktpred.features import FeatureSpec
    from mktpred.features.build import build_features
    from mktpred.models.folds import purge_ns
    from mktpred.models.train import train
    from mktpred.predict.batch import predict

    assert result.market is not None
    market = result.market
    interval = parse_duration(cfg.features.interval)
    horizons = tuple(dict.fromkeys(parse_duration(h) for h in (*cfg.features.horizons, HORIZON)))
    obs.stage("features", f"features: {cfg.features.interval} grid, labels "
                          f"{', '.join(dict.fromkeys((*cfg.features.horizons, HORIZON)))} -> {result.store}/features")
    result.features = build_features(result.store, FeatureSpec(interval, horizons), progress=obs.progress)
    t = _timed(result.timings, "features", t)
    if stop.is_set():
        raise Interrupted(f"interrupted; the store so far is in {result.store}")

    train_end = market.start_ns + round((market.end_ns - market.start_ns) * TRAIN_SHARE)
    held_out = train_end + purge_ns(parse_duration(HORIZON))
    obs.stage("train", f"train: {cfg.train.model}, {cfg.train.folds} purged walk-forward folds, horizon {HORIZON}, "
                       f"{format_rfc3339_ns(market.start_ns)} .. {format_rfc3339_ns(train_end)} -> {result.models_dir}")
    result.trained = train(result.store, result.models_dir, name=MODEL_NAME, horizon=HORIZON, model=cfg.train.model,
                           folds=cfg.train.folds, products=market.products, start=market.start_ns, end=train_end,
                           seed=cfg.train.seed, progress=obs.note)
    t = _timed(result.timings, "train", t)
    if stop.is_set():
        raise Interrupted(f"interrupted; the model is in {result.trained.path}")

    obs.stage("predict", f"predict: {result.trained.name} {result.trained.version} on the held-out "
                         f"{format_rfc3339_ns(held_out)} .. {format_rfc3339_ns(market.end_ns)}")
    result.predicted = predict(result.trained.path, result.store, start=held_out, end=market.end_ns,
                               products=market.products)
    t = _timed(result.timings, "predict", t)
    if stop.is_set():
        raise Interrupted(f"interrupted; the predictions are in {result.store}/predictions")
    _report_stage(result, cfg, obs, t)


def _report_stage(result: DemoResult, cfg: Config, obs: DemoObserver, t: float) -> None:
    from mktpred.report import build_report, write_report

    obs.stage("report", f"report: {result.report_path}")
    built = build_report(result.store, result.models_dir, max_silence_s=cfg.validate.max_silence_s,
                         progress=obs.progress)
    result.report = write_report(built, result.report_path)
    _timed(result.timings, "report", t)
