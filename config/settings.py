"""Settings: read once at start from environment variables and ``--flags``, validated.

Every setting has an environment variable (``PORT``) and a command-line flag (``--port``); a flag
wins over the variable. :func:`load_settings` raises :class:`SettingsError` naming the bad
variable, so a typo stops the server at start with a clear message instead of at the first use.

Demo mode is on when no Alpaca key pair is configured (``ALPACA_API_KEY`` absent): the server then
starts the bundled Alpaca-protocol simulator, seeds demo users and may generate its own
``SECRET_KEY`` (kept in ``var/secret_key`` so sessions and encrypted keys survive a restart).
Secrets are only ever taken from settings, never from code.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Settings", "SettingsError", "load_settings", "SETTINGS_HELP", "LOG_LEVELS"]

#: Accepted ``LOG_LEVEL`` values (the names of :mod:`logging`'s levels, any case).
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _parse_int(name: str, raw: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise SettingsError(f"{name} must be at least {minimum}{upper}, got {value}")
    return value


def _parse_float(name: str, raw: str, *, minimum: float = 0.0) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not (value >= minimum and math.isfinite(value)):  # also rejects NaN and inf
        raise SettingsError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def _parse_choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def _parse_url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    value = raw.strip()
    if not value.startswith(tuple(s + "://" for s in schemes)):
        raise SettingsError(f"{name} must start with one of {', '.join(schemes)}://, got {raw!r}")
    return value.rstrip("/")


def _parse_prefix(name: str, raw: str) -> str:
    value = raw.strip()
    if not value or not all(c.isalnum() or c in "-_." for c in value):
        raise SettingsError(f"{name} must be letters, digits, '-', '_' or '.', got {raw!r}")
    return value


def _parse_origins(name: str, raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if not origin.startswith(("http://", "https://")):
            raise SettingsError(f"{name}: origin {origin!r} must start with http:// or https://")
    return origins


def _parse_networks(name: str, raw: str) -> tuple[str, ...]:
    nets = tuple(n.strip() for n in raw.split(",") if n.strip())
    for net in nets:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise SettingsError(
                f"{name}: {net!r} is not an IP address or network (such as 10.0.0.0/8)"
            ) from None
    return nets


@dataclass(frozen=True)
class Settings:
    """The server's validated settings. Build with :func:`load_settings`, not directly.

    Units: ``*_ms`` milliseconds, ``*_s`` seconds. ``allowed_origins`` empty means "the
    server's own origin" (``http://HOST:PORT`` plus ``http://localhost:PORT`` for 127.0.0.1).
    """

    host: str = "127.0.0.1"
    port: int = 8888
    secret_key: str = ""
    database_url: str = "sqlite:///var/folio.db"
    redis_url: str = ""
    redis_prefix: str = "folio"
    alpaca_api_key: str = ""
    alpaca_secret_key: str = field(default="", repr=False)
    alpaca_paper: bool = True
    alpaca_trading_url: str = ""
    alpaca_stream_url: str = ""
    alpaca_data_url: str = ""
    enable_realtime_portfolio: bool = True
    batch_window_ms: int = 250
    max_connections_per_user: int = 5
    heartbeat_interval_s: float = 15.0
    heartbeat_timeout_s: float = 30.0
    internal_token: str = field(default="", repr=False)
    internal_host: str = "127.0.0.1"
    internal_port: int | None = None
    allowed_origins: tuple[str, ...] = ()
    session_ttl_s: int = 12 * 3600
    sync_interval_s: float = 60.0
    stale_after_s: float = 30.0
    account_history_interval_s: float = 10.0
    max_message_bytes: int = 64 * 1024
    simulator_port: int = 0
    simulator_month_s: float = 20.0
    simulator_auto_trade: bool = True
    data_dir: str = "var"
    event_loop: str = "asyncio"
    log_level: str = "info"
    log_format: str = "text"
    outbox_max_events: int = 10_000
    lease_s: float = 6.0
    login_hash_workers: int = 1
    login_max_pending: int = 16
    login_free_failures: int = 5
    login_backoff_max_s: float = 300.0
    ws_message_rate: float = 50.0
    ws_message_burst: int = 200
    ws_upgrade_rate: float = 10.0
    ws_upgrade_burst: int = 40
    max_connections_per_address: int = 128
    idle_connection_timeout_s: float = 60.0
    body_timeout_s: float = 15.0
    trusted_proxies: tuple[str, ...] = ()
    session_purge_interval_s: float = 3600.0
    demo: bool = True

    def origins(self) -> tuple[str, ...]:
        """Return the origins accepted on the WebSocket upgrade and on state-changing POSTs.

        Returns:
            ``allowed_origins`` when set, else the server's own origin(s).
        """
        if self.allowed_origins:
            return self.allowed_origins
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal (RFC 3986)
        own = [f"http://{host}:{self.port}", f"https://{host}:{self.port}"]
        if self.host in ("127.0.0.1", "0.0.0.0", "::1", "localhost"):
            own += [f"http://localhost:{self.port}", f"http://127.0.0.1:{self.port}"]
        return tuple(dict.fromkeys(own))

    def redacted(self) -> dict[str, Any]:
        """Return the settings as a dict with secrets replaced by ``"***"`` (safe to log)."""
        out = dataclasses.asdict(self)
        for key in ("secret_key", "alpaca_secret_key", "internal_token"):
            if out[key]:
                out[key] = "***"
        return out


_SECRET_FIELDS = ("secret_key", "alpaca_secret_key", "internal_token")

# (field name, parser) — the environment variable is the field name upper-cased.
_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "host": lambda n, v: v.strip() or "127.0.0.1",
    "port": lambda n, v: _parse_int(n, v, minimum=0, maximum=65535),
    "secret_key": lambda n, v: v,
    "database_url": lambda n, v: _parse_url(n, v, ("sqlite", "postgresql", "postgres")),
    "redis_url": lambda n, v: _parse_url(n, v, ("redis", "rediss", "unix")) if v.strip() else "",
    "redis_prefix": lambda n, v: _parse_prefix(n, v),
    "alpaca_api_key": lambda n, v: v.strip(),
    "alpaca_secret_key": lambda n, v: v.strip(),
    "alpaca_paper": _parse_bool,
    "alpaca_trading_url": lambda n, v: _parse_url(n, v, ("http", "https")),
    "alpaca_stream_url": lambda n, v: _parse_url(n, v, ("ws", "wss")),
    "alpaca_data_url": lambda n, v: _parse_url(n, v, ("ws", "wss")),
    "enable_realtime_portfolio": _parse_bool,
    "batch_window_ms": lambda n, v: _parse_int(n, v, minimum=0, maximum=5000),
    "max_connections_per_user": lambda n, v: _parse_int(n, v, minimum=1, maximum=1000),
    "heartbeat_interval_s": lambda n, v: _parse_float(n, v, minimum=0.05),
    "heartbeat_timeout_s": lambda n, v: _parse_float(n, v, minimum=0.1),
    "internal_token": lambda n, v: v.strip(),
    "internal_host": lambda n, v: v.strip() or "127.0.0.1",
    "internal_port": lambda n, v: _parse_int(n, v, minimum=0, maximum=65535) if v.strip() else None,
    "allowed_origins": _parse_origins,
    "session_ttl_s": lambda n, v: _parse_int(n, v, minimum=60),
    "sync_interval_s": lambda n, v: _parse_float(n, v, minimum=0.1),
    "stale_after_s": lambda n, v: _parse_float(n, v, minimum=0.1),
    "account_history_interval_s": lambda n, v: _parse_float(n, v, minimum=0.5),
    "max_message_bytes": lambda n, v: _parse_int(n, v, minimum=256),
    "simulator_port": lambda n, v: _parse_int(n, v, minimum=0, maximum=65535),
    "simulator_month_s": lambda n, v: _parse_float(n, v, minimum=0.1),
    "simulator_auto_trade": _parse_bool,
    "data_dir": lambda n, v: v.strip() or "var",
    "event_loop": lambda n, v: _parse_choice(n, v, ("asyncio", "uvloop")),
    "log_level": lambda n, v: _parse_choice(n, v, LOG_LEVELS),
    "log_format": lambda n, v: _parse_choice(n, v, ("text", "json")),
    "outbox_max_events": lambda n, v: _parse_int(n, v, minimum=100),
    "lease_s": lambda n, v: _parse_float(n, v, minimum=1.0),
    "login_hash_workers": lambda n, v: _parse_int(n, v, minimum=1, maximum=64),
    "login_max_pending": lambda n, v: _parse_int(n, v, minimum=1, maximum=10_000),
    "login_free_failures": lambda n, v: _parse_int(n, v, minimum=1, maximum=1000),
    "login_backoff_max_s": lambda n, v: _parse_float(n, v, minimum=1.0),
    "ws_message_rate": lambda n, v: _parse_float(n, v, minimum=1.0),
    "ws_message_burst": lambda n, v: _parse_int(n, v, minimum=1),
    "ws_upgrade_rate": lambda n, v: _parse_float(n, v, minimum=0.1),
    "ws_upgrade_burst": lambda n, v: _parse_int(n, v, minimum=1),
    "max_connections_per_address": lambda n, v: _parse_int(n, v, minimum=0),
    "idle_connection_timeout_s": lambda n, v: _parse_float(n, v, minimum=1.0),
    "body_timeout_s": lambda n, v: _parse_float(n, v, minimum=1.0),
    "trusted_proxies": _parse_networks,
    "session_purge_interval_s": lambda n, v: _parse_float(n, v, minimum=1.0),
}

SETTINGS_HELP: dict[str, str] = {
    "host": "address to listen on",
    "port": "HTTP port",
    "secret_key": "signs session JWTs and encrypts broker keys (required outside demo mode)",
    "database_url": "sqlite:///path or postgresql://user@host/db",
    "redis_url": "redis://host:port/db for fan-out across processes (empty: in-process bus)",
    "redis_prefix": "prefix of every Redis key and channel (several deployments, one Redis)",
    "alpaca_api_key": "operator key for market data; absent = demo mode with the simulator",
    "alpaca_secret_key": "operator secret for market data",
    "alpaca_paper": "use Alpaca's paper endpoints",
    "alpaca_trading_url": "REST base URL override (any Alpaca-compatible endpoint)",
    "alpaca_stream_url": "trading stream ws:// URL override",
    "alpaca_data_url": "market data ws:// URL override",
    "enable_realtime_portfolio": "false: /ws/portfolio answers 404, REST keeps working",
    "batch_window_ms": "coalescing window for position/account updates (0 = no batching)",
    "max_connections_per_user": "concurrent WebSocket connections per user",
    "heartbeat_interval_s": "seconds between WebSocket pings",
    "heartbeat_timeout_s": "seconds of silence before a connection is closed",
    "internal_token": "bearer token for POST /internal/events (empty: hook disabled)",
    "internal_host": "address of the internal listener (INTERNAL_PORT)",
    "internal_port": "also serve POST /internal/events alone on this port, lean (empty: off)",
    "allowed_origins": "comma-separated origins allowed to open the WebSocket",
    "session_ttl_s": "session lifetime in seconds",
    "sync_interval_s": "seconds between REST reconciliations with the broker",
    "stale_after_s": "seconds without a broker message before clients are told data is stale",
    "account_history_interval_s": "seconds between recorded account points (the day's chart)",
    "max_message_bytes": "largest accepted WebSocket frame (bytes)",
    "simulator_port": "port of the embedded simulator in demo mode (0 = any free port)",
    "simulator_month_s": "seconds of replay per recorded month in demo mode",
    "simulator_auto_trade": "demo mode: the simulator places orders for the demo traders",
    "data_dir": "directory for the SQLite file and the generated demo secret",
    "event_loop": "asyncio (default) or uvloop (the libuv loop; see bench/README.md)",
    "log_level": "debug, info (default), warning, error or critical",
    "log_format": "text (default) or json (one JSON object per line, python-json-logger)",
    "outbox_max_events": "events held while Redis is unreachable (beyond: snapshots dropped)",
    "lease_s": "cluster: seconds a bridge's lease on a broker account lasts unrenewed (takeover)",
    "login_hash_workers": "threads checking passwords (scrypt) off the event loop",
    "login_max_pending": "logins hashing or waiting at once; more answer 503 + Retry-After",
    "login_free_failures": "wrong logins per address and per username before backoff starts",
    "login_backoff_max_s": "longest login backoff in seconds (doubling from 1 s; 429)",
    "ws_message_rate": "client frames per second per connection (over: 1008)",
    "ws_message_burst": "client frames one connection may send in a burst",
    "ws_upgrade_rate": "WebSocket upgrade attempts per second per client address (over: 429)",
    "ws_upgrade_burst": "WebSocket upgrade attempts one address may make in a burst",
    "max_connections_per_address": "open connections per client address (0: no cap)",
    "idle_connection_timeout_s": "seconds an HTTP connection may idle or send headers",
    "body_timeout_s": "seconds a client may take to send a request body",
    "trusted_proxies": "proxy addresses/networks whose X-Forwarded-* headers count",
    "session_purge_interval_s": "seconds between deletions of expired sessions",
}


def _flag_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    for name in _PARSERS:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None)
    return parser


def load_settings(
    environ: Mapping[str, str] | None = None,
    argv: Sequence[str] | None = None,
    warnings: list[str] | None = None,
) -> Settings:
    """Build :class:`Settings` from environment variables, overridden by ``--flags``.

    A flag wins over its environment variable; when both are given and differ, a line saying
    so is appended to ``warnings`` (the server logs them once logging is set up).

    Args:
        environ: variables to read (default ``os.environ``).
        argv: command-line arguments such as ``["--port", "9000"]`` (default: none).
        warnings: where to append those lines (default: dropped).

    Returns:
        The validated settings. In demo mode without ``SECRET_KEY`` a random key is generated
        and stored in ``<DATA_DIR>/secret_key`` (mode 0600) so it survives restarts.

    Raises:
        SettingsError: a value is malformed, or ``SECRET_KEY`` is missing outside demo mode, or
            only one of ``ALPACA_API_KEY``/``ALPACA_SECRET_KEY`` is set.
    """
    env = dict(os.environ if environ is None else environ)
    raw: dict[str, str] = {}
    for name in _PARSERS:
        if name.upper() in env:
            raw[name] = env[name.upper()]
    if argv:
        try:
            flags, unknown = _flag_parser().parse_known_args(list(argv))
        except argparse.ArgumentError as exc:
            raise SettingsError(f"bad option: {exc}") from None
        if unknown:
            raise SettingsError(f"unknown option(s): {' '.join(unknown)}")
        for name, value in vars(flags).items():
            if value is not None:
                env_value = raw.get(name)
                if env_value is not None and env_value.strip() != value.strip():
                    shown = "***" if name in _SECRET_FIELDS else f"{env_value.strip()!r}"
                    flag = "--" + name.replace("_", "-")
                    if warnings is not None:
                        warnings.append(
                            f"{flag} overrides {name.upper()}={shown} from the environment"
                        )
                raw[name] = value
    values: dict[str, Any] = {}
    for name, text in raw.items():
        values[name] = _PARSERS[name](name.upper(), text)

    key, secret = values.get("alpaca_api_key", ""), values.get("alpaca_secret_key", "")
    if bool(key) != bool(secret):
        raise SettingsError("ALPACA_API_KEY and ALPACA_SECRET_KEY must be set together")
    values["demo"] = not key
    if "database_url" not in values:
        data_dir = values.get("data_dir", "var")
        values["database_url"] = f"sqlite:///{data_dir}/folio.db"
    settings = Settings(**values)
    if settings.heartbeat_timeout_s < settings.heartbeat_interval_s:
        raise SettingsError(
            "HEARTBEAT_TIMEOUT_S must be at least HEARTBEAT_INTERVAL_S "
            f"({settings.heartbeat_timeout_s} < {settings.heartbeat_interval_s})"
        )
    if not settings.secret_key:
        if not settings.demo:
            raise SettingsError("SECRET_KEY is required outside demo mode (ALPACA_API_KEY is set)")
        settings = dataclasses.replace(settings, secret_key=_demo_secret(settings.data_dir))
    elif len(settings.secret_key) < 16:
        raise SettingsError("SECRET_KEY must be at least 16 characters")
    return settings


def _demo_secret(data_dir: str) -> str:
    try:
        return _read_or_make_secret(Path(data_dir) / "secret_key")
    except OSError as exc:
        raise SettingsError(
            f"DATA_DIR {data_dir!r} is not a usable directory ({exc.strerror or exc}): "
            "point DATA_DIR at a writable directory"
        ) from None


def _read_or_make_secret(path: Path) -> str:
    if path.exists():
        value = path.read_text().strip()
        if len(value) < 16:
            raise SettingsError(
                f"{path} holds no usable SECRET_KEY (empty or too short): remove it"
            )
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value
