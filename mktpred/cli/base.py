"""The Typer app object, shared option types and the error-to-exit-code mapping.

Command modules import :data:`app` and register with :func:`command`; ``mktpred.cli.app`` imports
them all.  Domain errors are not caught in commands: :func:`command` maps the whole
:class:`~mktpred.errors.MktpredError` tree to ``error: ...`` on stderr and the documented exit code.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from mktpred.cli.output import Terminal
from mktpred.errors import EXIT_INTERRUPTED, MktpredError

#: (command, option name) -> the option's help, computed when the help or the command is shown
#: (``simulate --fault`` lists the fault kinds without importing the simulator for ``mktpred --help``)
_LAZY_HELP: dict[tuple[str, str], Callable[[], str]] = {}


def lazy_help(command_name: str, option: str, text: Callable[[], str]) -> None:
    """Use ``text()`` as the help of ``option`` (its Python name) of ``command_name``."""
    _LAZY_HELP[(command_name, option)] = text


def _config_defaults() -> dict[str, Any]:
    from mktpred.config import field_help

    return {key: default for key, default, _expect, _help in field_help()}


def _config_key(command_name: str, option: str, defaults: dict[str, Any]) -> str | None:
    """The configuration key an option overrides, by the naming rule the commands follow:
    ``<command>.<option>`` (``--max-silence`` -> ``validate.max_silence_s``), else ``paths.<option>``."""
    section = command_name.replace("-", "_")
    for key in (f"{section}.{option}", f"{section}.{option}_s", f"paths.{option}"):
        if key in defaults:
            return key
    return None


def _show_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value) if value != "" else '""'


def _tidy_help(command_name: str, params: list[Any]) -> None:
    """Help that reads well: a bool flag shows as ``--json``, not ``--json <bool>``; an option whose
    default comes from the configuration shows that default and its key."""
    defaults: dict[str, Any] | None = None
    for param in params:
        if not isinstance(param, TyperOption) or getattr(param, "_mktpred_tidy", False):
            continue
        param._mktpred_tidy = True  # type: ignore[attr-defined]
        if param.is_flag:
            param.metavar = ""
        lazy = _LAZY_HELP.get((command_name, param.name or ""))
        if lazy is not None:
            param.help = lazy()
        if param.is_flag or param.default is not None or "default" in (param.help or "").lower():
            continue
        if defaults is None:
            defaults = _config_defaults()
        key = _config_key(command_name, param.name or "", defaults)
        if key is not None:
            shown = f"{_show_value(defaults[key])} (config {key})"
            # Typer renders a string ``show_default`` in parentheses; the default it would show is
            # what this method returns, so the help reads ``[default: 127.0.0.1 (config simulate.host)]``
            # while the parsed default stays None (the configuration fills it in).
            param.show_default = True
            param._extract_default_help_str = lambda *, ctx, shown=shown: shown  # type: ignore[method-assign,misc]


class MktpredCommand(TyperCommand):
    """A subcommand whose help shows flags as flags and the configuration's defaults."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _tidy_help(self.name or "", params)
        return params


class MktpredGroup(TyperGroup):
    """The ``mktpred`` group, its own options tidied like the subcommands'."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _tidy_help("", params)
        return params


app = typer.Typer(
    name="mktpred",
    cls=MktpredGroup,
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

        if "short_help" not in kwargs and fn.__doc__:
            # the commands list shows the first paragraph as one line, not with the docstring's breaks
            kwargs["short_help"] = " ".join(inspect.cleandoc(fn.__doc__).split("\n\n")[0].split())
        app.command(name, cls=MktpredCommand, **kwargs)(wrapper)
        return fn

    return decorate


def split_csv(value: str | None) -> list[str] | None:
    """A comma-separated option as a list (``None`` when the option was not given)."""
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]
