"""`mktpred gpu-info`."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from mktpred.cli.base import ConfigOption, JsonOption, command
from mktpred.cli.output import Terminal
from mktpred.config import load_config


def _gib(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}"


@command("gpu-info")
def gpu_info_command(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Show the NVIDIA GPU(s), their memory and the cuDF stack, or why the CPU engine will run.

    Exit 0 whether or not a GPU is usable.  Example: mktpred gpu-info --json"""
    from mktpred.gpu import detect_gpu

    term = Terminal()
    status = detect_gpu(load_config(config), include_stack=True)
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
    stack = Table(title="software stack", header_style="bold")
    for col in ("package", "version", "imports", "note"):
        stack.add_column(col)
    for p in status.stack.values():
        state = "yes" if p.importable else ("not installed" if not p.installed else "NO")
        stack.add_row(*map(Text, (p.name, p.version or "", state, p.error or "")))  # errors are not markup
    parts.append(stack)
    term.panel(Group(*parts), "mktpred gpu-info", to_stdout=True)
