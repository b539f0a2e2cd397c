"""`mktpred demo`: the whole chain offline (the core is :mod:`mktpred.demo`)."""

from __future__ import annotations

import logging
import shlex
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal
from mktpred.cli.views import TerminalLogHandler, collect_status_view, render_validation, stop_on_signals
from mktpred.config import load_config
from mktpred.demo import DEFAULT_SECONDS, MARKET_SIGNAL, DemoObserver, default_workdir, run_demo
from mktpred.errors import DataError

if TYPE_CHECKING:
    from mktpred.collect import CollectStatus
    from mktpred.demo import DemoResult
    from mktpred.progress import Progress, ProgressCallback


class _Screen(DemoObserver):
    """The collector's live panel during ``collect``, a progress bar during ``convert`` and
    ``validate`` (plain lines off a terminal): one view at a time, switched at each stage."""

    def __init__(self, term: Terminal) -> None:
        self.term = term
        self.view = ExitStack()
        self.show_status: Callable[[CollectStatus], None] | None = None
        self.show_progress: ProgressCallback | None = None

    def stage(self, name: str, detail: str) -> None:
        self.done()
        self.term.info(detail)
        if name == "collect":
            self.show_status, self.status_every_s = self.view.enter_context(collect_status_view(self.term, 5.0))
        elif name in ("market", "convert", "validate", "features", "report"):
            self.show_progress = self.view.enter_context(self.term.progress(name))

    def note(self, text: str) -> None:
        self.term.info(f"  {text}")

    def collect_status(self, status: CollectStatus) -> None:
        if self.show_status is not None:
            self.show_status(status)

    def progress(self, event: Progress) -> None:
        if self.show_progress is not None:
            self.show_progress(event)

    def done(self) -> None:
        self.view.close()
        self.show_status = self.show_progress = None


