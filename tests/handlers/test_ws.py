"""/ws/portfolio over real sockets: REQ-1 (auth), REQ-2 (isolation), REQ-3 (limit), protocol."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import ujson
from tornado.httpclient import HTTPClientError

from tests.conftest import (
    HEALTHY,
    Running,
    no_message,
    raw_ws,
    recv,
    recv_type,
    subscribe,
    wait,
)

POSITION = {
    "symbol": "AAPL",
    "quantity": "10",
    "currentPrice": "190.00",
    "entryPrice": "187.32",
    "unrealizedPnl": "26.80",
    "unrealizedPnlPercent": "1.43",
    "marketValue": "1900.00",
    "side": "long",
    "openedAt": "2026-11-25T14:31:02Z",
}
ORDER = {
    "orderId": "c-1",
    "brokerOrderId": "b-1",
    "symbol": "AAPL",
    "side": "buy",
    "type": "market",
    "status": "filled",
    "qty": "10",
    "filledQty": "10",
    "filledAvgPrice": "187.32",
    "submittedAt": "2026-11-25T14:31:01Z",
    "filledAt": "2026-11-25T14:31:02Z",
}
ACCOUNT = {
    "equity": "100026.80",
    "buyingPower": "98126.80",
    "cash": "98126.80",
    "portfolioValue": "100026.80",
    "dayPnl": "26.80",
    "dayPnlPercent": "0.03",
    "timestamp": "2026-11-25T14:31:02Z",
}


# -- REQ-1: authentication before the upgrade ---------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_upgrade_without_cookie_is_401(folio: Running) -> None:
    """No session cookie: HTTP 401 on the upgrade request, no socket."""
    with pytest.raises(HTTPClientError) as info:
        await folio.connect(None)
    assert info.value.code == 401


@pytest.mark.gen_test(timeout=30)
async def test_upgrade_with_forged_cookie_is_401(folio: Running) -> None:
    """A JWT signed with another key is refused with 401."""
    import jwt

    forged = jwt.encode({"sub": "1", "sid": "x", "exp": 2_000_000_000}, "k" * 32, algorithm="HS256")
    for cookie in (forged, "not-a-jwt"):
        with pytest.raises(HTTPClientError) as info:
            await folio.connect(cookie)
        assert info.value.code == 401


@pytest.mark.gen_test(timeout=30)
async def test_upgrade_from_foreign_origin_is_403(folio: Running) -> None:
    """A valid cookie from another site's page is refused with 403 (cross-site hijacking)."""
    cookie = await folio.login()
    with pytest.raises(HTTPClientError) as info:
        await folio.connect(cookie, origin="https://evil.example")
    assert info.value.code == 403
    for own in (f"http://127.0.0.1:{folio.port}", f"http://localhost:{folio.port}"):
        conn = await folio.connect(cookie, origin=own)  # PORT=0: the bound port is the origin's
        conn.close()


@pytest.mark.gen_test(timeout=30)
async def test_logout_revokes_session_everywhere(folio: Running) -> None:
    """After logout the open socket is closed with 4001 and the cookie is refused (WS and REST)."""
    cookie = await folio.login()
    conn = await folio.connect(cookie)
    await subscribe(conn, ["account"])
    resp = await folio.request("POST", "/api/logout", cookie=cookie)
    assert resp.code == 200
    assert await recv(conn) is None
    assert conn.close_code == 4001
    assert conn.close_reason == "Session revoked"
    with pytest.raises(HTTPClientError) as info:
        await folio.connect(cookie)
    assert info.value.code == 401
    code, body = await folio.get_json("/api/positions", cookie)
    assert code == 401
    assert body["error"]["code"] == "unauthorized"


