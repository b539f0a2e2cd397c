"""`mktpred simulate`: the exchange simulator (the core is :mod:`mktpred.simulate`)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from mktpred.cli.base import ConfigOption, JsonOption, command, lazy_help
from mktpred.cli.output import Terminal
from mktpred.cli.views import TerminalLogHandler
from mktpred.config import SimulateConfig, load_config
from mktpred.errors import UsageError
from mktpred.wording import plural

#: where ``--to-raw`` starts its clock unless ``--start`` says otherwise (fixed, so runs repeat)
DEFAULT_START = "2026-01-05T00:00:00Z"


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _fault_help() -> str:
    """``--fault``'s help: every fault kind the simulator knows, read from its faults module."""
    from mktpred.simulate.faults import FAULT_KINDS, spec_syntax

    return ("Inject a fault (repeatable), e.g. drop:after=500; the kinds: "
            + "; ".join(spec_syntax(k) for k in FAULT_KINDS) + ". Keys in parentheses are optional; see README.")


lazy_help("simulate", "fault", _fault_help)


@command("simulate")
def simulate_command(
    host: Annotated[str | None, typer.Option(help="Bind address.", show_default=False)] = None,
    port: Annotated[int | None, typer.Option(help="Bind port, 0 = any free port (default 8765).",
                                             show_default=False)] = None,
    products: Annotated[str | None, typer.Option(help="Comma-separated product ids.", show_default=False)] = None,
    rate: Annotated[float | None, typer.Option(help="Market-model messages per second (0 = as fast as possible).",
                                               show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (same seed, same market).", show_default=False)] = None,
    depth: Annotated[int | None, typer.Option(help="Price levels per side in each book.", show_default=False)] = None,
    replay: Annotated[Path | None, typer.Option(help="Serve this recording (frames or raw records, "
                                                     ".zst/.gz ok) instead of the model.",
                                                show_default=False)] = None,
    speed: Annotated[float, typer.Option(help="Replay (or --start clock) speed factor (0 = as fast as "
                                                "possible).")] = 1.0,
    fault: Annotated[list[str] | None, typer.Option(metavar="SPEC", help="Inject a fault, e.g. drop:after=500 (repeatable; "
                                                         "see README).", show_default=False)] = None,  # see _fault_help
    duration: Annotated[float | None, typer.Option(help="Stop after S seconds (default: until Ctrl-C).",
                                                   show_default=False)] = None,
    signal_: Annotated[float | None, typer.Option("--signal", help="Planted predictability of the mid (0 = none; "
                                                                   "see the README).", show_default=False)] = None,
    to_raw: Annotated[Path | None, typer.Option("--to-raw", help="Write sealed raw segments and oracle.json into "
                                                                 "this directory at full speed (no socket).",
                                                show_default=False)] = None,
    span: Annotated[str, typer.Option(help="With --to-raw: simulated time to write (30s, 15m, 6h, ...).")] = "1h",
    start: Annotated[str | None, typer.Option(help="Start of the simulated clock, UTC (default for --to-raw: "
                                                   f"{DEFAULT_START}); without --to-raw, serve on that clock.",
                                              show_default=False)] = None,
    json_out: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Run a Coinbase Advanced Trade-compatible exchange on localhost (market model, replay, faults),
    or write hours of simulated market as raw segments (--to-raw) with the honesty oracle.

    Prints the URL on stdout, logs connections and faults on stderr, runs until Ctrl-C (exit 0).

    Example: mktpred simulate --port 8765 --products BTC-USD --fault drop:after=500

    Example: mktpred simulate --to-raw data/raw --span 6h --signal 1 --start 2026-01-05T00:00:00Z"""
    from mktpred.simulate import SimulatedExchange, parse_fault

    specs = [parse_fault(s) for s in fault or []]
    csv = None if products is None else [p.strip() for p in products.split(",") if p.strip()]
    cfg = load_config(config, {
        "simulate.host": host, "simulate.port": port, "simulate.products": csv, "simulate.rate": rate,
        "simulate.seed": seed, "simulate.depth": depth, "simulate.signal": signal_,
    }).simulate
    if to_raw is not None:
        _to_raw(to_raw, cfg, span, start or DEFAULT_START, json_out, replay is not None or bool(specs))
        return
    if json_out:
        raise UsageError("--json goes with --to-raw", where="--json")
    start_ns = None if start is None else _time_ns(start, "--start")
    sim = SimulatedExchange(products=cfg.products, rate=cfg.rate, seed=cfg.seed, depth=cfg.depth, faults=specs,
                            replay=replay, speed=speed, host=cfg.host, port=cfg.port, signal=cfg.signal,
                            start_ns=start_ns)
    term = Terminal()
    log = logging.getLogger("mktpred.simulate")
    handler = TerminalLogHandler(term)
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.INFO)
    old_term = signal.signal(signal.SIGTERM, _sigterm) if threading.current_thread() is threading.main_thread() \
        else None
    if old_term is not None:  # a shell's `cmd &` starts us with SIGINT ignored; Ctrl-C/kill -INT must still stop
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sim.start()
        what = (f"replay of {replay} at speed {speed:g}" if replay is not None
                else f"{', '.join(cfg.products)} at {cfg.rate:g} msg/s" if cfg.rate else
                f"{', '.join(cfg.products)} as fast as possible")
        if start is not None and replay is None:
            what += f" on a simulated clock from {start} (x{speed:g})"
        if cfg.signal and replay is None:
            what += f", signal {cfg.signal:g}"
        term.out.print(sim.url, markup=False, highlight=False, soft_wrap=True)
        term.info(f"simulating {what}; faults: {', '.join(map(str, specs)) or 'none'}; Ctrl-C stops")
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic())))
        except KeyboardInterrupt:
            pass
    finally:
        sim.stop()
        log.removeHandler(handler)
        log.setLevel(old_level)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    conns = sim.connections()
    term.info(f"stopped: {len(conns)} connections, {sum(c.frames_sent for c in conns):,} frames sent, "
              f"{len(sim.fault_log)} faults fired")


def _time_ns(text: str, where: str) -> int:
    from mktpred.store.reader import to_ns

    try:
        ns = to_ns(text)
    except UsageError as exc:
        raise UsageError(exc.message, where=where) from None
    assert ns is not None
    return ns


def _to_raw(raw_dir: Path, cfg: SimulateConfig, span: str, start: str, json_out: bool, served_only: bool) -> None:
    from mktpred.book.table import parse_duration
    from mktpred.simulate.to_raw import write_raw

    if served_only:
        raise UsageError("--replay and --fault serve a socket; --to-raw writes the model only", where="--to-raw")
    try:
        span_ns = parse_duration(span)
    except UsageError as exc:
        raise UsageError(exc.message, where="--span") from None
    term = Terminal()
    with term.progress("simulating") as progress:
        result = write_raw(raw_dir, products=cfg.products, span_ns=span_ns, start_ns=_time_ns(start, "--start"),
                           seed=cfg.seed, depth=cfg.depth, rate=cfg.rate, signal=cfg.signal, progress=progress)
    if json_out:
        term.json(result.to_json())
        return
    summary = result.to_json()
    term.info(f"wrote {summary['span_s'] / 3600:g} simulated hours of {', '.join(result.products)} "
              f"({result.frames:,} frames, {result.bytes / 2**20:,.1f} MiB, {plural(len(result.segments), 'segment')}) "
              f"into {raw_dir} in {result.elapsed_s:.1f} s ({summary['simulated_hours_per_minute']:g} "
              f"simulated hours per minute)")
    rows = [(h, v["auc"], v["rows"], v["se_h0"]) for h, v in result.oracle["horizons"].items()]
    term.table(f"oracle (signal {result.signal:g}): AUC of the planted rule, {result.oracle_path}",
               ["horizon", "auc", "rows", "se_h0"], rows, to_stdout=True)
