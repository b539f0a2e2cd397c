"""The live GPU memory panel, its plain-line twin, and ``gpu-info --watch``, driven by scripted samplers.

No GPU is needed: :class:`tests.unit.gpu_standins.ScriptedSampler` plays back device memory that
rises, peaks and falls; Rich renders to a recording console of fixed width, as on a terminal.
"""

from __future__ import annotations

import io
import threading

import pytest
from rich.console import Console

from mktpred.cli.output import Terminal, gpu_memory_line, gpu_memory_panel, memory_bars
from mktpred.gpu import DeviceMemory, DeviceRef, GPUMemoryMonitor, GpuMemorySample, watch_memory
from mktpred.progress import Progress
from tests.unit.gpu_standins import ScriptedSampler
from tests.unit.test_gpu import wait_for

GIB = 2**30
#: used memory in GiB: rising, a peak of 6, falling back to 2
RISE_PEAK_FALL = [1 * GIB, 3 * GIB, 6 * GIB, 4 * GIB, 2 * GIB]


def render(renderable: object, width: int = 100) -> str:
    """What a terminal of ``width`` columns shows for ``renderable`` (plain text)."""
    console = Console(file=io.StringIO(), width=width, record=True, force_terminal=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def terminal(width: int = 160) -> tuple[Terminal, Console]:
    """A Terminal whose stderr console is a recording terminal of fixed width."""
    err = Console(file=io.StringIO(), width=width, record=True, force_terminal=True, color_system=None)
    return Terminal(err=err, out=err), err


def monitor_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("gpu-monitor-")]


def test_panel_shows_device_used_total_peak_and_rmm_peak() -> None:
    """The panel names the device and shows used / total (bar and figures), the peak so far and RMM's peak."""
    sample = GpuMemorySample(t=1.0, used=4 * GIB, total=80 * GIB, peak=6 * GIB, rmm_peak=5 * GIB + GIB // 2,
                             device_index=0, device_name="Scripted GPU")
    text = render(gpu_memory_panel(sample))
    assert "GPU memory" in text
    assert "GPU 0 (Scripted GPU)" in text
    assert "4.00 / 80.00 GiB (5%)" in text
    assert "peak 6.00 GiB" in " ".join(text.split())
    assert "RMM peak 5.50 GiB (this process)" in " ".join(text.split())
    assert "█" * 1 + "░" * 23 in text  # the bar: 4 of 80 GiB is 1 of 24 cells
    without_rmm = render(gpu_memory_panel(GpuMemorySample(1.0, GIB, 8 * GIB, GIB, None, 1, "x")))
    assert "RMM" not in without_rmm and "1.00 / 8.00 GiB (12%)" in without_rmm
    assert "waiting for the first sample" in render(gpu_memory_panel(None))


def test_plain_line_has_the_panel_figures() -> None:
    """Off a terminal the same figures are one line."""
    sample = GpuMemorySample(t=1.0, used=4 * GIB, total=80 * GIB, peak=6 * GIB, rmm_peak=3 * GIB,
                             device_index=2, device_name="Scripted GPU")
    assert gpu_memory_line(sample) == ("GPU memory: GPU 2 (Scripted GPU) 4.00 / 80.00 GiB used (5%), "
                                       "peak 6.00 GiB, RMM peak 3.00 GiB")


def test_monitor_follows_a_rising_peaking_falling_script() -> None:
    """Live samples carry the peak so far; the report has before, peak, after, RMM's peak and a timeline."""
    sampler = ScriptedSampler(RISE_PEAK_FALL, 80 * GIB, rmm=[None, GIB, 5 * GIB, 5 * GIB, 5 * GIB])
    seen: list[GpuMemorySample] = []
    with GPUMemoryMonitor("convert", interval_s=0.005, sampler=sampler, on_sample=seen.append) as mon:
        assert mon.active and monitor_threads() == ["gpu-monitor-convert"]
        wait_for(lambda: sampler.exhausted)
    assert monitor_threads() == []
    assert [s.used for s in seen[:5]] == RISE_PEAK_FALL
    assert [s.peak for s in seen[:5]] == [1 * GIB, 3 * GIB, 6 * GIB, 6 * GIB, 6 * GIB]
    assert [s.rmm_peak for s in seen[:5]] == [None, GIB, 5 * GIB, 5 * GIB, 5 * GIB]
    r = mon.report
    assert (r.before, r.peak, r.after, r.total, r.rmm_peak) == (GIB, 6 * GIB, 2 * GIB, 80 * GIB, 5 * GIB)
    assert (r.device_index, r.device_name, r.samples) == (0, "Scripted GPU", len(seen))
    assert [used for _, used in r.timeline[:5]] == RISE_PEAK_FALL
    assert r.to_dict()["timeline"][2][1] == 6.0
    assert (sampler.opened, sampler.closed) == (1, 1)


