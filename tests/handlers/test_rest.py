"""REST endpoints, login/logout, the internal hook and admin views over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
import ujson

from tests.conftest import HEALTHY, TOKEN, Running, recv_type, subscribe
from tests.handlers.test_ws import ACCOUNT, ORDER, POSITION


@pytest.mark.gen_test(timeout=30)
async def test_login_sets_secure_by_default_cookie(folio: Running) -> None:
    """Login → 200 with an HttpOnly, SameSite=Lax session cookie holding an HS256 JWT."""
    resp = await folio.request("POST", "/api/login", {"username": "alice", "password": "demo"})
    assert resp.code == 200
    assert ujson.loads(resp.body) == {
        "userId": await folio.user_id("alice"),
        "username": "alice",
        "isAdmin": False,
    }
    cookie = next(h for h in resp.headers.get_list("Set-Cookie") if h.startswith("session="))
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=lax" in lowered and "path=/" in lowered
    assert "secure" not in lowered.replace("samesite", "")  # plain http here
    import jwt

    token = cookie.split(";", 1)[0].split("=", 1)[1]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(claims) == {"sub", "sid", "iat", "exp"}


@pytest.mark.gen_test(timeout=30)
async def test_login_errors(folio: Running) -> None:
    """Wrong password, unknown user → 401 JSON; malformed bodies → 400 naming the field."""
    for body in ({"username": "alice", "password": "nope"}, {"username": "zed", "password": "x"}):
        resp = await folio.request("POST", "/api/login", body)
        assert resp.code == 401
        assert ujson.loads(resp.body)["error"]["code"] == "invalid_credentials"
    cases: list[tuple[Any, str]] = [
        ("{not json", "invalid_json"),
        ([1], "invalid_json"),
        ({"password": "demo"}, "username"),
        ({"username": "alice", "password": 5}, "password"),
    ]
    for body, fragment in cases:
        raw = body if isinstance(body, str) else ujson.dumps(body)
        resp = await folio.request(
            "POST", "/api/login", raw, headers={"Content-Type": "application/json"}
        )
        assert resp.code == 400
        err = ujson.loads(resp.body)["error"]
        assert fragment in err["code"] + err["message"]


@pytest.mark.gen_test(timeout=30)
async def test_login_from_foreign_origin_refused(folio: Running) -> None:
    """A cross-site login POST is refused (CSRF defence)."""
    resp = await folio.request(
        "POST",
        "/api/login",
        {"username": "alice", "password": "demo"},
        headers={"Origin": "https://evil.example"},
    )
    assert resp.code == 403


@pytest.mark.gen_test(timeout=30)
async def test_rest_views_need_a_session_and_answer_with_seq(folio: Running) -> None:
    """/api/positions|orders|account|trades|me: 401 without a cookie; shapes with seq and epoch."""
    for path in ("/api/positions", "/api/orders", "/api/account", "/api/trades", "/api/me"):
        code, body = await folio.get_json(path)
        assert code == 401 and body["error"]["code"] == "unauthorized"
    cookie = await folio.login("bob")
    bob = await folio.user_id("bob")
    code, body = await folio.get_json("/api/account", cookie)
    assert code == 200
    assert body["userId"] == bob and isinstance(body["seq"], int) and body["epoch"]
    assert body["account"]["equity"] == "100000.00"
    assert body["account"]["dayPnl"] == "0.00"
    for path, key in (
        ("/api/positions", "positions"),
        ("/api/orders", "orders"),
        ("/api/trades", "trades"),
    ):
        code, body = await folio.get_json(path, cookie)
        assert code == 200 and body[key] == []
    assert await folio.get_json("/api/me", cookie) == (
        200,
        {"userId": bob, "username": "bob", "isAdmin": False},
    )


@pytest.mark.gen_test(timeout=30)
async def test_health(folio: Running) -> None:
    """/api/health needs no session."""
    assert await folio.get_json("/api/health") == (200, HEALTHY)


@pytest.mark.gen_test(timeout=30)
async def test_unknown_api_path_is_json_404_not_the_spa(folio: Running) -> None:
    """/api/nope is a JSON 404; a client route like /dashboard gets the SPA (or 404 if unbuilt)."""
    code, body = await folio.get_json("/api/nope")
    assert code == 404 and body["error"]["code"] == "not_found"


# -- internal hook --------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_hook_accepts_valid_events_for_each_type(folio: Running) -> None:
    """Each of the four types is accepted (202) and reaches the user's socket."""
    user = await folio.user_id("alice")
    conn = await folio.connect(await folio.login())
    await subscribe(conn)
    trade = {
        "executionId": "e-1",
        "orderId": "c-1",
        "symbol": "aapl",
        "side": "buy",
        "qty": "10",
        "price": "187.32",
        "timestamp": "2026-11-25T14:31:02Z",
    }
    for type_, data in (
        ("order_update", ORDER),
        ("trade_executed", trade),
        ("position_update", POSITION),
        ("account_update", ACCOUNT),
    ):
        resp = await folio.push(user, type_, data)
        assert resp.code == 202 and ujson.loads(resp.body) == {"accepted": True}
        msg = await recv_type(conn, type_)
        assert msg["userId"] == user
    # symbols are normalised
    assert trade["symbol"] == "aapl"


