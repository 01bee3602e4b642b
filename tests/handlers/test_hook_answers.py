"""``POST /internal/events`` on the main port (handlers/internal.py, ``hook_answer``).

It must answer as the Application answers JSON: status, JSON body, headers, keep-alive, the
access-log line; a failure inside is a 500 for that request only; other methods on the path are
the Application's 405. (The internal listener is checked against these answers in
test_internal_listener.py.)
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest
import ujson

from handlers import internal
from tests.conftest import TOKEN, Running
from tests.handlers.test_ws import POSITION, recv_type, subscribe

SECURITY = {
    "Content-Type": "application/json; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _event(user_id: str) -> dict[str, Any]:
    return {"userId": user_id, "type": "position_update", "data": POSITION}


async def _post(folio: Running, body: Any, path: str = "/internal/events", **headers: str) -> Any:
    return await folio.request(
        "POST", path, body, headers={"Authorization": f"Bearer {TOKEN}", **headers}
    )


@pytest.mark.gen_test(timeout=30)
async def test_answers_and_headers_match_the_application_s(make_server: Any) -> None:
    folio = await make_server()
    alice = await folio.user_id("alice")
    accepted = await _post(folio, _event(alice))
    assert accepted.code == 202 and ujson.loads(accepted.body) == {"accepted": True}
    bad = await _post(folio, {"userId": alice, "type": "position_update", "data": {}})
    unknown = await _post(folio, _event("987654321"))
    no_token = await folio.request("POST", "/internal/events", _event(alice))
    not_json = await _post(folio, b"{nope")
    with_query = await _post(folio, _event(alice), path="/internal/events?source=test")
    assert [r.code for r in (bad, unknown, no_token, not_json, with_query)] == [
        400,
        404,
        401,
        400,
        202,
    ]
    assert ujson.loads(bad.body)["error"]["code"] == "invalid_field"
    assert "data.symbol: is required" in ujson.loads(bad.body)["error"]["message"]
    assert ujson.loads(unknown.body)["error"] == {
        "code": "unknown_user",
        "message": "userId: no user 987654321",
    }
    assert ujson.loads(no_token.body)["error"]["code"] == "unauthorized"
    assert ujson.loads(not_json.body)["error"]["code"] == "invalid_json"
    # The same headers as a JSON answer of the Application (here /api/health's).
    app_answer = await folio.request("GET", "/api/health")
    for response in (accepted, bad, unknown, no_token, app_answer):
        for name, value in SECURITY.items():
            assert response.headers.get(name) == value, (response.code, name)
        assert response.headers.get("Content-Security-Policy", "").startswith("default-src 'none'")
        assert response.headers.get("Date") and response.headers.get("Server")
    # Other methods on the path still reach the Application's handler.
    get = await folio.request("GET", "/internal/events")
    assert get.code == 405


@pytest.mark.gen_test(timeout=30)
async def test_events_flow_to_the_trader_over_one_keep_alive_connection(make_server: Any) -> None:
    """Raw HTTP/1.1 keep-alive: ten requests on one socket, ten answers, ten events in order."""
    folio = await make_server(batch_window_ms=0)
    alice = await folio.user_id("alice")
    conn = await folio.connect(await folio.login())
    await subscribe(conn, ["positions"])
    reader, writer = await asyncio.open_connection("127.0.0.1", folio.port)
    try:
        for n in range(10):
            body = ujson.dumps(
                {
                    "userId": alice,
                    "type": "position_update",
                    "data": {**POSITION, "quantity": str(n + 1)},
                }
            ).encode()
            writer.write(
                b"POST /internal/events HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 202 Accepted\r\n"), head
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            assert await reader.readexactly(length) == b'{"accepted":true}'
        quantities = [
            (await recv_type(conn, "position_update"))["data"]["quantity"] for _ in range(10)
        ]
        assert quantities == [str(n + 1) for n in range(10)]
    finally:
        writer.close()


@pytest.mark.gen_test(timeout=30)
async def test_access_log_line_is_the_application_s(
    make_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    folio = await make_server()
    alice = await folio.user_id("alice")
    with caplog.at_level(logging.INFO, logger="tornado.access"):
        await _post(folio, _event(alice))
        await _post(folio, _event("987654321"))
    lines = [
        r
        for r in caplog.records
        if r.name == "tornado.access" and "/internal/events" in r.getMessage()
    ]
    assert [r.levelno for r in lines] == [logging.INFO, logging.WARNING]
    assert lines[0].getMessage().startswith("202 POST /internal/events (127.0.0.1) ")
    assert lines[1].getMessage().endswith(": unknown_user: userId: no user 987654321")
    assert (lines[1].status, lines[1].errorCode) == (404, "unknown_user")  # type: ignore[attr-defined]


@pytest.mark.gen_test(timeout=30)
async def test_a_failure_inside_is_a_500_for_that_request_only(
    make_server: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folio = await make_server()
    alice, bob = await folio.user_id("alice"), await folio.user_id("bob")
    real = internal.push_event

    async def flaky(ctx: Any, authorization: str, body: bytes | None) -> None:
        if ujson.loads(body or b"{}").get("userId") == bob:
            raise RuntimeError("boom")
        await real(ctx, authorization, body)

    monkeypatch.setattr(internal, "push_event", flaky)
    with caplog.at_level(logging.ERROR):
        failed = await _post(folio, _event(bob))
    assert failed.code == 500
    assert ujson.loads(failed.body) == {
        "error": {"code": "internal_error", "message": "internal error"}
    }
    assert [r.getMessage() for r in caplog.records if r.exc_info] == [
        "POST /internal/events failed"
    ]
    assert "boom" not in failed.body.decode()  # no details leak to the caller
    assert (await _post(folio, _event(alice))).code == 202  # everyone else is still served


@pytest.mark.gen_test(timeout=30)
async def test_a_caller_that_hangs_up_early_harms_nobody(
    make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    folio = await make_server()
    alice = await folio.user_id("alice")
    gate = asyncio.Event()
    real = internal.push_event

    async def slow(ctx: Any, authorization: str, body: bytes | None) -> None:
        await gate.wait()
        await real(ctx, authorization, body)

    monkeypatch.setattr(internal, "push_event", slow)
    body = ujson.dumps(_event(alice)).encode()
    sock = socket.create_connection(("127.0.0.1", folio.port))
    sock.sendall(
        f"POST /internal/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await asyncio.sleep(0.2)
    sock.close()  # gone before the answer
    await asyncio.sleep(0.1)
    gate.set()
    monkeypatch.setattr(internal, "push_event", real)
    assert (await _post(folio, _event(alice))).code == 202


@pytest.mark.gen_test(timeout=30)
async def test_a_body_over_the_limit_is_refused_before_the_hook(make_server: Any) -> None:
    folio = await make_server()
    reader, writer = await asyncio.open_connection("127.0.0.1", folio.port)
    try:
        writer.write(
            b"POST /internal/events HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {2 * 1024 * 1024}\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.read(200), 10)
        assert head.startswith(b"HTTP/1.1 400") or head == b""  # refused, never accepted
    finally:
        writer.close()
    alice = await folio.user_id("alice")
    assert (await _post(folio, _event(alice))).code == 202
