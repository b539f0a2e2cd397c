"""The typed configuration loader: precedence and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from mktpred.config import Config, load_config
from mktpred.errors import ConfigError


def test_defaults_without_any_file() -> None:
    """No file, no environment: the built-in defaults, all marked as such."""
    cfg = load_config(environ={})
    assert cfg == Config()
    assert cfg.file is None
    assert all(src == "default" for _, _, src in cfg.items())


def test_precedence_option_over_env_over_file_over_default(tmp_path: Path) -> None:
    """option > MKTPRED_* > file > default, each level checked."""
    f = tmp_path / "m.toml"
    f.write_text("[collect]\nflush_interval_s = 2.0\nstall_timeout_s = 20\nmax_reconnects = 4\n")
    env = {"MKTPRED_COLLECT_FLUSH_INTERVAL_S": "3", "MKTPRED_COLLECT_STALL_TIMEOUT_S": "30"}
    cfg = load_config(f, {"collect.flush_interval_s": 4.0, "collect.buffer_mb": None}, environ=env)
    assert cfg.collect.flush_interval_s == 4.0  # option
    assert cfg.collect.stall_timeout_s == 30.0  # env
    assert cfg.collect.max_reconnects == 4  # file
    assert cfg.collect.buffer_mb == 256  # default (None option ignored)
    assert cfg.sources["collect.flush_interval_s"] == "option"
    assert cfg.sources["collect.stall_timeout_s"] == "env MKTPRED_COLLECT_STALL_TIMEOUT_S"
    assert cfg.sources["collect.max_reconnects"] == f"file {f}"


def test_file_lookup_env_then_cwd(tmp_path: Path, isolated_environment: Path) -> None:
    """MKTPRED_CONFIG is used when --config is absent; ./mktpred.toml after that."""
    env_file = tmp_path / "env.toml"
    env_file.write_text("[convert]\nengine = 'cpu'\n")
    (isolated_environment / "mktpred.toml").write_text("[convert]\nengine = 'gpu'\n")
    assert load_config(environ={"MKTPRED_CONFIG": str(env_file)}).convert.engine == "cpu"
    assert load_config(environ={}).convert.engine == "gpu"


def test_nested_table_and_lists(tmp_path: Path) -> None:
    """Nested [collect.backoff] keys and comma-separated list variables parse."""
    f = tmp_path / "m.toml"
    f.write_text("[collect.backoff]\nmax_s = 60\n")
    cfg = load_config(f, environ={"MKTPRED_COLLECT_PRODUCTS": "SOL-USD, BTC-USD"})
    assert cfg.collect.backoff.max_s == 60.0
    assert cfg.collect.products == ["SOL-USD", "BTC-USD"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[collect]\nconnections = 0\n", "collect.connections must be an integer 1..64, got 0"),
        ("[collect]\nconnections = 1.5\n", "collect.connections must be an integer 1..64, got 1.5"),
        ("[gpu]\nenabled = 'yes'\n", 'gpu.enabled must be true or false, got "yes"'),
        ("[collect.backoff]\nmax_s = -1\n", "collect.backoff.max_s must be a number > 0, got -1"),
        ("[collect]\nbackoff = 3\n", "collect.backoff must be a table"),
        ("[collect]\nurl = 'http://x'\n", 'collect.url must be a ws:// or wss:// URL, got "http://x"'),
    ],
)
def test_invalid_values_name_file_and_key(tmp_path: Path, content: str, fragment: str) -> None:
    """Out-of-range and wrong-typed values raise ConfigError naming the file and the key."""
    f = tmp_path / "m.toml"
    f.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(f, environ={})
    assert str(info.value) == f"{f}: {fragment}" or str(info.value).startswith(f"{f}: {fragment}")
    assert info.value.exit_code == 2


def test_example_file_in_repo_equals_defaults() -> None:
    """The repository's mktpred.toml lists every key at its default value."""
    from tests.conftest import REPO_ROOT

    cfg = load_config(REPO_ROOT / "mktpred.toml", environ={})
    assert cfg == Config()
    assert all(src.startswith("file ") for _, _, src in cfg.items())


