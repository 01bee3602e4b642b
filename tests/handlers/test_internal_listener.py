"""The internal listener (``INTERNAL_PORT``, handlers/internal_listener.py).

It must answer the hook exactly as the main port does, serve keep-alive and pipelined requests
in order, and refuse what a stranger could abuse (huge bodies, endless headers, slow or idle
connections, too many connections, garbage) with a clear status, while every other producer's
events still arrive.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import ujson

from handlers.internal_listener import InternalListener
from tests.conftest import TOKEN, Running, wait
from tests.handlers.test_ws import POSITION, recv_type, subscribe
from tests.security.helpers import Bystander

SECURITY = (
    "Content-Type",
    "Cache-Control",
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Server",
    "Date",
)


def request(
    body: Any, *, path: str = "/internal/events", extra: str = "", token: str = TOKEN
) -> bytes:
    data = body if isinstance(body, bytes) else ujson.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\n{extra}Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait(10))
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(": ")
            headers[name] = value
    body = await reader.readexactly(int(headers["Content-Length"]))
    return status, headers, body


async def start(make_server: Any, **overrides: Any) -> tuple[Running, int]:
    folio = await make_server(internal_port="0", **overrides)
    assert folio.server.internal is not None
    return folio, folio.server.internal.port


def event(user_id: str, **data: Any) -> dict[str, Any]:
    return {"userId": user_id, "type": "position_update", "data": {**POSITION, **data}}


@pytest.mark.gen_test(timeout=30)
async def test_answers_are_the_main_port_s(make_server: Any) -> None:
    folio, port = await start(make_server)
    alice = await folio.user_id("alice")
    cases = [
        request(event(alice)),
        request({"userId": alice, "type": "position_update", "data": {}}),
        request(event("987654321")),
        request(event(alice), token="wrong"),
        request(b"{nope"),
    ]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for raw in cases:
            writer.write(raw)
            status, headers, body = await read_answer(reader)
            main = await folio.request(
                "POST",
                "/internal/events",
                raw.split(b"\r\n\r\n", 1)[1],
                headers={
                    "Authorization": raw.split(b"Authorization: ")[1].split(b"\r\n")[0].decode()
                },
            )
            assert (status, ujson.loads(body)) == (main.code, ujson.loads(main.body))
            for name in SECURITY:
                if name not in ("Date",):
                    assert headers.get(name) == main.headers.get(name), name
            assert headers["Date"]
    finally:
        writer.close()


@pytest.mark.gen_test(timeout=30)
async def test_pipelined_requests_are_answered_in_order_and_events_arrive_in_order(
    make_server: Any,
) -> None:
    folio, port = await start(make_server, batch_window_ms="0")
    alice = await folio.user_id("alice")
    conn = await folio.connect(await folio.login())
    await subscribe(conn, ["positions"])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # 40 requests in one write (over MAX_PIPELINED: reading pauses, then resumes)
        writer.write(b"".join(request(event(alice, quantity=str(n + 1))) for n in range(40)))
        answers = [await read_answer(reader) for _ in range(40)]
        assert [status for status, _, _ in answers] == [202] * 40
        got = [(await recv_type(conn, "position_update"))["data"]["quantity"] for _ in range(40)]
        assert got == [str(n + 1) for n in range(40)]
    finally:
        writer.close()


@pytest.mark.gen_test(timeout=30)
async def test_other_paths_and_methods(make_server: Any) -> None:
    _, port = await start(make_server)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request({}, path="/api/login"))
        status, _, body = await read_answer(reader)
        assert status == 404 and ujson.loads(body)["error"]["code"] == "not_found"
        writer.write(b"GET /internal/events HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = await read_answer(reader)
        assert status == 405 and headers["Allow"] == "POST"
        assert ujson.loads(body)["error"]["code"] == "method_not_allowed"
    finally:
        writer.close()


@pytest.mark.gen_test(timeout=30)
async def test_http_1_0_and_expect_100_continue(make_server: Any) -> None:
    folio, port = await start(make_server)
    alice = await folio.user_id("alice")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = ujson.dumps(event(alice)).encode()
    writer.write(
        b"POST /internal/events HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {TOKEN}\r\nExpect: 100-continue\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait(5)) == (
        b"HTTP/1.1 100 Continue\r\n\r\n"
    )
    writer.write(body)
    assert (await read_answer(reader))[0] == 202
    writer.write(request(event(alice)).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
    status, headers, _ = await read_answer(reader)
    assert (status, headers.get("Connection")) == (202, "close")
    assert await asyncio.wait_for(reader.read(), wait(5)) == b""  # closed after the answer
    writer.close()


@pytest.mark.gen_test(timeout=60)
async def test_abuse_is_refused_and_nobody_else_is_harmed(make_server: Any) -> None:
    folio, port = await start(make_server, idle_connection_timeout_s="1", body_timeout_s="1")
    bystander = await Bystander(folio).start()
    alice = await folio.user_id("alice")
    refused = [
        (request(b"x" * (1024 * 1024 + 1)), 413),  # over MAX_BODY_BYTES
        (b"POST /internal/events HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),
        (b"POST /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"\x16\x03\x01 not http at all\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 400),
    ]
    for raw, want in refused:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        status, _, body = await read_answer(reader)
        assert status == want, (raw[:40], body)
        assert await asyncio.wait_for(reader.read(), wait(5)) == b""  # and closed
        writer.close()
    # a slow sender (half a request) and an idle one are closed after 1 s
    slow_r, slow_w = await asyncio.open_connection("127.0.0.1", port)
    slow_w.write(request(event(alice))[:30])
    idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
    await bystander.expect_events(5)  # meanwhile everyone else is served
    assert await asyncio.wait_for(slow_r.read(), wait(5)) == b""
    assert await asyncio.wait_for(idle_r.read(), wait(5)) == b""
    slow_w.close()
    idle_w.close()
    await bystander.expect_events(5)
    bystander.assert_open()
    # and the listener still accepts events
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request(event(alice)))
    assert (await read_answer(reader))[0] == 202
    writer.close()


@pytest.mark.gen_test(timeout=30)
async def test_connections_over_the_cap_are_closed_at_once(make_server: Any) -> None:
    folio = await make_server()
    assert folio.server.internal is None  # INTERNAL_PORT unset: no second listener
    assert folio.server.ctx is not None
    listener = InternalListener(
        folio.server.ctx, max_body=1024, idle_timeout_s=30, body_timeout_s=30, max_connections=2
    )
    port = await listener.start("127.0.0.1", 0)
    try:
        kept = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), wait(5)) == b""  # the third: closed
        writer.close()
        assert listener.connections() == 2
        alice = await folio.user_id("alice")
        kept[0][1].write(request(event(alice)))
        assert (await read_answer(kept[0][0]))[0] == 202  # the admitted ones are served
        for _, w in kept:
            w.close()
    finally:
        await listener.stop()
