"""The ``mktpred`` console script: the Typer app with every subcommand registered."""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated, Any, NoReturn

import typer

from mktpred import __version__
from mktpred.cli import (  # noqa: F401  (importing registers the commands)
    book,
    collect,
    config_cmd,
    convert,
    csv2parquet,
    demo,
    evaluate,
    features,
    gpu_info,
    predict,
    report,
    retrain,
    serve,
    simulate,
    train,
    validate,
)
from mktpred.cli.base import app
from mktpred.errors import EXIT_INTERRUPTED


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mktpred {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (also MKTPRED_DEBUG=1).")] = False,
) -> None:
    """mktpred: record Coinbase market data 24/7, convert it to a Parquet store, validate it,
    and rebuild order books.  Run `mktpred demo` to see the whole chain offline."""
    if debug:  # one switch for the whole process, read by the error handler
        os.environ["MKTPRED_DEBUG"] = "1"


class _SwallowedInterrupt:
    """Python swallows a Ctrl-C that lands while a garbage-collector callback runs ("Exception ignored
    in ...": a traceback on stderr, and the command goes on).  This hook notes it instead, silently,
    so that :func:`main` exits 130 when the command ends; a second Ctrl-C interrupts as usual."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, unraisable: Any) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            self.seen = True
            return
        sys.__unraisablehook__(unraisable)


def main() -> None:
    """Entry point of the ``mktpred`` console script."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # imports done (see mktpred.cli)
    swallowed = _SwallowedInterrupt()
    sys.unraisablehook = swallowed
    try:
        try:
            app()
        finally:
            # The command is over, its output written and its exit code chosen: a Ctrl-C while the
            # interpreter shuts down must not kill the process by the signal (exit -2, no message).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if swallowed.seen:
                _exit_interrupted(announce=True)
    except KeyboardInterrupt:  # Ctrl-C outside a command body
        _exit_interrupted(announce=True)
    except SystemExit as exc:
        if exc.code == EXIT_INTERRUPTED:
            # Typer turns a Ctrl-C outside the command body (while it builds the CLI or parses the
            # options) into exit 130 without a word; the command body's own handler says it already.
            _exit_interrupted(announce=isinstance(getattr(exc.__context__, "__cause__", None), KeyboardInterrupt))
        raise


def _exit_interrupted(*, announce: bool) -> NoReturn:
    """Exit 130 now, skipping the interpreter's shutdown.

    CPython marks the process as killed by Ctrl-C when a KeyboardInterrupt leaves code that
    ``exec()`` ran from a string (dataclass and namedtuple creation while a module imports), even
    when the interrupt is then caught; after shutdown it re-sends itself SIGINT and dies with -2
    instead of exiting 130.  The command has finished its own clean-up by now."""
    for stream, text in ((sys.stderr, "error: interrupted\n" if announce else ""), (sys.stdout, "")):
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more to say
            pass
    os._exit(EXIT_INTERRUPTED)