HOOK_BAD: list[tuple[Any, str]] = [
    ({"type": "order_update", "data": ORDER}, "userId"),
    ({"userId": "abc", "type": "order_update", "data": ORDER}, "userId"),
    ({"userId": "1", "type": "gossip", "data": {}}, "type"),
    ({"userId": "1", "type": "order_update", "data": "x"}, "data"),
    ({"userId": "1", "type": "order_update", "data": {**ORDER, "side": "hold"}}, "data.side"),
    (
        {"userId": "1", "type": "position_update", "data": {**POSITION, "quantity": 10}},
        "data.quantity",
    ),
    (
        {"userId": "1", "type": "position_update", "data": {**POSITION, "quantity": "NaN"}},
        "data.quantity",
    ),
    (
        {"userId": "1", "type": "account_update", "data": {**ACCOUNT, "timestamp": "yesterday"}},
        "data.timestamp",
    ),
    (
        {
            "userId": "1",
            "type": "account_update",
            "data": {k: v for k, v in ACCOUNT.items() if k != "cash"},
        },
        "data.cash",
    ),
]


@pytest.mark.gen_test(timeout=30)
async def test_hook_rejects_bad_bodies_naming_the_field(folio: Running) -> None:
    """Bad hook bodies → 400 naming the field; nothing is published; the server keeps going."""
    user = await folio.user_id("alice")
    conn = await folio.connect(await folio.login())
    ack, _ = await subscribe(conn)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for body, field in HOOK_BAD:
        resp = await folio.request("POST", "/internal/events", body, headers=headers)
        assert resp.code == 400, body
        assert field in ujson.loads(resp.body)["error"]["message"], (field, resp.body)
    resp = await folio.request("POST", "/internal/events", b"{oops", headers=headers)
    assert resp.code == 400
    resp = await folio.push("999", "order_update", ORDER)
    assert resp.code == 404
    # nothing was published: the next accepted event has the next seq
    await folio.push(user, "order_update", ORDER)
    msg = await recv_type(conn, "order_update")
    assert msg["seq"] == ack["seq"] + 1


@pytest.mark.gen_test(timeout=30)
async def test_hook_needs_the_bearer_token(folio: Running) -> None:
    """No token, wrong token, wrong scheme → 401."""
    body = {"userId": "1", "type": "order_update", "data": ORDER}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        resp = await folio.request("POST", "/internal/events", body, headers=headers)
        assert resp.code == 401


@pytest.mark.gen_test(timeout=30)
async def test_hook_disabled_without_token(make_server: Any) -> None:
    """With INTERNAL_TOKEN empty the hook refuses everything."""
    folio = await make_server(internal_token="")
    resp = await folio.request(
        "POST",
        "/internal/events",
        {"userId": "1", "type": "order_update", "data": ORDER},
        headers={"Authorization": "Bearer "},
    )
    assert resp.code == 401


