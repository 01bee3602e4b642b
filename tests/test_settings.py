"""Unit tests for config.settings (environment variables, flags, validation, demo secret)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from config.settings import SETTINGS_HELP, Settings, SettingsError, load_settings

KEY = "k" * 16


def env(tmp_path: Path, **values: str) -> dict[str, str]:
    """An environment with DATA_DIR in tmp_path (so no demo secret lands in the repo)."""
    out = {"DATA_DIR": str(tmp_path)}
    out.update(values)
    return out


def test_defaults():
    """With only SECRET_KEY set, every other setting has its documented default."""
    s = load_settings(environ={"SECRET_KEY": KEY})
    assert s == Settings(secret_key=KEY)
    assert (s.host, s.port, s.database_url, s.redis_url) == (
        "127.0.0.1",
        8888,
        "sqlite:///var/folio.db",
        "",
    )
    assert (s.batch_window_ms, s.max_connections_per_user) == (250, 5)
    assert (s.heartbeat_interval_s, s.heartbeat_timeout_s) == (15.0, 30.0)
    assert (s.enable_realtime_portfolio, s.alpaca_paper, s.demo) == (True, True, True)
    assert (s.session_ttl_s, s.max_message_bytes, s.allowed_origins) == (43200, 65536, ())
    assert (s.sync_interval_s, s.stale_after_s, s.data_dir) == (60.0, 30.0, "var")
    assert (s.simulator_port, s.simulator_month_s, s.simulator_auto_trade) == (0, 20.0, True)


def test_every_setting_has_help():
    assert set(SETTINGS_HELP) == {
        f.name for f in Settings.__dataclass_fields__.values() if f.name != "demo"
    }


def test_values_parsed_from_environment(tmp_path):
    s = load_settings(
        environ=env(
            tmp_path,
            SECRET_KEY=KEY,
            HOST="0.0.0.0",
            PORT=" 9000 ",
            DATABASE_URL="postgresql://u@db/folio/",
            REDIS_URL="redis://cache:6379/0",
            ENABLE_REALTIME_PORTFOLIO="off",
            BATCH_WINDOW_MS="0",
            MAX_CONNECTIONS_PER_USER="1",
            HEARTBEAT_INTERVAL_S="0.5",
            HEARTBEAT_TIMEOUT_S="1.5",
            ALLOWED_ORIGINS=" https://a.example/ , http://b.example:8080,,",
            ALPACA_PAPER="No",
            SIMULATOR_AUTO_TRADE="FALSE",
            ALPACA_TRADING_URL="https://paper-api.alpaca.markets/",
            ALPACA_STREAM_URL="wss://paper-api.alpaca.markets/stream",
            INTERNAL_TOKEN="  tok  ",
        )
    )
    assert (s.host, s.port) == ("0.0.0.0", 9000)
    assert s.database_url == "postgresql://u@db/folio"  # trailing slash stripped
    assert s.redis_url == "redis://cache:6379/0"
    assert s.enable_realtime_portfolio is False
    assert (s.batch_window_ms, s.max_connections_per_user) == (0, 1)
    assert (s.heartbeat_interval_s, s.heartbeat_timeout_s) == (0.5, 1.5)
    assert s.allowed_origins == ("https://a.example", "http://b.example:8080")
    assert (s.alpaca_paper, s.simulator_auto_trade) == (False, False)
    assert s.alpaca_trading_url == "https://paper-api.alpaca.markets"
    assert s.alpaca_stream_url == "wss://paper-api.alpaca.markets/stream"
    assert s.internal_token == "tok"
    assert s.data_dir == str(tmp_path)


@pytest.mark.parametrize("raw", ["1", "true", "YES", " on "])
def test_bool_true_spellings(raw):
    assert load_settings(environ={"SECRET_KEY": KEY, "ALPACA_PAPER": raw}).alpaca_paper is True


def test_database_url_follows_data_dir(tmp_path):
    s = load_settings(environ=env(tmp_path, SECRET_KEY=KEY))
    assert s.database_url == f"sqlite:///{tmp_path}/folio.db"


def test_empty_redis_url_means_in_process():
    assert load_settings(environ={"SECRET_KEY": KEY, "REDIS_URL": "  "}).redis_url == ""


def test_blank_host_and_data_dir_fall_back_to_defaults():
    s = load_settings(environ={"SECRET_KEY": KEY, "HOST": " ", "DATA_DIR": ""})
    assert (s.host, s.data_dir) == ("127.0.0.1", "var")


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("PORT", "http", "PORT must be an integer, got 'http'"),
        ("PORT", "65536", "PORT must be at least 0 and at most 65535, got 65536"),
        ("PORT", "-1", "PORT must be at least 0 and at most 65535, got -1"),
        (
            "BATCH_WINDOW_MS",
            "5001",
            "BATCH_WINDOW_MS must be at least 0 and at most 5000, got 5001",
        ),
        ("BATCH_WINDOW_MS", "2.5", "BATCH_WINDOW_MS must be an integer, got '2.5'"),
        (
            "MAX_CONNECTIONS_PER_USER",
            "0",
            "MAX_CONNECTIONS_PER_USER must be at least 1 and at most 1000, got 0",
        ),
        ("HEARTBEAT_INTERVAL_S", "abc", "HEARTBEAT_INTERVAL_S must be a number, got 'abc'"),
        ("HEARTBEAT_INTERVAL_S", "nan", "HEARTBEAT_INTERVAL_S must be at least 0.05, got 'nan'"),
        ("HEARTBEAT_TIMEOUT_S", "0", "HEARTBEAT_TIMEOUT_S must be at least 0.1, got '0'"),
        ("SESSION_TTL_S", "59", "SESSION_TTL_S must be at least 60, got 59"),
        ("SYNC_INTERVAL_S", "0.01", "SYNC_INTERVAL_S must be at least 0.1, got '0.01'"),
        ("STALE_AFTER_S", "-5", "STALE_AFTER_S must be at least 0.1, got '-5'"),
        ("MAX_MESSAGE_BYTES", "100", "MAX_MESSAGE_BYTES must be at least 256, got 100"),
        ("EVENT_LOOP", "tokio", "EVENT_LOOP must be one of asyncio, uvloop, got 'tokio'"),
        (
            "SIMULATOR_PORT",
            "70000",
            "SIMULATOR_PORT must be at least 0 and at most 65535, got 70000",
        ),
        ("SIMULATOR_MONTH_S", "0", "SIMULATOR_MONTH_S must be at least 0.1, got '0'"),
        (
            "ENABLE_REALTIME_PORTFOLIO",
            "maybe",
            "ENABLE_REALTIME_PORTFOLIO must be true or false, got 'maybe'",
        ),
        ("ALPACA_PAPER", "", "ALPACA_PAPER must be true or false, got ''"),
        ("SIMULATOR_AUTO_TRADE", "2", "SIMULATOR_AUTO_TRADE must be true or false, got '2'"),
        (
            "DATABASE_URL",
            "mysql://x/y",
            "DATABASE_URL must start with one of sqlite, postgresql, postgres://, got 'mysql://x/y'",
        ),
        (
            "REDIS_URL",
            "localhost:6379",
            "REDIS_URL must start with one of redis, rediss, unix://, got 'localhost:6379'",
        ),
        (
            "ALPACA_TRADING_URL",
            "ws://x",
            "ALPACA_TRADING_URL must start with one of http, https://, got 'ws://x'",
        ),
        (
            "ALPACA_STREAM_URL",
            "https://x",
            "ALPACA_STREAM_URL must start with one of ws, wss://, got 'https://x'",
        ),
        (
            "ALPACA_DATA_URL",
            "x",
            "ALPACA_DATA_URL must start with one of ws, wss://, got 'x'",
        ),
        (
            "ALLOWED_ORIGINS",
            "https://ok.example,evil.example",
            "ALLOWED_ORIGINS: origin 'evil.example' must start with http:// or https://",
        ),
    ],
)
def test_bad_value_names_the_variable(tmp_path, var, value, message):
    with pytest.raises(SettingsError) as info:
        load_settings(environ=env(tmp_path, SECRET_KEY=KEY, **{var: value}))
    assert str(info.value) == message


def test_flag_overrides_environment(tmp_path):
    s = load_settings(
        environ=env(tmp_path, SECRET_KEY=KEY, PORT="1234", BATCH_WINDOW_MS="10"),
        argv=["--port", "9000", "--batch-window-ms=0", "--allowed-origins", "https://x.example"],
    )
    assert (s.port, s.batch_window_ms, s.allowed_origins) == (9000, 0, ("https://x.example",))


def test_flag_value_error_names_the_variable(tmp_path):
    with pytest.raises(SettingsError, match=r"^PORT must be an integer, got 'abc'$"):
        load_settings(environ=env(tmp_path, SECRET_KEY=KEY, PORT="1"), argv=["--port", "abc"])


def test_unknown_flag(tmp_path):
    with pytest.raises(SettingsError, match=r"^unknown option\(s\): --nope extra$"):
        load_settings(environ=env(tmp_path, SECRET_KEY=KEY), argv=["--nope", "extra"])


@pytest.mark.parametrize("argv", [["--port"], ["--alpaca", "x"]], ids=["no-value", "ambiguous"])
def test_malformed_flags_raise_settings_error(tmp_path, argv):
    with pytest.raises(SettingsError):
        load_settings(environ=env(tmp_path, SECRET_KEY=KEY), argv=argv)


def test_environment_not_read_when_environ_given(monkeypatch, tmp_path):
    monkeypatch.setenv("PORT", "1111")
    assert load_settings(environ=env(tmp_path, SECRET_KEY=KEY)).port == 8888


def test_os_environ_is_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("PORT", "1111")
    monkeypatch.setenv("SECRET_KEY", KEY)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    assert load_settings().port == 1111


# -- Alpaca keys, SECRET_KEY, demo mode --------------------------------------------------------


def test_alpaca_key_requires_secret_key(tmp_path):
    with pytest.raises(SettingsError) as info:
        load_settings(environ=env(tmp_path, ALPACA_API_KEY="AK", ALPACA_SECRET_KEY="SK"))
    assert str(info.value) == "SECRET_KEY is required outside demo mode (ALPACA_API_KEY is set)"
    assert not (tmp_path / "secret_key").exists()


def test_alpaca_keys_with_secret_key_leave_demo_mode(tmp_path):
    s = load_settings(
        environ=env(tmp_path, ALPACA_API_KEY=" AK ", ALPACA_SECRET_KEY="SK", SECRET_KEY=KEY)
    )
    assert (s.demo, s.alpaca_api_key, s.alpaca_secret_key, s.secret_key) == (
        False,
        "AK",
        "SK",
        KEY,
    )


@pytest.mark.parametrize(
    "keys", [{"ALPACA_API_KEY": "AK"}, {"ALPACA_SECRET_KEY": "SK"}], ids=["key-only", "secret-only"]
)
def test_alpaca_keys_must_come_together(tmp_path, keys):
    with pytest.raises(SettingsError) as info:
        load_settings(environ=env(tmp_path, SECRET_KEY=KEY, **keys))
    assert str(info.value) == "ALPACA_API_KEY and ALPACA_SECRET_KEY must be set together"


def test_short_secret_key_rejected(tmp_path):
    with pytest.raises(SettingsError, match=r"^SECRET_KEY must be at least 16 characters$"):
        load_settings(environ=env(tmp_path, SECRET_KEY="k" * 15))


def test_demo_secret_generated_persisted_0600_and_reused(tmp_path):
    data_dir = tmp_path / "nested" / "data"
    first = load_settings(environ={"DATA_DIR": str(data_dir)})
    path = data_dir / "secret_key"
    assert first.demo is True
    assert len(first.secret_key) == 43  # token_urlsafe(32)
    assert path.read_text() == first.secret_key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = load_settings(environ={"DATA_DIR": str(data_dir)})
    assert second.secret_key == first.secret_key


def test_demo_secret_read_from_existing_file_stripped(tmp_path):
    (tmp_path / "secret_key").write_text("an-operator-provided-secret\n")
    assert load_settings(environ=env(tmp_path)).secret_key == "an-operator-provided-secret"


def test_explicit_secret_key_wins_over_demo_file(tmp_path):
    s = load_settings(environ=env(tmp_path, SECRET_KEY=KEY))
    assert s.secret_key == KEY
    assert not (tmp_path / "secret_key").exists()


# -- heartbeat ---------------------------------------------------------------------------------


def test_heartbeat_timeout_below_interval_rejected(tmp_path):
    with pytest.raises(SettingsError) as info:
        load_settings(
            environ=env(
                tmp_path, SECRET_KEY=KEY, HEARTBEAT_INTERVAL_S="20", HEARTBEAT_TIMEOUT_S="10"
            )
        )
    assert str(info.value) == (
        "HEARTBEAT_TIMEOUT_S must be at least HEARTBEAT_INTERVAL_S (10.0 < 20.0)"
    )


def test_heartbeat_timeout_below_default_interval_rejected(tmp_path):
    with pytest.raises(SettingsError, match="HEARTBEAT_TIMEOUT_S must be at least"):
        load_settings(environ=env(tmp_path, SECRET_KEY=KEY, HEARTBEAT_TIMEOUT_S="14"))


def test_heartbeat_timeout_equal_to_interval_accepted(tmp_path):
    s = load_settings(
        environ=env(tmp_path, SECRET_KEY=KEY, HEARTBEAT_INTERVAL_S="20", HEARTBEAT_TIMEOUT_S="20")
    )
    assert (s.heartbeat_interval_s, s.heartbeat_timeout_s) == (20.0, 20.0)


# -- origins and redaction ---------------------------------------------------------------------


def test_origins_default_is_own_origin_plus_localhost():
    assert Settings().origins() == (
        "http://127.0.0.1:8888",
        "https://127.0.0.1:8888",
        "http://localhost:8888",
    )


def test_origins_default_for_wildcard_host():
    assert Settings(host="0.0.0.0", port=80).origins() == (
        "http://0.0.0.0:80",
        "https://0.0.0.0:80",
        "http://localhost:80",
        "http://127.0.0.1:80",
    )


def test_origins_default_for_a_named_host():
    assert Settings(host="folio.example", port=443).origins() == (
        "http://folio.example:443",
        "https://folio.example:443",
    )


def test_origins_explicit_list_replaces_default():
    s = Settings(allowed_origins=("https://app.example",))
    assert s.origins() == ("https://app.example",)


def test_origins_default_for_ipv6_loopback():
    assert "http://[::1]:8888" in Settings(host="::1").origins()


def test_redacted_hides_secrets_only_when_set():
    s = Settings(secret_key=KEY, alpaca_secret_key="SK", internal_token="tok", alpaca_api_key="AK")
    red = s.redacted()
    assert (red["secret_key"], red["alpaca_secret_key"], red["internal_token"]) == (
        "***",
        "***",
        "***",
    )
    assert red["alpaca_api_key"] == "AK"
    assert Settings().redacted()["internal_token"] == ""
    assert "SK" not in repr(s) and "tok" not in repr(s)