# -- REQ-2: isolation ---------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_events_reach_only_their_user(folio: Running) -> None:
    """An event for alice reaches both of alice's sockets and never bob's."""
    alice_cookie, bob_cookie = await folio.login("alice"), await folio.login("bob")
    alice1, alice2 = await folio.connect(alice_cookie), await folio.connect(alice_cookie)
    bob = await folio.connect(bob_cookie)
    for conn in (alice1, alice2, bob):
        await subscribe(conn)
    alice_id, bob_id = await folio.user_id("alice"), await folio.user_id("bob")
    resp = await folio.push(alice_id, "order_update", ORDER)
    assert resp.code == 202
    for conn in (alice1, alice2):
        msg = await recv_type(conn, "order_update")
        assert msg["userId"] == alice_id
        assert msg["data"]["orderId"] == "c-1"
    assert await no_message(bob, 0.5)
    await folio.push(bob_id, "order_update", {**ORDER, "orderId": "bob-1"})
    msg = await recv_type(bob, "order_update")
    assert msg["userId"] == bob_id and msg["data"]["orderId"] == "bob-1"
    assert await no_message(alice1, 0.3)


@pytest.mark.gen_test(timeout=30)
async def test_nothing_arrives_before_subscribe(folio: Running) -> None:
    """A client receives no stream event until it subscribes."""
    cookie = await folio.login()
    conn = await folio.connect(cookie)
    await folio.push(await folio.user_id("alice"), "order_update", ORDER)
    assert await no_message(conn, 0.5)


# -- REQ-3: per-user connection limit ---------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_sixth_connection_closed_with_1008(folio: Running) -> None:
    """The 6th connection gets max_connections and 1008; the five keep working; a slot frees."""
    cookie = await folio.login()
    conns = [await folio.connect(cookie) for _ in range(5)]
    for conn in conns:
        await subscribe(conn, ["orders"])
    sixth = await folio.connect(cookie)
    msg = await recv(sixth)
    assert msg is not None and msg["type"] == "error"
    assert msg["data"] == {"code": "max_connections", "message": "Maximum connections exceeded"}
    assert msg["userId"] == await folio.user_id("alice")
    assert isinstance(msg["seq"], int) and msg["epoch"] and msg["timestamp"]
    assert await recv(sixth) is None
    assert sixth.close_code == 1008
    assert sixth.close_reason == "Maximum connections exceeded"
    await folio.push(await folio.user_id("alice"), "order_update", ORDER)
    for conn in conns:
        assert (await recv_type(conn, "order_update"))["data"]["orderId"] == "c-1"
    # bob is not affected by alice's limit
    bob = await folio.connect(await folio.login("bob"))
    await subscribe(bob, ["orders"])
    # closing one frees its slot
    conns[0].close()
    manager = folio.server.manager
    assert manager is not None
    for _ in range(100):
        if len(manager.hub.connections(await folio.user_id("alice"))) == 4:
            break
        await asyncio.sleep(0.02)
    again = await folio.connect(cookie)
    ack, snap = await subscribe(again, ["orders"])
    assert ack["data"]["channels"] == ["orders"]


# -- subscribe / snapshot / filters ---------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_subscribe_answers_subscribed_then_snapshot(folio: Running) -> None:
    """subscribe → subscribed (channels, symbols) → snapshot of those channels only."""
    cookie = await folio.login()
    conn = await folio.connect(cookie)
    ack, snap = await subscribe(conn, ["positions", "account"], symbols=["aapl"])
    assert ack["data"] == {
        "channels": ["account", "positions"],
        "symbols": ["AAPL"],
        "recovered": False,
    }
    assert snap is not None
    assert set(snap["data"]) == {"positions", "account"}
    assert snap["userId"] == await folio.user_id("alice")
    assert snap["data"]["account"]["equity"] == "100000.00"
    assert snap["seq"] == ack["seq"]


@pytest.mark.gen_test(timeout=30)
async def test_symbol_and_channel_filters(folio: Running) -> None:
    """A connection filtered to MSFT orders sees MSFT orders only, and no account updates."""
    cookie = await folio.login()
    conn = await folio.connect(cookie)
    await subscribe(conn, ["orders"], symbols=["MSFT"])
    user = await folio.user_id("alice")
    await folio.push(user, "order_update", ORDER)
    await folio.push(user, "account_update", ACCOUNT)
    await folio.push(user, "order_update", {**ORDER, "symbol": "MSFT", "orderId": "m-1"})
    msg = await recv_type(conn, "order_update")
    assert msg["data"]["orderId"] == "m-1"
    assert await no_message(conn, 0.3)


