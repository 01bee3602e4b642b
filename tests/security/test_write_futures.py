"""Un-awaited write futures (issue 7, item 7): a client vanishing with frames still queued must
not leave "Task exception was never retrieved" behind (122 such tracebacks in one run before)."""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
from typing import Any

import pytest

from tests.conftest import Running
from tests.handlers.test_ws import ORDER
from tests.security.helpers import ws_frame


@pytest.mark.gen_test(timeout=60)
async def test_vanishing_client_leaves_no_unretrieved_task_exceptions(folio: Running) -> None:
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reports.append(context))
    try:
        cookie = await folio.login("alice")
        alice = await folio.user_id("alice")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny window: writes queue
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", folio.port))
        await loop.sock_sendall(
            sock,
            (
                "GET /ws/portfolio HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\nCookie: session={cookie}\r\n\r\n"
            ).encode(),
        )
        assert (await loop.sock_recv(sock, 4096)).startswith(b"HTTP/1.1 101")
        await loop.sock_sendall(
            sock, ws_frame(0x1, b'{"type": "subscribe", "channels": ["orders"]}')
        )
        await asyncio.sleep(0.2)
        # and a tiny send buffer on the server's side of this connection
        (conn,) = folio.server.manager.hub.connections(alice)  # type: ignore[union-attr]
        conn.transport.ws_connection.stream.socket.setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
        )  # type: ignore[attr-defined]
        for n in range(300):  # never read: frames pile up in the server's write buffer
            data = {**ORDER, "orderId": f"o{n}-" + "x" * 100}
            assert (await folio.push(alice, "order_update", data)).code == 202
        # vanish with a reset (SO_LINGER 0): the queued writes fail
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        for _ in range(100):
            if folio.server.manager.hub.count() == 0:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        gc.collect()
        await asyncio.sleep(0.05)
    finally:
        loop.set_exception_handler(previous)
    unretrieved = [r for r in reports if "never retrieved" in str(r.get("message"))]
    assert unretrieved == [], unretrieved[:2]
