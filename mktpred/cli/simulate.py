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

from mktpred.cli.base import ConfigOption, command
from mktpred.cli.output import Terminal, TerminalLogHandler
from mktpred.config import load_config


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


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
    speed: Annotated[float, typer.Option(help="Replay speed factor (0 = as fast as possible).")] = 1.0,
    fault: Annotated[list[str] | None, typer.Option(help="Inject a fault, e.g. drop:after=500 (repeatable; "
                                                         "see README).", show_default=False)] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after S seconds (default: until Ctrl-C).",
                                                   show_default=False)] = None,
    config: ConfigOption = None,
) -> None:
    """Run a Coinbase Advanced Trade-compatible exchange on localhost (market model, replay, faults).

    Prints the URL on stdout, logs connections and faults on stderr, runs until Ctrl-C (exit 0).

    Example: mktpred simulate --port 8765 --products BTC-USD --fault drop:after=500"""
    from mktpred.simulate import SimulatedExchange, parse_fault

    specs = [parse_fault(s) for s in fault or []]
    csv = None if products is None else [p.strip() for p in products.split(",") if p.strip()]
    cfg = load_config(config, {
        "simulate.host": host, "simulate.port": port, "simulate.products": csv, "simulate.rate": rate,
        "simulate.seed": seed, "simulate.depth": depth,
    }).simulate
    sim = SimulatedExchange(products=cfg.products, rate=cfg.rate, seed=cfg.seed, depth=cfg.depth, faults=specs,
                            replay=replay, speed=speed, host=cfg.host, port=cfg.port)
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