def test_live_panel_beside_the_progress_bar() -> None:
    """On a terminal the progress display carries the GPU panel; its last frame shows the script's end and peak."""
    term, console = terminal()
    sampler = ScriptedSampler(RISE_PEAK_FALL, 80 * GIB, rmm=[GIB] * 5)
    with GPUMemoryMonitor("convert", interval_s=0.005, sampler=sampler) as mon, \
            term.progress("convert", gpu=mon) as progress:
        progress(Progress("convert", 0, 2, 0, 2000, 0))
        wait_for(lambda: sampler.exhausted and mon.latest is not None and mon.latest.used == 2 * GIB)
        progress(Progress("convert", 1, 2, 1000, 2000, 500))
        progress(Progress("convert", 2, 2, 2000, 2000, 900))
    text = console.export_text()
    last = text[text.rindex("convert 2/2 files"):]
    flat = " ".join(last.split())
    assert "GPU memory" in last and "GPU 0 (Scripted GPU)" in last
    assert "2.00 / 80.00 GiB (2%)" in flat and "peak 6.00 GiB" in flat and "RMM peak 1.00 GiB" in flat
    # beside, not below: the bar's line and the panel's top border share a line
    assert any("convert 2/2 files" in line and "GPU memory" in line for line in text.splitlines())


def test_no_gpu_no_panel_no_thread() -> None:
    """Where the sampler finds no device: no thread, no panel on a terminal, no GPU line off one."""
    sampler = ScriptedSampler([GIB], 80 * GIB, no_device="no GPU device")
    term, console = terminal()
    with GPUMemoryMonitor("convert", interval_s=0.005, sampler=sampler) as mon, \
            term.progress("convert", gpu=mon) as progress:
        assert not mon.active and monitor_threads() == []
        progress(Progress("convert", 1, 1, 10, 10, 5))
    assert sampler.reads == 0 and mon.report.available is False and mon.report.reason == "no GPU device"
    text = console.export_text()
    assert "GPU" not in text and "convert 1/1 files" in text
    disabled = ScriptedSampler([GIB], 80 * GIB)
    with GPUMemoryMonitor("convert", sampler=disabled, enabled=False) as mon:
        assert not mon.active
    assert (disabled.opened, disabled.reads) == (0, 0)


def test_plain_progress_is_followed_by_the_gpu_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Off a terminal every progress line is followed by the GPU memory line with the same figures."""
    term = Terminal(err=Console(file=io.StringIO(), force_terminal=False))
    sampler = ScriptedSampler([3 * GIB], 80 * GIB)
    with GPUMemoryMonitor("convert", interval_s=0.005, sampler=sampler) as mon, \
            term.progress("convert", gpu=mon) as progress:
        progress(Progress("convert", 1, 1, 2**20, 2**20, 7))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("convert: 1/1 files, 1.0 MiB, 7 rows")
    assert lines[1] == "GPU memory: GPU 0 (Scripted GPU) 3.00 / 80.00 GiB used (4%), peak 3.00 GiB"


def test_watch_refreshes_every_device_until_told_to_stop() -> None:
    """watch_memory reads every device at each refresh, sleeps the interval between, and closes the sampler."""
    sampler = ScriptedSampler(RISE_PEAK_FALL, 80 * GIB, devices=[DeviceRef(0, "A"), DeviceRef(1, "B")])
    frames: list[list[DeviceMemory]] = []
    sleeps: list[float] = []
    assert watch_memory(sampler, 0.5, frames.append, refreshes=3, sleep=sleeps.append) == 3
    assert sleeps == [0.5, 0.5]
    assert [[(d.index, d.name, d.used // GIB) for d in f] for f in frames] == [
        [(0, "A", 1), (1, "B", 2)], [(0, "A", 3), (1, "B", 6)], [(0, "A", 6), (1, "B", 12)]]
    assert sampler.closed == 1
    text = render(memory_bars(frames[-1]))
    assert "6.00 / 80.00 (8%)" in text and "12.00 / 80.00 (15%)" in text


def test_watch_stops_on_ctrl_c_and_without_a_device() -> None:
    """Ctrl-C reaches the caller (the CLI makes it exit 130) with the sampler closed; no device: nothing runs."""
    sampler = ScriptedSampler(RISE_PEAK_FALL, 80 * GIB, interrupt_after=2)
    frames: list[list[DeviceMemory]] = []
    with pytest.raises(KeyboardInterrupt):
        watch_memory(sampler, 0.01, frames.append, sleep=lambda s: None)
    assert len(frames) == 2 and sampler.closed == 1
    none = ScriptedSampler([GIB], GIB, no_device="no GPU device")
    assert watch_memory(none, 0.01, frames.append) == 0 and none.reads == 0


def test_memory_watch_on_a_terminal_draws_bars() -> None:
    """gpu-info --watch on a terminal: a live panel with one memory bar per device."""
    term, console = terminal(120)
    with term.memory_watch("GPU memory (Ctrl-C to stop)") as show:
        show([DeviceMemory(0, "A", 20 * GIB, 80 * GIB)])
        show([DeviceMemory(0, "A", 40 * GIB, 80 * GIB)])
    text = console.export_text()
    assert "GPU memory (Ctrl-C to stop)" in text
    assert "40.00 / 80.00 (50%)" in text[text.rindex("GPU memory (Ctrl-C"):]
