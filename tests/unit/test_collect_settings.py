"""Recorder settings: channels, dealing products over connections, and URLs without secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from mktpred.collect import CollectSettings, redact_url
from mktpred.config import load_config
from mktpred.errors import ConfigError


def _settings(**kw: object) -> CollectSettings:
    base: dict[str, object] = dict(url="ws://127.0.0.1:1", products=("A-USD", "B-USD", "C-USD"),
                                   channels=("level2", "ticker"), raw_dir=Path("raw"))
    base.update(kw)
    return CollectSettings(**base)  # type: ignore[arg-type]


def test_heartbeats_always_added_once() -> None:
    """heartbeats is appended to the configured channels, never twice."""
    assert _settings().subscribed_channels() == ("level2", "ticker", "heartbeats")
    assert _settings(channels=("heartbeats", "ticker")).subscribed_channels() == ("heartbeats", "ticker")


def test_products_are_dealt_over_connections() -> None:
    """Products go round-robin over the connections; never more connections than products."""
    plans = _settings(connections=2).plans()
    assert [p.products for p in plans] == [("A-USD", "C-USD"), ("B-USD",)]
    assert [p.slot for p in plans] == [1, 2]
    assert len(_settings(connections=9).plans()) == 3


def test_from_config_reads_collect_and_paths(tmp_path: Path) -> None:
    """Settings come from [collect], [collect.backoff] and [paths]; buffer_mb becomes bytes."""
    f = tmp_path / "m.toml"
    f.write_text('[collect]\nbuffer_mb = 8\nconnections = 2\n[collect.backoff]\nmax_s = 4.0\n'
                 '[paths]\nraw_dir = "/data/raw"\n')
    s = CollectSettings.from_config(load_config(f, environ={}), duration_s=3.0)
    assert (s.buffer_bytes, s.connections, s.backoff_max_s, s.raw_dir, s.duration_s) == (
        8 * 2**20, 2, 4.0, Path("/data/raw"), 3.0)
    assert s.url == "wss://advanced-trade-ws.coinbase.com" and s.products == ("BTC-USD", "ETH-USD")


@pytest.mark.parametrize(("kw", "message"), [
    ({"channels": ("level3",)}, "unknown channel 'level3'"),
    ({"products": ()}, "non-empty list"),
    ({"url": "https://x"}, "ws:// or wss://"),
    ({"duration_s": -1.0}, "--duration must be > 0"),
])
def test_unusable_settings_are_config_errors(kw: dict[str, object], message: str) -> None:
    """Settings no run could use raise ConfigError (exit 2) naming the problem."""
    with pytest.raises(ConfigError, match=message):
        _settings(**kw).check()


def test_urls_are_shown_without_credentials_or_query() -> None:
    """User, password and query string (where keys could hide) never reach records or logs."""
    assert redact_url("wss://user:s3cret@example.com:443/ws?api_key=abc") == "wss://***@example.com:443/ws?***"
    assert redact_url("wss://advanced-trade-ws.coinbase.com") == "wss://advanced-trade-ws.coinbase.com"