@command("demo")
def demo_command(
    seconds: Annotated[float, typer.Option("--seconds", help="How long to record the simulator.",
                                           show_default=True)] = DEFAULT_SECONDS,
    workdir: Annotated[Path | None, typer.Option(
        "--workdir", help="Keep everything here (default: a new ./mktpred-demo-<UTC time>/).",
        show_default=False)] = None,
    with_faults: Annotated[bool, typer.Option(
        "--with-faults", help="Stall, drop and skip sequence numbers: watch the recorder recover and "
                              "validate report the gaps.")] = False,
    market_span: Annotated[str, typer.Option(
        "--market-span", help="How much simulated market (simulate --to-raw) to train and predict on; "
                              "0 skips the model stages.", show_default=True)] = "1h",
    signal: Annotated[float, typer.Option(
        "--signal", help="Planted predictability of the simulated market (0 = none: the model must "
                         "find no skill).", show_default=True)] = MARKET_SIGNAL,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Run the whole chain offline: simulator, collect, a simulated market with a planted signal,
    convert, validate, features, train, predict, the HTML report, and a summary.

    Exit 0 when everything worked as expected (with --with-faults: the faults fired, the recorder
    recovered and validate reported the gaps; with a signal: the model beat the prior on the held-out
    hour), 1 when not (the report is shown first).

    Example: mktpred demo --seconds 10 --workdir demo-data"""
    from mktpred.models.folds import parse_span

    span_s = 0.0 if market_span.strip() == "0" else parse_span(market_span, "--market-span") / 1e9
    cfg = load_config(config)
    term = Terminal()
    screen = _Screen(term)
    sim_log = logging.getLogger("mktpred.simulate")
    handler = TerminalLogHandler(term)
    handler.setLevel(logging.WARNING)  # the faults as they fire; connections are in the collect panel
    sim_log.addHandler(handler)
    stop = threading.Event()
    try:
        with stop_on_signals(stop):
            result = run_demo(cfg, workdir=workdir or default_workdir(Path.cwd()), seconds=seconds,
                              with_faults=with_faults, market_span_s=span_s, signal=signal, stop=stop,
                              observer=screen)
    finally:
        sim_log.removeHandler(handler)
    if as_json:
        term.json(result.to_dict())
    else:
        render_validation(term, result.validation)
        _summary(term, result)
    if not result.ok:
        raise DataError("the demo did not go as expected: " + "; ".join(result.problems), where=str(result.workdir))


def _summary(term: Terminal, r: DemoResult) -> None:
    conv = r.convert.to_json()
    rows: list[tuple[str, str]] = [
        ("recorded", f"{r.collect.frames:,} frames in {r.collect.duration_s:,.1f} s from {r.url}"),
        *((f"  frames {ch}", f"{n:,}") for ch, n in r.frames_per_channel.items()),
        ("reconnects", f"{r.collect.reconnects} (stalls detected: {r.collect.stalls})"),
        ("gaps", f"{r.collect.gaps} recorded by the collector, {r.gaps_reported} reported by validate"),
        *((f"  rows {t}", f"{n:,}") for t, n in r.convert.rows.items()),
        ("conversion", f"{conv['rows_per_s']:,} rows/s, {conv['mb_per_s']} MB/s ({r.convert.seconds:.2f} s, "
                       f"{r.convert.engine} engine)"),
        ("validation", r.validation.status.value),
        *_model_rows(r),
        ("store", str(r.store)),
        ("raw segments", str(r.raw_dir)),
        *((("report", f"{r.report_path} ({r.report.bytes / 2**20:.1f} MiB, opens offline)"),)
          if r.report is not None else ()),
        ("total", f"{r.elapsed_s:,.1f} s"),
    ]
    if r.with_faults:
        fired: dict[str, list[int]] = {}
        for f in r.fault_log:
            fired.setdefault(f.kind, []).append(f.conn_index)
        rows.insert(1, ("faults fired", ", ".join(
            f"{kind} x{len(conns)} (conn {', '.join(map(str, sorted(set(conns))))})"
            for kind, conns in fired.items()) or "none"))
    term.table(f"mktpred demo{' --with-faults' if r.with_faults else ''}", ["", "value"], rows, to_stdout=True)
    term.out.print(f"Try the new store (from {r.workdir}):", markup=False, highlight=False, soft_wrap=True)
    term.out.print(f"  cd {shlex.quote(str(r.workdir))}", markup=False, highlight=False, soft_wrap=True)
    for q in r.queries:
        needs = "" if q.runnable else f"  (needs {q.needs}: pip install {q.needs})"
        term.out.print(f"  # {q.title}{needs}", markup=False, highlight=False, soft_wrap=True)
        term.out.print(f"  {q.command}", markup=False, highlight=False, soft_wrap=True)
    term.out.print(f"Everything is kept in {r.workdir}", markup=False, highlight=False, soft_wrap=True)


def _auc(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _model_rows(r: DemoResult) -> list[tuple[str, str]]:
    """The market, the model's skill against its baselines and the oracle, the held-out predictions."""
    skill = r.skill
    if r.market is None or skill is None or r.trained is None or r.predicted is None:
        return []
    wf, held = skill["walk_forward"], skill["held_out"]
    return [
        ("simulated market", f"{r.market.span_s / 3600:g} h of {', '.join(r.market.products)}, signal "
                             f"{r.market.signal:g}, {r.market.frames:,} frames"),
        ("features", f"{r.features.rows:,} rows" if r.features is not None else "-"),
        ("model", f"{r.trained.name} {r.trained.version} ({r.trained.meta['model']}, horizon {skill['horizon']})"),
        ("AUC walk-forward", f"model {_auc(wf['model'])}, logistic {_auc(wf.get('logistic'))}, imbalance "
                             f"{_auc(wf.get('imbalance'))}, prior {_auc(wf.get('prior'))} ({wf['rows']:,} rows)"),
        ("AUC held out", f"model {_auc(held['model'])}, imbalance {_auc(held.get('imbalance'))}, prior "
                         f"{_auc(held.get('prior'))} ({held['rows']:,} rows)"),
        ("AUC oracle", f"{_auc(skill['oracle_auc'])} (knows the planted rule)"),
        ("predictions", f"{r.predicted.rows:,} rows in {r.store / 'predictions'}"),
    ]

