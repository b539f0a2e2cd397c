"""The Typer app object, shared option types and the error-to-exit-code mapping.

Command modules import :data:`app` and register with :func:`command`; ``mktpred.cli.app`` imports
them all.  Domain errors are not caught in commands: :func:`command` maps the whole
:class:`~mktpred.errors.MktpredError` tree to ``error: ...`` on stderr and the documented exit code.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from mktpred.cli.output import Terminal
from mktpred.errors import EXIT_INTERRUPTED, MktpredError

app = typer.Typer(
    name="mktpred",
    help="Record Coinbase market data 24/7, convert it to Parquet, validate it, rebuild order books.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Configuration file (default: $MKTPRED_CONFIG or ./mktpred.toml).",
                 show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON summary on stdout.")]

F = TypeVar("F", bound=Callable[..., Any])


def debug_enabled() -> bool:
    """``MKTPRED_DEBUG=1`` in the environment (``--debug`` sets it for this process)."""
    return os.environ.get("MKTPRED_DEBUG", "") not in ("", "0")


def command(name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """Register a subcommand whose domain errors become one line on stderr and an exit code."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            try:
                return fn(*args, **kw)
            except MktpredError as exc:
                if debug_enabled():
                    raise
                Terminal().error(str(exc))
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:
                if debug_enabled():
                    raise
                Terminal().error("interrupted")
                raise typer.Exit(EXIT_INTERRUPTED) from None

        app.command(name, **kwargs)(wrapper)
        return fn

    return decorate


def split_csv(value: str | None) -> list[str] | None:
    """A comma-separated option as a list (``None`` when the option was not given)."""
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]
