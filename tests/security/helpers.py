"""Shared pieces of the attack suite: another trader who must lose nothing, raw sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from typing import Any

import ujson
from tornado.websocket import WebSocketClientConnection

from tests.conftest import Running, recv_type, subscribe, wait
from tests.handlers.test_ws import ORDER

#: Source address of the attacker on loopback (Linux routes all of 127.0.0.0/8 to lo), so the
#: per-address limits see the attacker apart from the other trader (127.0.0.1).
ATTACKER_IP = "127.0.0.2"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


class Bystander:
    """Another trader (``bob``) whose stream is watched during an attack.

    :meth:`round_trips` measures protocol ``ping`` → ``pong`` round trips (seconds);
    :meth:`expect_events` pushes order updates through the hook and checks every one arrives,
    in order, with consecutive ``seq`` (nothing lost).
    """

    def __init__(self, folio: Running, username: str = "bob") -> None:
        self.folio = folio
        self.username = username
        self.conn: WebSocketClientConnection | None = None
        self.user_id = ""
        self.last_seq = 0
        self.pushed = 0

    async def start(self) -> Bystander:
        cookie = await self.folio.login(self.username, "demo")
        self.conn = await self.folio.connect(cookie)
        _, snapshot = await subscribe(self.conn, ["orders"])
        assert snapshot is not None
        self.last_seq = snapshot["seq"]
        self.user_id = await self.folio.user_id(self.username)
        return self

    async def round_trips(self, count: int) -> list[float]:
        assert self.conn is not None
        out = []
        for _ in range(count):
            start = time.perf_counter()
            await self.conn.write_message('{"type": "ping"}')
            await recv_type(self.conn, "pong", timeout=10)
            out.append(time.perf_counter() - start)
        return out

    async def expect_events(self, count: int) -> None:
        """Push ``count`` order updates for this trader; all must arrive, seq consecutive."""
        assert self.conn is not None
        for _ in range(count):
            self.pushed += 1
            order_id = f"bystander-{self.pushed}"
            resp = await self.folio.push(
                self.user_id, "order_update", {**ORDER, "orderId": order_id}
            )
            assert resp.code == 202, resp.body
            msg = await recv_type(self.conn, "order_update", timeout=10)
            assert msg["data"]["orderId"] == order_id
            assert msg["seq"] == self.last_seq + 1, "the bystander lost an event"
            self.last_seq = msg["seq"]

    def assert_open(self) -> None:
        assert self.conn is not None and self.conn.close_code is None, "bystander was closed"


def raw_connect(port: int, source: str = ATTACKER_IP) -> socket.socket:
    """A non-blocking TCP connection to the server from ``source`` (connected: the kernel
    completes the handshake into the listen backlog without the server's help)."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(wait(5))
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def exchange(sock: socket.socket, data: bytes) -> bytes:
    """Send ``data`` on a non-blocking ``sock`` and return the first bytes of the answer."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, data)
    return await asyncio.wait_for(loop.sock_recv(sock, 65536), wait(5))


def is_closed_by_peer(sock: socket.socket) -> bool:
    """True when the server closed ``sock`` (EOF or reset), without waiting."""
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return data == b"" or data.startswith(b"HTTP/1.1 408")


async def until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` is true (polling every 20 ms)."""
    deadline = time.monotonic() + wait(timeout)
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def ws_frame(
    opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    """Encode one client frame (RFC 6455 §5.2)."""
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def raw_websocket(
    port: int, cookie: str, origin: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open /ws/portfolio by hand (no permessage-deflate); return the stream after the 101."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    headers = [
        "GET /ws/portfolio HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        f"Cookie: session={cookie}",
    ]
    if origin:
        headers.append(f"Origin: {origin}")
    writer.write(("\r\n".join(headers) + "\r\n\r\n").encode())
    status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait(5))
    assert status.startswith(b"HTTP/1.1 101"), status
    return reader, writer


async def read_frames_until_close(reader: asyncio.StreamReader) -> tuple[int | None, str]:
    """Read server frames until a close frame (→ its code and reason) or EOF (→ None, "")."""
    try:
        while True:
            b0, b1 = await asyncio.wait_for(reader.readexactly(2), wait(10))
            length = b1 & 0x7F
            if length == 126:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await reader.readexactly(8))[0]
            payload = await reader.readexactly(length)
            if b0 & 0x0F == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return code, payload[2:].decode("utf-8", "replace")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None, ""


def json_dumps(value: Any) -> str:
    return ujson.dumps(value)
