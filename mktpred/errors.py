"""The mktpred exception tree and its exit codes.

Every error that mktpred raises on purpose derives from :class:`MktpredError`::

    MktpredError                     exit 3 unless a subclass says otherwise
    ├── UsageError                   exit 2  bad option, missing input
    │   ├── ConfigError              exit 2  bad mktpred.toml / MKTPRED_* value
    │   └── SubscriptionRefused      exit 2  the server refused a product/channel (collect)
    ├── DataError                    exit 1  the data has problems
    │   ├── TooManyInvalidLines      exit 1  convert quarantined more than --max-invalid
    │   └── ValidationFailed         exit 1  validate found problems
    ├── RuntimeFailure               exit 3  the run could not do its job
    │   ├── GPUUnavailable           exit 3  --engine gpu asked for, no usable GPU
    │   ├── EngineFailed             exit 3  the engine itself failed on a file (a CUDA error): that segment fails
    │   ├── OutputNotWritable        exit 3  disk full, permission denied, ...
    │   ├── CollectorGaveUp          exit 3  --max-reconnects exhausted
    │   └── NoDataReceived           exit 3  a --duration run received no frame at all
    └── Interrupted                  exit 130

The CLI prints ``error: <message> (<where>)`` on stderr and exits with ``exit_code``.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_DATA = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3
EXIT_INTERRUPTED = 130


class MktpredError(Exception):
    """Root of every error mktpred raises on purpose."""

    exit_code: int = EXIT_RUNTIME

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.message} ({self.where})" if self.where else self.message


class UsageError(MktpredError):
    """A bad option, a missing input or another mistake in how mktpred was called."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """An invalid configuration file, environment variable or option value."""


class SubscriptionRefused(UsageError):
    """The server refused the subscription on the first connection (an unknown product, say)."""


class DataError(MktpredError):
    """The data has problems (reported, not a crash)."""

    exit_code = EXIT_DATA


class TooManyInvalidLines(DataError):
    """More input lines were quarantined than ``--max-invalid`` allows."""


class ValidationFailed(DataError):
    """``validate`` found at least one failing check."""


class RuntimeFailure(MktpredError):
    """The run could not do its job (environment, disk, network, GPU)."""

    exit_code = EXIT_RUNTIME


class GPUUnavailable(RuntimeFailure):
    """The GPU engine was requested but no usable GPU / cuDF stack is present."""


class EngineFailed(RuntimeFailure):
    """The conversion engine itself failed on a file (not the data: a CUDA error, out of memory at
    the smallest range) where no fallback is allowed (``--engine gpu``); that segment fails."""


class OutputNotWritable(RuntimeFailure):
    """An output directory or file cannot be written."""


class CollectorGaveUp(RuntimeFailure):
    """The collector exhausted ``--max-reconnects``."""


class NoDataReceived(RuntimeFailure):
    """A ``collect --duration`` run ended without a single frame from the server."""


class Interrupted(MktpredError):
    """The user interrupted the run (Ctrl-C)."""

    exit_code = EXIT_INTERRUPTED
