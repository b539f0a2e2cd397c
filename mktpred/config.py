"""The typed mktpred configuration: built-in defaults < file < MKTPRED_* environment < options.

One frozen :class:`Config` object is loaded once per command by :func:`load_config` and passed
down; nothing reads configuration from globals.  Each value remembers where it came from
(:attr:`Config.sources`) so ``mktpred config`` can show it.

File lookup: ``--config PATH``, else ``$MKTPRED_CONFIG``, else ``./mktpred.toml``, else defaults.
Environment variables are named ``MKTPRED_<SECTION>_<KEY>`` (``MKTPRED_COLLECT_FLUSH_INTERVAL_S``;
nested tables join with ``_`` too: ``MKTPRED_COLLECT_BACKOFF_MAX_S``).  Lists are comma separated.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from mktpred.coinbase.protocol import SUBSCRIBABLE_CHANNELS
from mktpred.errors import ConfigError
from mktpred.redact import redact_text

DEFAULT_FILE = "mktpred.toml"
ENV_FILE = "MKTPRED_CONFIG"
ENV_PREFIX = "MKTPRED_"

def _spec(default: Any, expect: str, check: Callable[[Any], bool] | None = None, help: str = "") -> Any:
    """A config field with a default, a human description of valid values and a validator."""
    meta = {"expect": expect, "check": check, "help": help}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _positive(v: Any) -> bool:
    return v > 0 and math.isfinite(v)


def _non_negative(v: Any) -> bool:
    return v >= 0 and math.isfinite(v)


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda v: v in choices


def _port(v: Any) -> bool:
    return 0 <= v <= 65535


def _between(low: float, high: float) -> Callable[[Any], bool]:
    """``low <= v <= high``."""
    return lambda v: math.isfinite(v) and low <= v <= high


#: the duration grammar of ``book.parse_duration`` (kept here too: config must not import numpy)
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|min|h)\s*\Z")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "min": 60_000_000_000, "h": 3_600_000_000_000}
_DAY_NS = 86_400 * 1_000_000_000


def _duration(v: Any) -> bool:
    """A duration from 1 ms to 1 day (``100ms``, ``1s``, ``5m``): finer grids than 1 ms or coarser
    than a day are mistakes (``0ms`` would never advance)."""
    m = _DURATION.match(v)
    return m is not None and 1_000_000 <= float(m.group(1)) * _UNIT_NS[m.group(2)] <= _DAY_NS


def _durations(v: Any) -> bool:
    return bool(v) and all(_duration(x) for x in v)


def _channels(v: Any) -> bool:
    return all(c in SUBSCRIBABLE_CHANNELS for c in v)


@dataclass(frozen=True)
class PathsConfig:
    raw_dir: Path = _spec(Path("data/raw"), "a directory path", help="where collect writes raw JSONL segments")
    parquet_dir: Path = _spec(Path("data/parquet"), "a directory path", help="the Parquet store")
    csv_dir: Path = _spec(Path("data/csv"), "a directory path", help="where --write-csv writes CSV tables")
    models_dir: Path = _spec(Path("data/models"), "a directory path", help="where train writes model directories")
    predictions_dir: Path = _spec(Path("data/predictions"), "a directory path",
                                  help="where serve writes JSONL prediction segments")


@dataclass(frozen=True)
class BackoffConfig:
    initial_s: float = _spec(0.5, "a number > 0", _positive, "first reconnect delay (seconds)")
    max_s: float = _spec(30.0, "a number > 0", _positive, "cap of the exponential backoff (seconds)")
    reset_after_s: float = _spec(30.0, "a number >= 0", _non_negative, "healthy time that resets the backoff")


@dataclass(frozen=True)
class CollectConfig:
    url: str = _spec("wss://advanced-trade-ws.coinbase.com", "a ws:// or wss:// URL",
                     lambda v: v.startswith(("ws://", "wss://")), "WebSocket endpoint")
    products: list[str] = _spec(["BTC-USD", "ETH-USD"], "a non-empty list of product ids", bool, "products")
    channels: list[str] = _spec(["level2", "ticker", "market_trades"], f"a list of channels among {', '.join(SUBSCRIBABLE_CHANNELS)}",
                                _channels, "channels (heartbeats is always added)")
    connections: int = _spec(1, "an integer 1..64", _between(1, 64), "products are spread over N connections")
    flush_interval_s: float = _spec(1.0, "a number > 0", _positive, "flush + fsync period (seconds)")
    stall_timeout_s: float = _spec(10.0, "a number > 0", _positive,
                                   "reconnect after this long without a data frame; also the handshake deadline")
    max_reconnects: int = _spec(0, "an integer >= 0", _non_negative, "0 = reconnect forever")
    buffer_mb: int = _spec(256, "an integer 1..16384", _between(1, 16384), "in-memory buffer between reader and writer")
    max_frame_mb: int = _spec(16, "an integer 1..1024", _between(1, 1024),
                              "larger frames are refused (frame_too_large event, reconnect)")
    status_interval_s: float = _spec(10.0, "a number > 0", _positive, "summary line period when not on a terminal")
    backoff: BackoffConfig = field(default_factory=BackoffConfig)


@dataclass(frozen=True)
class ConvertConfig:
    engine: str = _spec("auto", "one of auto, cpu, gpu", _one_of("auto", "cpu", "gpu"), "conversion engine")
    chunk_rows: int = _spec(1_000_000, "an integer > 0", _positive, "rows per chunk (bounds memory)")
    compression: str = _spec("zstd", "one of zstd, snappy, gzip, lz4, none",
                             _one_of("zstd", "snappy", "gzip", "lz4", "none"), "Parquet compression")
    compression_level: int = _spec(3, "an integer >= 0", _non_negative, "codec level (zstd, gzip)")
    max_invalid_fraction: float = _spec(0.001, "a number between 0 and 1", lambda v: 0 <= v <= 1,
                                        "quarantined lines allowed, as a fraction of input lines")
    threads: int = _spec(0, "an integer >= 0", _non_negative, "engine threads (0 = all cores)")
    scheduler: str = _spec("", "a Dask scheduler address, local:N, or empty", help="Dask distributed")


@dataclass(frozen=True)
class GpuConfig:
    enabled: bool = _spec(True, "true or false", help="false forces the CPU engine (as MKTPRED_FORCE_CPU=1)")
    memory_fraction: float = _spec(0.5, "a number in (0, 1]", lambda v: 0 < v <= 1,
                                   "share of free GPU memory a chunk may use")
    monitor_interval_s: float = _spec(0.25, "a number > 0", _positive, "GPU memory sampling period")


@dataclass(frozen=True)
class SimulateConfig:
    host: str = _spec("127.0.0.1", "a host name or address", help="bind address")
    port: int = _spec(8765, "an integer 0..65535", _port, "bind port (0 = any free port)")
    products: list[str] = _spec(["BTC-USD", "ETH-USD"], "a non-empty list of product ids", bool, "products")
    rate: float = _spec(50.0, "a number >= 0", _non_negative, "market-model messages per second (0 = as fast as possible)")
    seed: int = _spec(1, "an integer", help="random seed (reproducible streams)")
    depth: int = _spec(2000, "an integer > 0", _positive, "price levels per side in the simulated book")
    signal: float = _spec(0.0, "a number >= 0", _non_negative,
                          "planted predictability of the mid (0 = none; see the README's oracle section)")


@dataclass(frozen=True)
class ValidateConfig:
    max_silence_s: float = _spec(5.0, "a number > 0", _positive, "longer silences are reported")


@dataclass(frozen=True)
class BookConfig:
    depth: int = _spec(10, "an integer 1..50", lambda v: 1 <= v <= 50, "levels per side in snapshots")
    interval: str = _spec("1s", "a duration from 1ms to 1 day, such as 100ms or 1s", _duration, "snapshot grid")
    audit_window_ms: int = _spec(500, "an integer >= 0", _non_negative, "audit tolerance window")
    audit_threshold: float = _spec(0.99, "a number between 0 and 1", lambda v: 0 <= v <= 1,
                                   "minimum match rate within the window")


@dataclass(frozen=True)
class FeaturesConfig:
    interval: str = _spec("1s", "a duration from 1ms to 1 day, such as 100ms or 1s", _duration, "feature grid")
    horizons: list[str] = _spec(["1s", "10s", "60s"], "a non-empty list of durations", _durations,
                                "fwd_ret label horizons")
    cross: str = _spec("", "a product id or empty", help="add this product's lagged ret_1 and ofi_1 to the others")


@dataclass(frozen=True)
class TrainConfig:
    horizon: str = _spec("10s", "a duration such as 10s", _duration, "label horizon (one of features.horizons)")
    model: str = _spec("lightgbm", "one of lightgbm, logistic", _one_of("lightgbm", "logistic"), "model family")
    folds: int = _spec(5, "an integer >= 1", lambda v: v >= 1, "walk-forward test folds")
    seed: int = _spec(0, "an integer", help="random seed (same data + seed = same model)")


@dataclass(frozen=True)
class ServeConfig:
    host: str = _spec("127.0.0.1", "a host name or address", help="HTTP bind address (loopback by default)")
    port: int = _spec(8000, "an integer 0..65535", _port, "HTTP port (0 = any free port)")


@dataclass(frozen=True)
class Config:
    paths: PathsConfig = field(default_factory=PathsConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    convert: ConvertConfig = field(default_factory=ConvertConfig)
    gpu: GpuConfig = field(default_factory=GpuConfig)
    simulate: SimulateConfig = field(default_factory=SimulateConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    book: BookConfig = field(default_factory=BookConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    #: where each value came from: "collect.url" -> "default" | "file PATH" | "env NAME" | "option"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: the file that was read, if any
    file: Path | None = field(default=None, compare=False)

    def items(self) -> list[tuple[str, Any, str]]:
        """Every leaf key as ``(dotted.key, value, source)``, in declaration order."""
        out: list[tuple[str, Any, str]] = []
        for key, value in _leaves(self):
            out.append((key, value, self.sources.get(key, "default")))
        return out


_SECTIONS = [f.name for f in dataclasses.fields(Config) if f.name not in ("sources", "file")]


def _leaves(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for f in dataclasses.fields(obj):
        if f.name in ("sources", "file"):
            continue
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.extend(_leaves(value, key + "."))
        else:
            out.append((key, value))
    return out


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f'"{redact_text(value)}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _coerce(tp: Any, value: Any, from_env: bool) -> tuple[bool, Any]:
    """Convert ``value`` to type ``tp``; ``(False, None)`` when it cannot be."""
    origin = get_origin(tp)
    if origin is list:
        (item_tp,) = get_args(tp)
        if from_env and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            return False, None
        items = []
        for v in value:
            ok, c = _coerce(item_tp, v, from_env)
            if not ok:
                return False, None
            items.append(c)
        return True, items
    if tp is bool:
        if from_env and isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True, True
            if low in ("0", "false", "no", "off"):
                return True, False
        return (True, value) if isinstance(value, bool) else (False, None)
    if tp is int:
        if from_env and isinstance(value, str):
            try:
                return True, int(value)
            except ValueError:
                return False, None
        return (True, value) if isinstance(value, int) and not isinstance(value, bool) else (False, None)
    if tp is float:
        if from_env and isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, None
    if tp is str:
        return (True, value) if isinstance(value, str) else (False, None)
    if tp is Path:
        if isinstance(value, Path):
            return True, value
        return (True, Path(value).expanduser()) if isinstance(value, str) and value else (False, None)
    raise TypeError(f"unsupported config type {tp!r}")  # pragma: no cover - programming error


def _checked(cls: type, name: str, value: Any, key: str, origin: str, from_env: bool) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    tp = get_type_hints(cls)[name]
    expect = f.metadata.get("expect", str(tp))
    ok, coerced = _coerce(tp, value, from_env)
    check = f.metadata.get("check")
    if not ok or (check is not None and not check(coerced)):
        raise ConfigError(f"{origin}: {key} must be {expect}, got {_describe(value)}")
    return coerced


def _build(cls: type, layers: list[tuple[str, dict[str, Any], bool]], prefix: str,
           sources: dict[str, str]) -> Any:
    """Build dataclass ``cls`` from value layers (lowest precedence first)."""
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            sub_layers = [(o, d.get(f.name, {}), e) for o, d, e in layers]
            kwargs[f.name] = _build(tp, sub_layers, key + ".", sources)  # type: ignore[arg-type]
            continue
        for origin, data, from_env in layers:
            if f.name in data:
                kwargs[f.name] = _checked(cls, f.name, data[f.name], key, origin, from_env)
                sources[key] = origin
    return cls(**kwargs)


def _check_unknown(cls: type, data: dict[str, Any], prefix: str, origin: str) -> None:
    hints = get_type_hints(cls)
    known = {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name not in ("sources", "file")}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in known:
            where = "section" if not prefix else "key"
            raise ConfigError(f"{origin}: unknown {where} {key!r} (known: {', '.join(known)})")
        if dataclasses.is_dataclass(known[name]):
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: {key} must be a table [{key}], got {_describe(value)}")
            _check_unknown(known[name], value, key + ".", origin)


def _nest(dotted: str, value: Any, into: dict[str, Any] | None = None) -> dict[str, Any]:
    """``"a.b.c", v`` -> ``{"a": {"b": {"c": v}}}`` (merged into ``into`` when given)."""
    root: dict[str, Any] = {} if into is None else into
    node = root
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return root


def _env_layers(environ: Mapping[str, str]) -> list[tuple[str, dict[str, Any], bool]]:
    """One layer per MKTPRED_<PATH> variable, so an error can name the variable."""
    layers: list[tuple[str, dict[str, Any], bool]] = []
    known: dict[str, str] = {}
    for key, _ in _leaves(Config()):
        var = ENV_PREFIX + key.replace(".", "_").upper()
        known[var] = key
        if var in environ:
            layers.append((f"env {var}", _nest(key, environ[var]), True))
    # A misspelt variable must not be ignored silently (an unknown file key is an error too).  Only
    # names under a section prefix are judged: MKTPRED_CONFIG, MKTPRED_DEBUG, ... are not config keys.
    for var in sorted(environ):
        section = next((sec for sec in _SECTIONS if var.startswith(f"{ENV_PREFIX}{sec.upper()}_")), None)
        if section is not None and var not in known:
            names = [k.split(".", 1)[1] for k in known.values() if k.startswith(section + ".")]
            raise ConfigError(f"env {var}: unknown configuration variable "
                              f"(the [{section}] keys are {', '.join(names)}; e.g. "
                              f"{ENV_PREFIX}{section.upper()}_{names[0].replace('.', '_').upper()})")
    return layers


def find_config_file(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The file to read: ``--config``, else ``$MKTPRED_CONFIG``, else ``./mktpred.toml`` if present."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file not found: {explicit}", where="--config")
        return explicit
    env_path = environ.get(ENV_FILE)
    if env_path:
        p = Path(env_path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}", where=ENV_FILE)
        return p
    default = Path(DEFAULT_FILE)
    return default if default.is_file() else None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); "
                          "TOML files must be UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def load_config(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load the configuration once: defaults < file < environment < ``overrides``.

    ``overrides`` maps dotted keys (``"collect.flush_interval_s"``) to values given on the command
    line; ``None`` values are ignored so commands can pass every option unconditionally.
    """
    env = os.environ if environ is None else environ
    path = find_config_file(config_file, env)
    file_data = read_toml(path) if path else {}
    origin_file = f"{path}" if path else ""
    if path:
        _check_unknown(Config, file_data, "", origin_file)

    option_data: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _nest(dotted, value, option_data)
    _check_unknown(Config, option_data, "", "option")

    layers = [(origin_file, file_data, False), *_env_layers(env), ("option", option_data, False)]
    sources: dict[str, str] = {}
    kwargs: dict[str, Any] = {}
    for section in _SECTIONS:
        tp = get_type_hints(Config)[section]
        kwargs[section] = _build(tp, [(o, d.get(section, {}), e) for o, d, e in layers],
                                 section + ".", sources)
    # Show "file PATH" rather than the bare path as the source.
    pretty = {k: (f"file {v}" if v == origin_file and origin_file else v) for k, v in sources.items()}
    return Config(**kwargs, sources=pretty, file=path)


def field_help() -> list[tuple[str, Any, str, str]]:
    """``(dotted.key, default, expected, help)`` for every key: the README's reference table."""
    out: list[tuple[str, Any, str, str]] = []

    def walk(cls: type, prefix: str) -> None:
        hints = get_type_hints(cls)
        default_obj = cls()
        for f in dataclasses.fields(cls):
            if f.name in ("sources", "file"):
                continue
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{prefix}{f.name}.")
                continue
            out.append((f"{prefix}{f.name}", getattr(default_obj, f.name),
                        f.metadata.get("expect", ""), f.metadata.get("help", "")))

    walk(Config, "")
    return out
