"""Prepared frames over real sockets: negotiation, every window size, tabs under back-pressure.

Clients are the `websockets` library's (offering permessage-deflate, as browsers do) and
Tornado's own client without compression; the browser suite (tests/e2e) covers Chromium.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import ujson
from websockets.asyncio.client import ClientConnection, connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

import handlers.ws
from handlers.tornado_ws import PreparedFrameProtocol
from tests.conftest import Running, raw_ws, recv_type, subscribe, wait
from tests.handlers.test_ws import ORDER
from tests.streaming.test_redis import REDIS_URL, prefix  # noqa: F401 - fixture

ALL = ["positions", "orders", "account", "trades"]


async def ws_client(folio: Running, cookie: str, **kwargs: Any) -> ClientConnection:
    """A `websockets` client; by default it offers permessage-deflate like a browser."""
    return await asyncio.wait_for(
        connect(folio.ws_url, additional_headers={"Cookie": f"session={cookie}"}, **kwargs),
        wait(5),
    )


async def next_of(ws: ClientConnection, type_: str) -> dict[str, Any]:
    while True:
        msg = ujson.loads(await asyncio.wait_for(ws.recv(), wait(5)))
        if msg["type"] == type_:
            return msg


async def ws_subscribe(ws: ClientConnection) -> None:
    await ws.send(ujson.dumps({"type": "subscribe", "channels": ALL}))
    await next_of(ws, "subscribed")
    await next_of(ws, "snapshot")


def server_side(folio: Running) -> list[PreparedFrameProtocol]:
    conns = [c.transport.ws_connection for c in folio.server.manager.hub.all()]  # type: ignore[attr-defined]
    assert all(isinstance(c, PreparedFrameProtocol) for c in conns)
    return conns


@pytest.mark.gen_test(timeout=30)
async def test_deflate_negotiated_without_context_takeover(folio: Running) -> None:
    """The answer adds server_ and client_no_context_takeover (RFC 7692 §7.1.1): no per-tab
    compressor or inflater is kept between messages."""
    cookie = await folio.login()
    ws = await ws_client(folio, cookie)
    try:
        offered = ws.request.headers["Sec-WebSocket-Extensions"]
        answered = ws.response.headers["Sec-WebSocket-Extensions"]
        assert "server_no_context_takeover" not in offered
        assert answered.startswith("permessage-deflate")
        assert "server_no_context_takeover" in answered
        assert "client_no_context_takeover" in answered
        await ws_subscribe(ws)
        (conn,) = server_side(folio)
        assert conn.deflate_wbits == 15
        assert conn._compressor is not None and conn._compressor._compressor is None
        assert conn._decompressor is not None and conn._decompressor._decompressor is None
    finally:
        await ws.close()


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("wbits", [8, 9, 10, 11, 12, 13, 14, 15])
async def test_one_event_decoded_identically_with_every_window(folio: Running, wbits: int) -> None:
    """One publication, three clients: `websockets` with server_max_window_bits=wbits, with the
    default offer, and Tornado's client without deflate: all three read the same text."""
    cookie = await folio.login()
    limited = await ws_client(
        folio,
        cookie,
        compression=None,
        extensions=[ClientPerMessageDeflateFactory(server_max_window_bits=wbits)],
    )
    default = await ws_client(folio, cookie)
    plain = await folio.connect(cookie)
    try:
        assert (
            f"server_max_window_bits={wbits}"
            in limited.response.headers["Sec-WebSocket-Extensions"]
        )
        await ws_subscribe(limited)
        await ws_subscribe(default)
        await subscribe(plain)
        by_bits = {c.deflate_wbits: c for c in server_side(folio)}
        assert set(by_bits) == {wbits, 15, None}
        user = await folio.user_id("alice")
        big = {**ORDER, "status": "partially_filled", "orderId": "x" * 3000}
        folio.server.manager.publisher.emit(
            user, "order_update", big
        )  # larger than the hook accepts
        got_limited = await next_of(limited, "order_update")
        got_default = await next_of(default, "order_update")
        got_plain = await recv_type(plain, "order_update")
        assert got_limited == got_default == got_plain
        assert got_plain["data"]["orderId"] == "x" * 3000
        for bits, conn in by_bits.items():
            if bits is not None and bits >= 9:  # compressed on the wire
                assert conn._wire_bytes_out < conn._message_bytes_out
            else:  # window 8 and no deflate: plain frames
                assert conn._wire_bytes_out > conn._message_bytes_out
    finally:
        await limited.close()
        await default.close()
        plain.close()


async def _slow_tab_does_not_cost_the_others(folio: Running, monkeypatch: Any) -> None:
    monkeypatch.setattr(handlers.ws, "MAX_BUFFERED_BYTES", 64 * 1024)
    cookie = await folio.login()
    healthy = [await ws_client(folio, cookie, max_size=None) for _ in range(3)]
    for ws in healthy:
        await ws_subscribe(ws)
    # A tab that upgrades (offering deflate), subscribes to everything, then never reads again.
    _, writer = await raw_ws(
        folio.port, cookie, extensions="permessage-deflate", rcvbuf=4096, subscribe=ALL
    )
    manager = folio.server.manager
    for _ in range(300):
        if manager.hub.count() == 4 and all(c.subscription.channels for c in manager.hub.all()):
            break
        await asyncio.sleep(0.01)
    received: list[list[int]] = [[] for _ in healthy]

    async def read(i: int, ws: ClientConnection) -> None:
        async for raw in ws:
            msg = ujson.loads(raw)
            if msg["type"] == "order_update":
                received[i].append(msg["seq"])

    readers = [asyncio.ensure_future(read(i, ws)) for i, ws in enumerate(healthy)]
    user = await folio.user_id("alice")
    count = 60
    # Random-looking payloads (hex) so compression cannot shrink them below the buffer limit.
    import secrets

    for i in range(count):
        manager.publisher.emit(
            user, "order_update", {**ORDER, "orderId": secrets.token_hex(50_000)}
        )
        if i % 5 == 0:
            await manager.wait_idle()
            await asyncio.sleep(0)
    await manager.wait_idle()
    for _ in range(500):
        if all(len(r) == count for r in received):
            break
        await asyncio.sleep(0.02)
    for r in readers:
        r.cancel()
    first = received[0][0] if received[0] else 0
    for r in received:  # every healthy tab saw every event, in order
        assert r == list(range(first, first + count))
    assert manager.metrics.disconnects.labels(code="4002")._value.get() == 1
    assert manager.hub.count() == 3
    for ws in healthy:
        await ws.close()
    writer.close()


@pytest.mark.gen_test(timeout=90)
async def test_never_reading_tab_closed_4002_healthy_tabs_get_every_seq(
    folio: Running, monkeypatch: Any
) -> None:
    """Memory engine: one tab stops reading under large events; the three others lose nothing."""
    await _slow_tab_does_not_cost_the_others(folio, monkeypatch)


@pytest.mark.redis
@pytest.mark.gen_test(timeout=90)
async def test_never_reading_tab_on_the_redis_engine(
    make_server: Any,
    prefix: str,  # noqa: F811
    monkeypatch: Any,
    caplog: Any,
) -> None:
    """Redis engine: the same, through the Redis fan-out reader (which used to resubscribe)."""
    folio = await make_server(redis_url=REDIS_URL, redis_prefix=prefix)
    await _slow_tab_does_not_cost_the_others(folio, monkeypatch)
    assert folio.server.manager.broker.connected is True  # type: ignore[attr-defined]
    assert "Redis fan-out interrupted" not in caplog.text