def test_config_is_frozen() -> None:
    """The config object cannot be mutated after loading."""
    cfg = load_config(environ={})
    with pytest.raises(AttributeError):
        cfg.collect.url = "ws://x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[collect]\nconnections = 65\n", "collect.connections must be an integer 1..64, got 65"),
        ("[collect]\nbuffer_mb = 0\n", "collect.buffer_mb must be an integer 1..16384, got 0"),
        ("[collect]\nbuffer_mb = 16385\n", "collect.buffer_mb must be an integer 1..16384, got 16385"),
        ("[collect]\nmax_frame_mb = 0\n", "collect.max_frame_mb must be an integer 1..1024, got 0"),
        ("[collect]\nflush_interval_s = nan\n", "collect.flush_interval_s must be a number > 0, got nan"),
        ("[collect]\nstall_timeout_s = inf\n", "collect.stall_timeout_s must be a number > 0, got inf"),
        ('[book]\ninterval = "0ms"\n', 'book.interval must be a duration from 1ms to 1 day, such as 100ms or 1s, '
                                       'got "0ms"'),
        ('[book]\ninterval = "2h "\n', None),
        ('[book]\ninterval = "25h"\n', 'book.interval must be a duration from 1ms to 1 day'),
        ('[book]\ninterval = "fast"\n', 'book.interval must be a duration from 1ms to 1 day'),
        ('[features]\ninterval = "500us"\n', 'features.interval must be a duration from 1ms to 1 day'),
        ('[features]\nhorizons = ["10s", "0s"]\n', "features.horizons must be a non-empty list of durations, "
                                                  "got ['10s', '0s']"),
        ('[train]\nhorizon = "soon"\n', 'train.horizon must be a duration such as 10s, got "soon"'),
        ('[collect]\nchannels = ["level2", "orderbook"]\n',
         "collect.channels must be a list of channels among level2, ticker, ticker_batch, market_trades, "
         "heartbeats, candles, status, got ['level2', 'orderbook']"),
    ],
)
def test_bounds_and_formats_are_checked_when_the_file_loads(tmp_path: Path, content: str,
                                                            fragment: str | None) -> None:
    """Counts, sizes, intervals and channel names are bounded and checked at load, naming file and key."""
    f = tmp_path / "m.toml"
    f.write_text(content)
    if fragment is None:
        load_config(f, environ={})  # a valid edge value loads
        return
    with pytest.raises(ConfigError) as err:
        load_config(f, environ={})
    assert str(err.value).startswith(f"{f}: {fragment}")


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a ConfigError naming the file and the first bad byte."""
    f = tmp_path / "m.toml"
    f.write_bytes(b'[collect]\nurl = "ws://caf\xe9"\n')
    with pytest.raises(ConfigError) as err:
        load_config(f, environ={})
    assert str(err.value) == f"{f}: not UTF-8 text (byte 25: b'\\xe9'); TOML files must be UTF-8"


def test_unknown_variable_under_a_section_prefix_is_an_error() -> None:
    """MKTPRED_COLLECT_FOO is an error naming the variable (an unknown file key is one too); variables
    outside the section prefixes (MKTPRED_CONFIG, MKTPRED_DEBUG, MKTPRED_FORCE_CPU) are not config keys."""
    with pytest.raises(ConfigError) as err:
        load_config(environ={"MKTPRED_COLLECT_FOO": "1"})
    assert str(err.value).startswith("env MKTPRED_COLLECT_FOO: unknown configuration variable (the [collect] "
                                     "keys are url, products, channels, connections, ")
    with pytest.raises(ConfigError, match="env MKTPRED_COLLECT_BACKOFF_MAXS: unknown"):
        load_config(environ={"MKTPRED_COLLECT_BACKOFF_MAXS": "1"})
    cfg = load_config(environ={"MKTPRED_DEBUG": "1", "MKTPRED_FORCE_CPU": "1", "MKTPRED_GPU_ENABLED": "0",
                               "MKTPRED_COLLECT_BACKOFF_MAX_S": "5"})
    assert cfg.gpu.enabled is False and cfg.collect.backoff.max_s == 5.0


def test_credentials_in_a_bad_url_are_masked_in_the_error() -> None:
    """An invalid value that is a URL with credentials is shown masked in the error message."""
    with pytest.raises(ConfigError) as err:
        load_config(environ={"MKTPRED_COLLECT_URL": "https://bob:hunter2@example.com/ws?key=s3cret"})
    assert str(err.value) == ('env MKTPRED_COLLECT_URL: collect.url must be a ws:// or wss:// URL, '
                              'got "https://***@example.com/ws?***"')