@pytest.mark.gen_test(timeout=30)
async def test_later_subscribe_replaces_or_clears_the_symbol_filter(folio: Running) -> None:
    """symbols on a later subscribe replaces the filter, null clears it, absent keeps it."""
    cookie = await folio.login()
    conn = await folio.connect(cookie)
    user = await folio.user_id("alice")
    ack, _ = await subscribe(conn, ["orders"], symbols=["MSFT"])
    ack, _ = await subscribe(conn, ["orders"], symbols=["TSLA"])
    assert ack["data"]["symbols"] == ["TSLA"]
    ack, _ = await subscribe(conn, ["orders"])  # no key: the filter stays
    assert ack["data"]["symbols"] == ["TSLA"]
    await folio.push(user, "order_update", ORDER)  # AAPL: filtered out
    assert await no_message(conn, 0.3)
    ack, _ = await subscribe(conn, ["orders"], symbols=None)  # null: every symbol again
    assert ack["data"]["symbols"] is None
    await folio.push(user, "order_update", {**ORDER, "orderId": "after-clear"})
    msg = await recv_type(conn, "order_update")
    assert msg["data"]["orderId"] == "after-clear"


@pytest.mark.gen_test(timeout=30)
async def test_seq_increases_by_one_and_replay_after_reconnect(folio: Running) -> None:
    """seq is consecutive; reconnecting with lastSeq+epoch replays exactly the missed events."""
    cookie = await folio.login()
    user = await folio.user_id("alice")
    conn = await folio.connect(cookie)
    ack, _ = await subscribe(conn)
    base = ack["seq"]
    await folio.push(user, "order_update", ORDER)
    first = await recv_type(conn, "order_update")
    assert first["seq"] == base + 1
    epoch = first["epoch"]
    conn.close()
    for i in range(3):
        await folio.push(user, "order_update", {**ORDER, "orderId": f"missed-{i}"})
    conn2 = await folio.connect(cookie)
    ack2, snap = await subscribe(conn2, lastSeq=first["seq"], epoch=epoch)
    assert ack2["data"]["recovered"] is True and snap is None
    replayed = [await recv_type(conn2, "order_update") for _ in range(3)]
    assert [m["data"]["orderId"] for m in replayed] == ["missed-0", "missed-1", "missed-2"]
    assert [m["seq"] for m in replayed] == [base + 2, base + 3, base + 4]
    # an unknown epoch falls back to a snapshot
    conn3 = await folio.connect(cookie)
    ack3, snap3 = await subscribe(conn3, lastSeq=1, epoch="other")
    assert ack3["data"]["recovered"] is False and snap3 is not None


@pytest.mark.gen_test(timeout=30)
async def test_ping_pong_and_unsubscribe(folio: Running) -> None:
    """ping → pong; unsubscribe removes a channel and answers the remaining subscription."""
    conn = await folio.connect(await folio.login())
    await conn.write_message('{"type": "ping"}')
    assert (await recv_type(conn, "pong"))["data"] == {}
    await subscribe(conn, ["orders", "trades"])
    await conn.write_message('{"type": "unsubscribe", "channels": ["orders"]}')
    ack = await recv_type(conn, "subscribed")
    assert ack["data"]["channels"] == ["trades"]
    await folio.push(await folio.user_id("alice"), "order_update", ORDER)
    assert await no_message(conn, 0.3)


# -- bad input: error, connection stays open, nothing lost ---------------------------------------

BAD_INPUTS: list[tuple[Any, str, str]] = [
    ("not json", "invalid_json", "not valid JSON"),
    ("[1, 2]", "invalid_json", "JSON object"),
    ('{"type": "dance"}', "unknown_type", "'dance'"),
    ("{}", "unknown_type", "None"),
    ('{"type": "subscribe", "channels": ["gossip"]}', "unknown_channel", "'gossip'"),
    ('{"type": "subscribe", "channels": "orders"}', "invalid_field", "channels"),
    ('{"type": "subscribe", "channels": []}', "invalid_field", "channels"),
    (
        '{"type": "subscribe", "channels": ["orders"], "symbols": "AAPL"}',
        "invalid_field",
        "symbols",
    ),
    ('{"type": "subscribe", "channels": ["orders"], "symbols": [7]}', "invalid_field", "symbols"),
    (
        '{"type": "subscribe", "channels": ["orders"], "lastSeq": "x", "epoch": "e"}',
        "invalid_field",
        "lastSeq",
    ),
    (b"\x00\x01binary", "binary_not_supported", "binary"),
]


