"""The command-line layer: Typer commands over the core library.  Only this package prints."""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType


def _exit_interrupted(signum: int, frame: FrameType | None) -> None:
    # Nothing is open, written or running yet, so end here: an exception raised from inside the
    # import machinery is not guaranteed to reach the top as itself.
    os.write(2, b"error: interrupted\n")  # unbuffered: sys.stderr may itself be mid-import
    os._exit(130)  # errors.EXIT_INTERRUPTED (not imported: this runs before anything else)


def _running_as_console_script() -> bool:
    """``mktpred ...`` or ``python -m mktpred ...`` (not a test or a library user importing the CLI)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return (os.path.basename(getattr(main, "__file__", None) or "") == "mktpred"
            or getattr(spec, "name", "") == "mktpred.__main__")


# Ctrl-C while the console script is still importing the CLI (typer, rich and every command, about
# 0.2 s) must exit 130 with one line like Ctrl-C anywhere else, not print an import traceback;
# mktpred.cli.app.main hands SIGINT back to Python's handler once the imports are done.
if _running_as_console_script() and threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, _exit_interrupted)
