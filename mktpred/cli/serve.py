"""`mktpred serve`: record like collect, compute features online, publish predictions over HTTP
(the core is :mod:`mktpred.serve`)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mktpred.cli.base import ConfigOption, JsonOption, command, split_csv
from mktpred.cli.output import Terminal
from mktpred.cli.views import live_status_view, stop_on_signals
from mktpred.config import load_config
from mktpred.errors import Interrupted, UsageError

if TYPE_CHECKING:
    from mktpred.serve import ServeStatus


@command("serve")
def serve_command(
    model: Annotated[Path, typer.Option(help="A model version directory, or <models-dir>/<name> (its current "
                                             "version, hot-reloaded when retrain promotes a new one).")],
    url: Annotated[str | None, typer.Option(help="WebSocket endpoint (e.g. a local `mktpred simulate`).",
                                            show_default=False)] = None,
    products: Annotated[str | None, typer.Option(help="Comma-separated product ids (default: config "
                                                      "collect.products).", show_default=False)] = None,
    raw_dir: Annotated[Path | None, typer.Option(help="Where raw segments are written.", show_default=False)] = None,
    predictions_dir: Annotated[Path | None, typer.Option(help="Where prediction segments are written (default: "
                                                              "config paths.predictions_dir).",
                                                         show_default=False)] = None,
    host: Annotated[str | None, typer.Option(help="HTTP bind address (default: config serve.host, loopback).",
                                             show_default=False)] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port, 0 = any free port (default: config serve.port).",
                                             show_default=False)] = None,
    duration: Annotated[float | None, typer.Option(help="Stop cleanly after S seconds (default: run until "
                                                        "stopped).", show_default=False)] = None,
    grace_ms: Annotated[float, typer.Option(help="Publish a grid point g by timer once the estimated exchange "
                                                 "clock passes g + this many ms.")] = 50.0,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Serve live predictions: record raw segments exactly as collect does, compute features online,
    predict at every grid point and publish over HTTP (GET /health, /predictions/latest, /stream
    (SSE), WS /ws, OpenAPI at /docs) and to JSONL prediction segments.

    A bad model directory is exit 2 before connecting.  SIGTERM seals both kinds of segments and
    exits 0; Ctrl-C does the same and exits 130.

    Example: mktpred serve --model data/models/default --products BTC-USD,ETH-USD --port 8000"""
    from mktpred.serve import ServeSettings, run_serve

    cfg = load_config(config, {
        "collect.url": url, "collect.products": split_csv(products), "paths.raw_dir": raw_dir,
        "paths.predictions_dir": predictions_dir, "serve.host": host, "serve.port": port,
    })
    if not 0 <= grace_ms < 3_600_000:
        raise UsageError(f"--grace-ms must be between 0 and 3600000, got {grace_ms}", where="--grace-ms")
    settings = ServeSettings.from_config(cfg, model, duration_s=duration, grace_ns=int(grace_ms * 1e6))
    term = Terminal()
    stop = threading.Event()

    def ready(http_url: str) -> None:
        term.info(f"serve: listening on {http_url} (GET /health, /predictions/latest, /stream; WS /ws; /docs)")

    with stop_on_signals(stop) as caught, _status_view(term, cfg.collect.status_interval_s) as (show, every):
        result = run_serve(settings, stop=stop, on_ready=ready, on_status=show, status_every_s=every)
    if as_json:
        term.json(result.to_dict())
    else:
        lat = result.latency_us
        term.info(f"serve: {result.frames:,} frames, {result.predictions:,} predictions "
                  f"({result.invalid_predictions:,} invalid) at {result.grid_points:,} grid points, "
                  f"model {result.model} {' -> '.join(result.versions)}, latency p50 {_us(lat['p50'])} "
                  f"p99 {_us(lat['p99'])}, clients {result.clients_total} ({result.clients_dropped} dropped); "
                  f"{len(result.collect.segments)} raw and {len(result.prediction_segments)} prediction "
                  f"{'segment' if len(result.collect.segments) + len(result.prediction_segments) == 1 else 'segments'} "
                  "sealed")
    if caught and caught[0] == signal.SIGINT:
        raise Interrupted("interrupted (segments sealed)")


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f} µs"


def _status_view(term: Terminal, interval_s: float) -> AbstractContextManager[
        tuple[Callable[[ServeStatus], None], float]]:
    """A live panel on a terminal; otherwise notices as they come and a status line every ``interval_s``."""
    return live_status_view(term, interval_s, _panel, _line)


def _line(st: ServeStatus) -> str:
    c = st.collect
    return (f"serve: {st.frames:,} frames ({c.frames_per_s:,.0f}/s), {st.predictions:,} predictions "
            f"({st.invalid:,} invalid), latency p50 {_us(st.latency_p50_us)} p99 {_us(st.latency_p99_us)}, "
            f"model {st.model} {st.version}, clients {st.clients} ({st.clients_dropped} dropped), "
            f"backlog {st.backlog:,}, reconnects {c.reconnects}, gaps {c.gaps}")


def _panel(st: ServeStatus, width: int = 80) -> Any:
    """The live panel (a two-column table fits any terminal); every value is plain text, never markup."""
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    c = st.collect
    t = Table(show_header=False, expand=False)
    t.add_column("what", style="bold")
    t.add_column("value", justify="right")
    for k, v in (("frames", f"{st.frames:,} ({c.frames_per_s:,.0f}/s)"),
                 ("predictions", f"{st.predictions:,} ({st.invalid:,} invalid)"),
                 ("latency p50 / p99", f"{_us(st.latency_p50_us)} / {_us(st.latency_p99_us)}"),
                 ("model", f"{st.model} {st.version}" + (f" ({st.reloads} reloads)" if st.reloads else "")),
                 ("clients", f"{st.clients} ({st.clients_dropped} dropped)"),
                 ("backlog", f"{st.backlog:,} lines"),
                 ("connections", f"{len(c.connections)}, reconnects {c.reconnects}, gaps {c.gaps}"),
                 ("raw written", f"{c.bytes_written / 2**20:,.1f} MiB, {c.lines_written:,} lines")):
        t.add_row(k, Text(v))
    return Panel(t, title=Text(f"mktpred serve · {st.url}"), expand=False)