@pytest.mark.gen_test(timeout=60)
async def test_bad_input_gets_error_and_connection_stays(folio: Running) -> None:
    """Every malformed frame → an error naming the problem; the subscription keeps working."""
    conn = await folio.connect(await folio.login())
    await subscribe(conn, ["orders"])
    for frame, code, fragment in BAD_INPUTS:
        await conn.write_message(frame, binary=isinstance(frame, bytes))
        msg = await recv_type(conn, "error")
        assert msg["data"]["code"] == code, frame
        assert fragment in msg["data"]["message"], (frame, msg)
    await folio.push(await folio.user_id("alice"), "order_update", ORDER)
    assert (await recv_type(conn, "order_update"))["data"]["orderId"] == "c-1"


@pytest.mark.gen_test(timeout=30)
async def test_frame_over_64k_closes_1009(folio: Running) -> None:
    """A frame over 64 KiB closes the connection with 1009; the server keeps serving."""
    cookie = await folio.login()
    conn = await folio.connect(cookie)
    await conn.write_message(ujson.dumps({"type": "ping", "pad": "x" * (64 * 1024 + 1)}))
    assert await recv(conn) is None
    assert conn.close_code == 1009
    other = await folio.connect(cookie)
    await other.write_message('{"type": "ping"}')
    assert (await recv_type(other, "pong"))["type"] == "pong"


# -- heartbeat ----------------------------------------------------------------------------------


async def _silent_client(port: int, cookie: str) -> asyncio.StreamReader:
    """Open a WebSocket by hand and never answer anything (no pongs)."""
    reader, writer = await raw_ws(port, cookie)
    reader._writer = writer  # type: ignore[attr-defined]  # keep the socket open
    return reader


async def _read_close_code(reader: asyncio.StreamReader) -> int:
    """Read server frames until a close frame; return its code (RFC 6455 §5.5.1)."""
    while True:
        head = await reader.readexactly(2)
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await reader.readexactly(8), "big")
        payload = await reader.readexactly(length)
        if opcode == 0x8:
            return int.from_bytes(payload[:2], "big")


@pytest.mark.gen_test(timeout=30)
async def test_silent_connection_closed_after_heartbeat_timeout(make_server: Any) -> None:
    """A client that never answers pings is closed with 4000 and its slot is freed."""
    folio = await make_server(heartbeat_interval_s=0.2, heartbeat_timeout_s=0.6)
    cookie = await folio.login()
    reader = await _silent_client(folio.port, cookie)
    code = await asyncio.wait_for(_read_close_code(reader), wait(10))
    assert code == 4000
    manager = folio.server.manager
    for _ in range(100):
        if manager.hub.count() == 0:
            break
        await asyncio.sleep(0.02)
    assert manager.hub.count() == 0


@pytest.mark.gen_test(timeout=30)
async def test_answering_client_survives_heartbeats(make_server: Any) -> None:
    """A client that answers pings (tornado's client does) outlives several timeouts."""
    folio = await make_server(heartbeat_interval_s=0.1, heartbeat_timeout_s=0.3)
    conn = await folio.connect(await folio.login())
    await subscribe(conn, ["orders"])
    await asyncio.sleep(1.2)
    await conn.write_message('{"type": "ping"}')
    assert (await recv_type(conn, "pong"))["type"] == "pong"
    assert conn.close_code is None


