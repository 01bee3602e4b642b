"""Shared fixtures: a real folio-stream server on a free port, HTTP and WebSocket clients.

``FOLIO_TEST_TIMEOUT_FACTOR`` (default 1) multiplies every wait, for slow CI machines; no
assertion depends on wall-clock time.

``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` name the services for the tests that need them. With
``FOLIO_REQUIRE_SERVICES=1`` (set by ``.ci/run``) a missing service fails those tests instead of
skipping them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import ujson
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.ioloop import IOLoop
from tornado.websocket import WebSocketClientConnection, websocket_connect

from config.settings import Settings, load_settings
from server import FolioServer

TIMEOUT_FACTOR = float(os.environ.get("FOLIO_TEST_TIMEOUT_FACTOR", "1"))
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("FOLIO_REQUIRE_SERVICES") == "1"
TOKEN = "test-internal-token"
#: /api/health of a demo server in good health (no Redis).
HEALTHY = {"status": "ok", "realtime": True, "storage": "ok", "broker": "ok", "redis": "off"}


def wait(seconds: float) -> float:
    """Scale a timeout by FOLIO_TEST_TIMEOUT_FACTOR."""
    return seconds * TIMEOUT_FACTOR


def base_env(tmp_path: Path, **overrides: Any) -> dict[str, str]:
    env = {
        "PORT": "0",
        "DATA_DIR": str(tmp_path),
        "INTERNAL_TOKEN": TOKEN,
        "BATCH_WINDOW_MS": "0",
        "SIMULATOR_AUTO_TRADE": "false",
        "SIMULATOR_MONTH_S": "2",
        "SYNC_INTERVAL_S": "60",
    }
    env.update({k.upper(): str(v) for k, v in overrides.items()})
    return env


class Running:
    """A started in-process server with helpers to talk to it."""

    def __init__(self, server: FolioServer) -> None:
        self.server = server
        self.port = server.port
        self.base = f"http://127.0.0.1:{server.port}"
        self.ws_url = f"ws://127.0.0.1:{server.port}/ws/portfolio"
        self.http = AsyncHTTPClient()

    @property
    def settings(self) -> Settings:
        return self.server.settings

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        cookie: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> HTTPResponse:
        """Send a request; return the response whatever its status."""
        hdrs = dict(headers or {})
        if cookie:
            hdrs["Cookie"] = f"session={cookie}"
        if body is not None and not isinstance(body, (bytes, str)):
            body = ujson.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        if method == "POST" and body is None:
            body = b""
        req = HTTPRequest(self.base + path, method=method, body=body, headers=hdrs)
        try:
            return await self.http.fetch(req, raise_error=False)
        except HTTPClientError as exc:  # pragma: no cover - raise_error=False
            assert exc.response is not None
            return exc.response

    async def get_json(self, path: str, cookie: str | None = None) -> tuple[int, Any]:
        resp = await self.request("GET", path, cookie=cookie)
        return resp.code, ujson.loads(resp.body) if resp.body else None

    async def login(self, username: str = "alice", password: str = "demo") -> str:
        """Log in and return the session cookie's value."""
        resp = await self.request(
            "POST", "/api/login", {"username": username, "password": password}
        )
        assert resp.code == 200, resp.body
        for header in resp.headers.get_list("Set-Cookie"):
            if header.startswith("session="):
                return header.split(";", 1)[0].split("=", 1)[1]
        raise AssertionError("no session cookie")

    async def user_id(self, username: str) -> str:
        assert self.server.store is not None
        user = await self.server.store.get_user_by_name(username)
        assert user is not None
        return user.user_id

    async def connect(
        self, cookie: str | None, origin: str | None = None
    ) -> WebSocketClientConnection:
        """Open a WebSocket to /ws/portfolio (raises HTTPClientError when refused)."""
        headers = {}
        if cookie:
            headers["Cookie"] = f"session={cookie}"
        if origin:
            headers["Origin"] = origin
        req = HTTPRequest(self.ws_url, headers=headers)
        return await asyncio.wait_for(websocket_connect(req), wait(5))

    async def push(self, user_id: str, type_: str, data: dict[str, Any]) -> HTTPResponse:
        """Push an event through the internal hook."""
        return await self.request(
            "POST",
            "/internal/events",
            {"userId": user_id, "type": type_, "data": data},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )


async def recv(conn: WebSocketClientConnection, timeout: float = 3.0) -> dict[str, Any] | None:
    """Read one JSON message; None when the connection closed."""
    fut = _next_message(conn)
    raw = await asyncio.wait_for(asyncio.shield(fut), wait(timeout))
    conn._pending_read = None  # type: ignore[attr-defined]
    return None if raw is None else ujson.loads(raw)


