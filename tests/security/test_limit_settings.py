"""The issue-7 settings: defaults, parsing and the errors naming them."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import SETTINGS_HELP, SettingsError, load_settings
from handlers.limits import in_networks


def test_defaults(tmp_path: Path) -> None:
    s = load_settings({"DATA_DIR": str(tmp_path)})
    assert (s.login_hash_workers, s.login_max_pending, s.login_free_failures) == (1, 16, 5)
    assert (s.ws_message_rate, s.ws_message_burst) == (50.0, 200)
    assert s.max_connections_per_address == 128 and s.trusted_proxies == ()
    assert s.idle_connection_timeout_s == 60.0 and s.body_timeout_s == 15.0
    for name in ("trusted_proxies", "max_connections_per_address", "login_free_failures"):
        assert name in SETTINGS_HELP


def test_trusted_proxies_parsed_and_validated(tmp_path: Path) -> None:
    s = load_settings({"DATA_DIR": str(tmp_path), "TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,::1"})
    assert s.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES: 'proxy.local'"):
        load_settings({"DATA_DIR": str(tmp_path), "TRUSTED_PROXIES": "proxy.local"})


@pytest.mark.parametrize(
    ("name", "value"),
    [("WS_MESSAGE_RATE", "0"), ("LOGIN_HASH_WORKERS", "0"), ("IDLE_CONNECTION_TIMEOUT_S", "x")],
)
def test_bad_values_name_the_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({"DATA_DIR": str(tmp_path), name: value})


def test_in_networks() -> None:
    import ipaddress

    nets = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1")]
    assert in_networks("10.1.2.3", nets) and in_networks("127.0.0.1", nets)
    assert not in_networks("127.0.0.2", nets)
    assert not in_networks("not-an-ip", nets) and not in_networks(None, nets)
