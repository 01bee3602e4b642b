"""WebSocket abuse (issue 7, item 6–7): message floods, replay amplification, client close codes,
Origin, security headers. Another trader (bob) must keep his stream through each."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import ujson
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from tests.conftest import Running, recv, recv_type, subscribe, wait
from tests.handlers.test_ws import ORDER
from tests.security.helpers import Bystander, raw_websocket, read_frames_until_close, ws_frame


@pytest.mark.gen_test(timeout=60)
async def test_message_flood_gets_rate_limited_then_1008(folio: Running) -> None:
    """300 frames at once: about WS_MESSAGE_BURST (200) answered, one `rate_limited` error, then
    close 1008; bob is untouched."""
    bob = await Bystander(folio).start()
    conn = await folio.connect(await folio.login("alice"))
    for _ in range(300):
        conn.write_message('{"type": "ping"}')
    types: list[str] = []
    while (msg := await recv(conn, 10)) is not None:
        types.append(msg["type"] if msg["type"] != "error" else msg["data"]["code"])
    assert conn.close_code == 1008
    assert conn.close_reason == "Rate limit exceeded"
    assert types.count("rate_limited") == 1
    assert 200 <= types.count("pong") < 260, types.count("pong")
    assert types.index("rate_limited") >= 200
    await bob.expect_events(5)
    bob.assert_open()


@pytest.mark.gen_test(timeout=60)
async def test_a_client_refused_again_soon_after_the_warning_is_closed(make_server: Any) -> None:
    """Warned, then one message accepted (a token refilled), then refused again within 10 s of
    the warning: closed 1008. An accepted message does not reset the warning, so a client
    sending faster than the refill rate cannot go on forever."""
    folio: Running = await make_server(ws_message_rate=2, ws_message_burst=5)
    bob = await Bystander(folio).start()
    conn = await folio.connect(await folio.login("alice"))
    for _ in range(6):  # 5 answered, the 6th refused: warned
        conn.write_message('{"type": "ping"}')
    got = [await recv(conn, 10) for _ in range(6)]
    kinds = [m["type"] if m["type"] != "error" else m["data"]["code"] for m in got if m]
    assert kinds == ["pong"] * 5 + ["rate_limited"]
    await asyncio.sleep(0.7)  # one token back
    conn.write_message('{"type": "ping"}')
    msg = await recv(conn, 10)
    assert msg is not None and msg["type"] == "pong"
    conn.write_message('{"type": "ping"}')  # over the limit again, 0.7 s after the warning
    assert await recv(conn, 10) is None
    assert (conn.close_code, conn.close_reason) == (1008, "Rate limit exceeded")
    await bob.expect_events(5)
    bob.assert_open()


@pytest.mark.gen_test(timeout=60)
async def test_replay_amplification_is_bounded(folio: Running) -> None:
    """150 `subscribe` frames with lastSeq over 100 events of history: at most a few replays are
    sent (one in flight, burst 3 then 1/s); the rest get `replay_in_progress`."""
    bob = await Bystander(folio).start()
    cookie = await folio.login("alice")
    alice = await folio.user_id("alice")
    conn = await folio.connect(cookie)
    _, snapshot = await subscribe(conn, ["orders"])
    assert snapshot is not None
    first, epoch = snapshot["seq"], snapshot["epoch"]
    for n in range(100):
        assert (await folio.push(alice, "order_update", {**ORDER, "orderId": f"h{n}"})).code == 202
        await recv_type(conn, "order_update")
    ask = ujson.dumps(
        {"type": "subscribe", "channels": ["orders"], "lastSeq": first, "epoch": epoch}
    )
    for _ in range(150):
        conn.write_message(ask)
    conn.write_message('{"type": "ping"}')
    replays = errors = received_bytes = 0
    while True:
        raw = await asyncio.wait_for(conn.read_message(), wait(10))
        assert raw is not None
        received_bytes += len(raw)
        msg = ujson.loads(raw)
        if msg["type"] == "subscribed":
            assert msg["data"]["recovered"]
            replays += 1
        elif msg["type"] == "error":
            assert msg["data"]["code"] == "replay_in_progress"
            errors += 1
        elif msg["type"] == "pong":
            break
    assert 1 <= replays <= 6, replays
    assert replays + errors == 150
    one_replay = 100 * len(ujson.dumps({**ORDER, "orderId": "h00"}))
    assert received_bytes <= 8 * one_replay, (received_bytes, one_replay)  # was ~150x
    assert conn.close_code is None
    await bob.expect_events(3)


@pytest.mark.gen_test(timeout=60)
async def test_client_close_codes_map_to_bounded_metric_labels(folio: Running) -> None:
    """Unregistered but legal client codes are counted as `other`; 65535 is a protocol error
    (1002), never echoed; no label per client-chosen code."""
    cookies = [await folio.login("alice") for _ in range(4)]
    metrics = folio.server.manager.metrics  # type: ignore[union-attr]
    for cookie, code in zip(cookies[:3], (3000, 4500, 4999), strict=True):
        reader, writer = await raw_websocket(folio.port, cookie)
        writer.write(ws_frame(0x8, code.to_bytes(2, "big") + b"bye"))
        assert (await read_frames_until_close(reader))[0] == code  # echoed (RFC 6455 §5.5.1)
        writer.close()
    reader, writer = await raw_websocket(folio.port, cookies[3])
    writer.write(ws_frame(0x8, (65535).to_bytes(2, "big")))
    assert (await read_frames_until_close(reader))[0] == 1002
    writer.close()
    for _ in range(100):
        if folio.server.manager.hub.count() == 0:  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.02)
    text = metrics.exposition().decode()
    assert metrics.disconnects.labels(code="other")._value.get() == 3
    assert metrics.disconnects.labels(code="1002")._value.get() == 1
    for code in ("3000", "4500", "4999", "65535"):
        assert f'code="{code}"' not in text


@pytest.mark.gen_test(timeout=30)
async def test_origin_must_match_exactly(folio: Running) -> None:
    own = f"http://127.0.0.1:{folio.port}"
    cookie = await folio.login("alice")
    for origin in (own + "/", own.upper(), "null", own + ".evil.example", "http://127.0.0.1"):
        with pytest.raises(HTTPClientError) as info:
            await folio.connect(cookie, origin=origin)
        assert info.value.code == 403, origin
        resp = await folio.request("POST", "/api/logout", cookie=cookie, headers={"Origin": origin})
        assert resp.code == 403, origin
    # Neither Host nor Sec-Fetch-Site can widen it (Tornado 6.6 skips check_origin when the
    # Origin matches Host or Sec-Fetch-Site says same-origin: a DNS-rebinding page passes both)
    rebound = f"http://evil.example:{folio.port}"
    for extra in ({"Host": f"evil.example:{folio.port}"}, {"Sec-Fetch-Site": "same-origin"}):
        req = HTTPRequest(
            folio.ws_url, headers={"Cookie": f"session={cookie}", "Origin": rebound, **extra}
        )
        with pytest.raises(HTTPClientError) as info:
            await websocket_connect(req)
        assert info.value.code == 403, extra
    conn = await folio.connect(cookie, origin=own)
    conn.close()


@pytest.mark.gen_test(timeout=30)
async def test_security_headers_on_html_json_and_assets(folio: Running) -> None:
    page = await folio.request("GET", "/")
    assert page.code == 200
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp and "'unsafe-inline'" not in csp
    responses = [
        page,
        await folio.request("GET", "/trades"),
        await folio.request("GET", "/api/me"),  # 401 JSON
        await folio.request("GET", "/api/health"),
        await folio.request("GET", "/api/nope"),  # 404 JSON
        await folio.request("GET", "/assets/does-not-exist.js"),
        await folio.request("GET", "/ws/portfolio"),  # 401 before any upgrade
    ]
    for resp in responses:
        headers = resp.headers
        assert headers["X-Frame-Options"] == "DENY", resp.effective_url
        assert headers["X-Content-Type-Options"] == "nosniff", resp.effective_url
        assert headers["Referrer-Policy"] == "same-origin", resp.effective_url
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], resp.effective_url
    assert responses[2].headers["Content-Security-Policy"].startswith("default-src 'none'")


@pytest.mark.gen_test(timeout=30)
async def test_expired_sessions_are_purged(make_server: Any) -> None:
    """The periodic purge deletes expired and long-revoked sessions from the store."""
    folio: Running = await make_server(session_purge_interval_s=1)
    store = folio.server.store
    assert store is not None
    alice = await store.get_user_by_name("alice")
    assert alice is not None
    await store.create_session(alice.id, "old-session", -10)  # already expired
    cookie = await folio.login("alice")
    assert await store.get_session("old-session") is not None
    for _ in range(int(wait(5) / 0.05)):
        if await store.get_session("old-session") is None:
            break
        await asyncio.sleep(0.05)
    assert await store.get_session("old-session") is None
    assert (await folio.get_json("/api/me", cookie))[0] == 200  # live sessions stay