# -- batching and ordering ------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_batching_coalesces_and_orders_flush_first(make_server: Any) -> None:
    """Position/account updates coalesce (latest per symbol wins); an order flushes them first."""
    folio = await make_server(
        batch_window_ms=5000
    )  # long window: only the order can release the batch
    conn = await folio.connect(await folio.login())
    ack, _ = await subscribe(conn)
    user = await folio.user_id("alice")
    await folio.push(user, "position_update", {**POSITION, "currentPrice": "189.00"})
    await folio.push(user, "position_update", {**POSITION, "symbol": "MSFT"})
    await folio.push(user, "position_update", {**POSITION, "currentPrice": "191.00"})
    await folio.push(user, "account_update", ACCOUNT)
    await folio.push(user, "account_update", {**ACCOUNT, "cash": "1.00"})
    assert await no_message(conn, 0.3)
    await folio.push(user, "order_update", ORDER)
    batch = await recv(conn)
    order = await recv(conn)
    assert batch is not None and order is not None
    assert batch["type"] == "batch" and order["type"] == "order_update"
    assert [p["symbol"] for p in batch["data"]["positions"]] == ["AAPL", "MSFT"]
    assert batch["data"]["positions"][0]["currentPrice"] == "191.00"
    assert batch["data"]["account"]["cash"] == "1.00"
    assert (batch["seq"], order["seq"]) == (ack["seq"] + 1, ack["seq"] + 2)


@pytest.mark.gen_test(timeout=30)
async def test_batch_window_flushes_by_timer(make_server: Any) -> None:
    """Without any order event, the PeriodicCallback sends the batch after the window."""
    folio = await make_server(batch_window_ms=50)
    conn = await folio.connect(await folio.login())
    await subscribe(conn, ["positions"])
    await folio.push(await folio.user_id("alice"), "position_update", POSITION)
    batch = await recv_type(conn, "batch")
    assert batch["data"]["positions"][0]["symbol"] == "AAPL"
    assert "account" not in batch["data"]


# -- feature flag ---------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_realtime_flag_off(make_server: Any) -> None:
    """ENABLE_REALTIME_PORTFOLIO=false: /ws/portfolio is 404, health says so, REST works."""
    folio = await make_server(enable_realtime_portfolio="false")
    cookie = await folio.login()
    with pytest.raises(HTTPClientError) as info:
        await folio.connect(cookie)
    assert info.value.code == 404
    assert await folio.get_json("/api/health") == (200, {**HEALTHY, "realtime": False})
    code, body = await folio.get_json("/api/account", cookie)
    assert code == 200 and body["account"]["cash"] == "100000.00"


@pytest.mark.gen_test(timeout=30)
async def test_expired_session_closes_open_socket_4001(make_server: Any) -> None:
    """When the session behind an open socket expires, the heartbeat closes it with 4001."""
    import time

    folio = await make_server(heartbeat_interval_s=0.1, heartbeat_timeout_s=5)
    conn = await folio.connect(await folio.login())
    await subscribe(conn, ["orders"])
    (client,) = folio.server.manager.hub.all()
    assert client.expires_at > time.time() + 3000  # SESSION_TTL_S default: 12 h
    client.expires_at = time.time() - 1
    assert await recv(conn, 5) is None
    assert (conn.close_code, conn.close_reason) == (4001, "Session expired")
    assert folio.server.manager.hub.count() == 0


@pytest.mark.gen_test(timeout=60)
async def test_client_that_stops_reading_is_closed_4002(folio: Running, monkeypatch: Any) -> None:
    """Back-pressure: when frames pile up unread past the limit, the connection is closed (4002)."""
    import handlers.ws

    monkeypatch.setattr(handlers.ws, "MAX_BUFFERED_BYTES", 64 * 1024)
    cookie = await folio.login()
    # A client that subscribes and then never reads, with a tiny receive buffer.
    _, writer = await raw_ws(folio.port, cookie, rcvbuf=4096, subscribe=["orders"])
    manager = folio.server.manager
    (client,) = [c for c in manager.hub.all()]
    for _ in range(200):
        if client.subscription.channels:
            break
        await asyncio.sleep(0.01)
    user = await folio.user_id("alice")
    big = {**ORDER, "status": "x" * 4000}
    for i in range(5000):
        manager.publisher.emit(user, "order_update", {**big, "orderId": f"o-{i}"})
        if i % 100 == 0:
            await manager.wait_idle()
            await asyncio.sleep(0)
        if not manager.hub.count():
            break
    await manager.wait_idle()
    assert manager.hub.count() == 0
    assert manager.metrics.disconnects.labels(code="4002")._value.get() == 1
    writer.close()
