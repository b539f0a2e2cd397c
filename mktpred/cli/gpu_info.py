"""`mktpred gpu-info`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal, memory_bars
from mktpred.config import load_config
from mktpred.errors import UsageError


def _gib(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}"


@command("gpu-info")
def gpu_info_command(
    watch: Annotated[bool, typer.Option("--watch", help="Then refresh each GPU's memory bar live until "
                                                        "Ctrl-C (every gpu.monitor_interval_s).")] = False,
    config: ConfigOption = None, json: JsonOption = False,
) -> None:
    """Show the NVIDIA GPU(s), their memory and the cuDF stack, or why the CPU engine will run.

    Exit 0 whether or not a GPU is usable (130 when --watch is stopped with Ctrl-C).
    Example: mktpred gpu-info --watch"""
    from mktpred.gpu import DeviceMemory, NvmlSampler, detect_gpu, watch_memory

    if watch and json:
        raise UsageError("--watch shows a live display; it does not combine with --json", where="--watch")
    term = Terminal()
    cfg = load_config(config)
    status = detect_gpu(cfg, include_stack=True)
    doc = status.to_dict()
    if json:
        term.json(doc)
        return
    if status.usable:
        verdict = Text(f"GPU engine usable: {status.reason}.\n`mktpred convert --engine auto` will use the "
                       "GPU engine.\n")
    else:
        verdict = Text(f"No usable GPU: {status.reason}.\n`mktpred convert --engine auto` will use the "
                       "CPU engine.\n")
    parts: list[RenderableType] = [verdict]
    if status.devices:
        devices = Table(title="devices", header_style="bold")
        for col in ("#", "name", "compute", "total GiB", "used GiB", "free GiB", "util %", "temp °C",
                    "driver", "CUDA"):
            devices.add_column(col)
        for d in doc["devices"]:
            devices.add_row(*map(Text, (f"{d['index']}{'' if d['visible'] else ' (hidden)'}", d["name"],
                                        d["compute_capability"] or "", _gib(d["memory_total_gib"]),
                                        _gib(d["memory_used_gib"]), _gib(d["memory_free_gib"]),
                                        "" if d["utilization_pct"] is None else str(d["utilization_pct"]),
                                        "" if d["temperature_c"] is None else str(d["temperature_c"]),
                                        status.driver_version or "", status.cuda_version or "")))
        parts.append(devices)
        parts.append(memory_bars(DeviceMemory(d.index, d.name, d.memory_used, d.memory_total)
                                 for d in status.devices))
    stack = Table(title="software stack", header_style="bold")
    for col in ("package", "version", "imports", "note"):
        stack.add_column(col)
    for p in status.stack.values():
        state = "yes" if p.importable else ("not installed" if not p.installed else "NO")
        stack.add_row(*map(Text, (p.name, p.version or "", state, p.error or "")))  # errors are not markup
    parts.append(stack)
    term.panel(Group(*parts), "mktpred gpu-info", to_stdout=True)
    if not watch:
        return
    if not any(d.visible for d in status.devices):
        term.warn("nothing to watch: no GPU device")
        return
    # Runs until Ctrl-C: the KeyboardInterrupt becomes "error: interrupted" and exit 130.
    with term.memory_watch("GPU memory (Ctrl-C to stop)") as show:
        watch_memory(NvmlSampler(rmm=False), cfg.gpu.monitor_interval_s, show)