# -- admin ----------------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_admin_stats_and_metrics(folio: Running) -> None:
    """Admin-only JSON stats with connections and latency; Prometheus text for admin or token."""
    trader = await folio.login("alice")
    code, _ = await folio.get_json("/api/admin/websocket-stats", trader)
    assert code == 403
    conn = await folio.connect(trader)
    await subscribe(conn, ["orders"])
    await folio.push(await folio.user_id("alice"), "order_update", ORDER)
    await recv_type(conn, "order_update")
    admin = await folio.login("admin", "admin")
    code, stats = await folio.get_json("/api/admin/websocket-stats", admin)
    assert code == 200
    assert stats["activeConnections"] == 1
    assert stats["latencyMs"]["count"] >= 1 and stats["latencyMs"]["p95"] is not None
    # The lag alert follows the measured lag (which depends on how busy the machine is).
    lag_high = (stats["loopLagMs"]["p99"] or 0) > 100
    assert stats["alerts"] == {
        "disconnectRateHigh": False,
        "latencyP95High": False,
        "loopLagP99High": lag_high,
        "brokerStale": False,
    }
    assert stats["alertThresholds"]["latencyP95High"]["above"] == 1000
    assert set(stats["loopLagMs"]) == {"p50", "p95", "p99", "max"}
    alice, bob = await folio.user_id("alice"), await folio.user_id("bob")
    assert stats["bridge"]["tradingStreams"] == {alice: True, bob: True}
    assert stats["bridge"]["demo"] is True and stats["bridge"]["syncs"] >= 2
    assert stats["redis"]["role"] == "all" and stats["redis"]["fanout"] is None
    assert stats["redis"]["accountsOwned"] == 2  # alice's and bob's, no Redis: all of them
    resp = await folio.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.code == 200 and b"folio_ws_connections 1.0" in resp.body
    resp = await folio.request("GET", "/metrics", cookie=trader)
    assert resp.code == 403


@pytest.mark.gen_test(timeout=60)
async def test_whole_server_on_postgresql(make_server: Any) -> None:
    """DATABASE_URL=postgresql://…: migrations, demo seeding, login, REST and the socket work."""
    from tests.conftest import postgres_schema_url

    with postgres_schema_url() as url:
        folio = await make_server(database_url=url)
        assert folio.server.store is not None and folio.server.store.dialect == "postgres"
        cookie = await folio.login("bob")
        code, body = await folio.get_json("/api/account", cookie)
        assert code == 200 and body["account"]["cash"] == "100000.00"
        conn = await folio.connect(cookie)
        ack, snap = await subscribe(conn, ["account"])
        assert snap is not None and snap["data"]["account"]["equity"] == "100000.00"
        await folio.request("POST", "/api/logout", cookie=cookie)
        assert (await folio.get_json("/api/me", cookie))[0] == 401
        await folio.server.stop()


@pytest.mark.gen_test(timeout=30)
async def test_cookie_is_secure_behind_an_https_proxy(make_server: Any) -> None:
    """X-Forwarded-Proto: https from a TRUSTED_PROXIES peer → the session cookie is Secure."""
    folio = await make_server(trusted_proxies="127.0.0.1")
    resp = await folio.request(
        "POST",
        "/api/login",
        {"username": "alice", "password": "demo"},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert resp.code == 200
    cookie = next(h for h in resp.headers.get_list("Set-Cookie") if h.startswith("session="))
    assert "; Secure" in cookie and "HttpOnly" in cookie


@pytest.mark.gen_test(timeout=30)
async def test_forwarding_headers_ignored_without_trusted_proxies(folio: Running) -> None:
    """Without TRUSTED_PROXIES, X-Forwarded-Proto/X-Real-IP from any client change nothing."""
    resp = await folio.request(
        "POST",
        "/api/login",
        {"username": "alice", "password": "demo"},
        headers={"X-Forwarded-Proto": "https", "X-Real-IP": "203.0.113.9"},
    )
    assert resp.code == 200
    cookie = next(h for h in resp.headers.get_list("Set-Cookie") if h.startswith("session="))
    assert "; Secure" not in cookie


@pytest.mark.gen_test(timeout=30)
async def test_oversized_body_refused_and_server_keeps_serving(folio: Running) -> None:
    """A POST body over 1 MiB is refused before it is read; the next request works."""
    huge = b'{"username": "' + b"a" * (2 * 1024 * 1024) + b'", "password": "x"}'
    try:
        resp = await folio.request(
            "POST", "/api/login", huge, headers={"Content-Type": "application/json"}
        )
        assert resp.code in (400, 413, 599)
    except Exception as exc:  # the server may close the connection while we still send
        assert "Stream closed" in str(exc) or "Connection" in str(exc), exc
    assert await folio.get_json("/api/health") == (200, HEALTHY)