def _next_message(conn: WebSocketClientConnection) -> Any:
    """The pending read (kept across timeouts so no message is lost), or a new one."""
    fut = getattr(conn, "_pending_read", None)
    if fut is None:
        fut = conn._pending_read = conn.read_message()  # type: ignore[attr-defined]
    return fut


async def recv_type(
    conn: WebSocketClientConnection, type_: str, timeout: float = 5.0
) -> dict[str, Any]:
    """Read messages until one of ``type_`` arrives (fails on close or timeout)."""

    async def loop() -> dict[str, Any]:
        while True:
            msg = await recv(conn, timeout)
            assert msg is not None, f"connection closed while waiting for {type_}"
            if msg["type"] == type_:
                return msg

    return await asyncio.wait_for(loop(), wait(timeout))


async def no_message(conn: WebSocketClientConnection, within: float = 0.3) -> bool:
    """True when nothing arrives within ``within`` seconds (used to show absence)."""
    try:
        await asyncio.wait_for(asyncio.shield(_next_message(conn)), within)
    except TimeoutError:
        return True
    return False


async def subscribe(
    conn: WebSocketClientConnection, channels: list[str] | None = None, **extra: Any
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Subscribe and return (subscribed, snapshot-or-None-when-recovered)."""
    msg = {
        "type": "subscribe",
        "channels": channels or ["positions", "orders", "account", "trades"],
    }
    msg.update(extra)
    await conn.write_message(ujson.dumps(msg))
    ack = await recv_type(conn, "subscribed")
    if ack["data"]["recovered"]:
        return ack, None
    return ack, await recv_type(conn, "snapshot")


def masked_text_frame(payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    """A client→server text frame (FIN, masked as RFC 6455 §5.3 requires; payload < 126 B)."""
    assert len(payload) < 126
    return (
        bytes([0x81, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


async def raw_ws(
    port: int,
    cookie: str,
    *,
    extensions: str | None = None,
    rcvbuf: int | None = None,
    subscribe: list[str] | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open /ws/portfolio by hand on a raw socket (for clients that misbehave on purpose).

    Args:
        port: the server's port.
        cookie: the session cookie's value.
        extensions: a ``Sec-WebSocket-Extensions`` offer, e.g. ``permessage-deflate``.
        rcvbuf: a small ``SO_RCVBUF`` for a client that will stop reading.
        subscribe: channels to subscribe to right after the upgrade.

    Returns:
        The stream pair, positioned after the 101 response's headers.
    """
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    offer = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
    writer.write(
        (
            "GET /ws/portfolio HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"{offer}Sec-WebSocket-Version: 13\r\nCookie: session={cookie}\r\n\r\n"
        ).encode()
    )
    assert b"101" in await reader.readline()
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    if subscribe is not None:
        payload = ujson.dumps({"type": "subscribe", "channels": subscribe}).encode()
        writer.write(masked_text_frame(payload))
        await writer.drain()
    return reader, writer


@pytest.fixture
def make_server(io_loop: IOLoop, tmp_path: Path) -> Iterator[Callable[..., Awaitable[Running]]]:
    """Factory: ``await make_server(**env_overrides)`` starts a server; all stop at teardown."""
    started: list[FolioServer] = []

    async def factory(**overrides: Any) -> Running:
        settings = load_settings(environ=base_env(tmp_path, **overrides))
        server = FolioServer(settings)
        await asyncio.wait_for(server.start(), wait(20))
        started.append(server)
        return Running(server)

    yield factory
    for server in started:
        io_loop.run_sync(server.stop, timeout=wait(20))


@pytest.fixture
def folio(io_loop: IOLoop, make_server: Callable[..., Awaitable[Running]]) -> Running:
    """A demo-mode server (simulator, alice/bob/admin) without auto-trading or batching."""
    running: Running = io_loop.run_sync(make_server, timeout=wait(20))
    return running


def require_service(name: str, error: Exception) -> None:
    """Fail in CI (FOLIO_REQUIRE_SERVICES=1), skip elsewhere, when a service is missing."""
    message = f"{name} is not reachable: {error}"
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def postgres_schema_url() -> Iterator[str]:
    """Yield a TEST_DATABASE_URL whose search_path is a new schema, dropped afterwards."""
    import psycopg

    schema = "t_" + secrets.token_hex(4)
    try:
        with psycopg.connect(TEST_DATABASE_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        require_service("PostgreSQL", exc)
    sep = "&" if "?" in TEST_DATABASE_URL else "?"
    try:
        yield f"{TEST_DATABASE_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
