"""Connections held forever (issue 7, item 2): idle, slowloris and per-address floods.

The attacker connects from 127.0.0.2 (all of 127.0.0.0/8 is loopback on Linux), the other
trader from 127.0.0.1, so per-address limits tell them apart as they would on a network.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from tests.conftest import Running, wait
from tests.security.helpers import Bystander, exchange, is_closed_by_peer, raw_connect, until


@pytest.mark.gen_test(timeout=60)
async def test_idle_and_slowloris_connections_are_closed(make_server: Any) -> None:
    """Idle TCP, slowloris headers and a slow body are all closed after their timeouts, while
    the other trader keeps streaming."""
    folio: Running = await make_server(idle_connection_timeout_s=1, body_timeout_s=1)
    bob = await Bystander(folio).start()
    idle = [raw_connect(folio.port) for _ in range(20)]
    slow = [raw_connect(folio.port) for _ in range(20)]
    for sock in slow:
        sock.send(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
    body = raw_connect(folio.port)
    body.send(
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    keepalive = raw_connect(folio.port)
    answer = await exchange(keepalive, b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")  # then it idles

    async def drip() -> None:
        # slowloris: one header byte per slow connection every 0.2 s, never finishing
        for _ in range(int(wait(8) / 0.2)):
            for sock in slow:
                try:
                    sock.send(b"X")
                except OSError:
                    pass
            await asyncio.sleep(0.2)

    dripping = asyncio.ensure_future(drip())
    everyone = [*idle, *slow, body, keepalive]
    await until(lambda: all(is_closed_by_peer(s) for s in everyone), "attack connections closed")
    dripping.cancel()
    await bob.expect_events(5)
    bob.assert_open()
    for sock in everyone:
        sock.close()


@pytest.mark.gen_test(timeout=60)
async def test_per_address_connection_cap(make_server: Any) -> None:
    """MAX_CONNECTIONS_PER_ADDRESS=10: the 11th+ connection from one address is closed at once
    and counted; other addresses are not affected."""
    folio: Running = await make_server(max_connections_per_address=10)
    bob = await Bystander(folio).start()
    socks = [raw_connect(folio.port) for _ in range(30)]
    await asyncio.sleep(0.3)
    closed = [s for s in socks if is_closed_by_peer(s)]
    assert len(closed) == 20
    refused = folio.server.manager.metrics.http_refused  # type: ignore[union-attr]
    assert refused.labels(reason="per_address")._value.get() == 20
    assert folio.server.http.open_connections("127.0.0.2") == 10  # type: ignore[union-attr]
    # another address is served; bob's stream loses nothing
    assert (await folio.get_json("/api/health"))[0] == 200
    await bob.expect_events(5)
    # freeing slots lets the address connect again
    for sock in socks:
        sock.close()
    await until(
        lambda: folio.server.http.open_connections("127.0.0.2") == 0,  # type: ignore[union-attr]
        "slots freed",
    )
    again = raw_connect(folio.port)
    answer = await exchange(again, b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")
    again.close()


@pytest.mark.gen_test(timeout=60)
async def test_upgrade_attempts_are_rate_limited_per_address(make_server: Any) -> None:
    """More upgrade attempts than WS_UPGRADE_BURST from one address → 429 with Retry-After,
    before any session lookup; bob's stream is unaffected."""
    folio: Running = await make_server(ws_upgrade_burst=5, ws_upgrade_rate=0.5)
    bob = await Bystander(folio).start()
    statuses = []
    for _ in range(12):
        sock = raw_connect(folio.port)
        head = await exchange(
            sock,
            b"GET /ws/portfolio HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n",
        )
        statuses.append(int(head.split(b" ", 2)[1]))
        if statuses[-1] == 429:
            assert b"Retry-After: " in head
        sock.close()
    # bob's earlier upgrade used one token of 127.0.0.1's bucket, not the attacker's
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    await bob.expect_events(3)


def test_attacker_source_address_is_usable() -> None:
    """The suite's premise: a client can bind 127.0.0.2 on this machine."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))


@pytest.mark.gen_test(timeout=30)
async def test_trusted_proxies_are_exempt_from_the_per_address_cap(make_server: Any) -> None:
    """Every client of a proxy shares its address: a TRUSTED_PROXIES peer is not capped."""
    folio: Running = await make_server(max_connections_per_address=5, trusted_proxies="127.0.0.2")
    socks = [raw_connect(folio.port) for _ in range(15)]
    await asyncio.sleep(0.3)
    assert not any(is_closed_by_peer(s) for s in socks)
    answer = await exchange(socks[-1], b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")
    for sock in socks:
        sock.close()
