"""RFC 6455 strictness (issue 7, item 8): 1002/1007 on real sockets, via handlers/ws_strict.py.

Also pins the Tornado internals the mixin relies on (tornado >= 6.5, < 7).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import tornado
import ujson
from tornado.websocket import WebSocketProtocol13

from handlers.ws_strict import StrictFramesMixin, StrictWebSocketProtocol13, close_code_allowed
from tests.conftest import Running, wait
from tests.security.helpers import Bystander, raw_websocket, read_frames_until_close, ws_frame

PING = b'{"type": "ping"}'

#: (name, frames sent after the upgrade, expected close code)
CASES: list[tuple[str, list[bytes], int]] = [
    ("invalid UTF-8 text", [ws_frame(0x1, b'{"type": "\xff\xfe"}')], 1007),
    (
        "invalid UTF-8 across fragments",
        [ws_frame(0x1, b"\xe2\x82", fin=False), ws_frame(0x0, b"\xff")],
        1007,
    ),
    ("reserved data opcode", [ws_frame(0x3, PING)], 1002),
    ("reserved control opcode", [ws_frame(0xB, b"")], 1002),
    ("stray continuation", [ws_frame(0x0, PING)], 1002),
    (
        "new message inside a fragmented one",
        [ws_frame(0x1, b"{", fin=False), ws_frame(0x1, PING)],
        1002,
    ),
    ("unmasked client frame", [ws_frame(0x1, PING, masked=False)], 1002),
    ("RSV2 without extension", [ws_frame(0x1, PING, rsv=0x20)], 1002),
    ("RSV1 without permessage-deflate", [ws_frame(0x1, PING, rsv=0x40)], 1002),
    ("fragmented ping", [ws_frame(0x9, b"x", fin=False)], 1002),
    ("ping over 125 bytes", [ws_frame(0x9, b"x" * 126)], 1002),
    ("close code 65535", [ws_frame(0x8, (65535).to_bytes(2, "big"))], 1002),
    ("close code 1005 (never sent)", [ws_frame(0x8, (1005).to_bytes(2, "big"))], 1002),
    ("close code 999", [ws_frame(0x8, (999).to_bytes(2, "big"))], 1002),
    ("close code 2000 (reserved)", [ws_frame(0x8, (2000).to_bytes(2, "big"))], 1002),
    ("one-byte close payload", [ws_frame(0x8, b"\x03")], 1002),
    ("close reason not UTF-8", [ws_frame(0x8, (1000).to_bytes(2, "big") + b"\xff")], 1007),
    ("normal close", [ws_frame(0x8, (1000).to_bytes(2, "big"))], 1000),
    ("application close", [ws_frame(0x8, (4321).to_bytes(2, "big"))], 4321),
]


@pytest.mark.gen_test(timeout=120)
async def test_protocol_errors_fail_the_connection_with_the_right_code(folio: Running) -> None:
    bob = await Bystander(folio).start()
    cookies = [await folio.login("alice") for _ in range(5)]
    metrics = folio.server.manager.metrics  # type: ignore[union-attr]
    for n, (name, frames, expected) in enumerate(CASES):
        reader, writer = await raw_websocket(folio.port, cookies[n % 5])
        for frame in frames:
            writer.write(frame)
        code, reason = await read_frames_until_close(reader)
        assert code == expected, (name, code, reason)
        # the server drops the TCP connection (it does not wait for our close frame)
        assert await asyncio.wait_for(reader.read(), wait(10)) == b"", name
        writer.close()
    for _ in range(100):
        if folio.server.manager.hub.connections(await folio.user_id("alice")) == set():  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.02)
    assert metrics.disconnects.labels(code="1002")._value.get() == sum(c == 1002 for *_, c in CASES)
    assert metrics.disconnects.labels(code="1007")._value.get() == sum(c == 1007 for *_, c in CASES)
    await bob.expect_events(3)
    bob.assert_open()


@pytest.mark.gen_test(timeout=30)
async def test_valid_fragmented_and_control_frames_still_work(folio: Running) -> None:
    reader, writer = await raw_websocket(folio.port, await folio.login("alice"))
    writer.write(ws_frame(0x1, PING[:5], fin=False))
    writer.write(ws_frame(0x9, b"keepalive"))  # a control frame between fragments is legal
    writer.write(ws_frame(0x0, PING[5:10], fin=False))
    writer.write(ws_frame(0x0, PING[10:]))
    seen: list[Any] = []
    while len(seen) < 2:
        head = await asyncio.wait_for(reader.readexactly(2), wait(5))
        payload = await reader.readexactly(head[1] & 0x7F)
        seen.append((head[0] & 0x0F, payload))
    assert seen[0] == (0xA, b"keepalive")  # pong
    assert seen[1][0] == 0x1 and ujson.loads(seen[1][1])["type"] == "pong"
    writer.write(ws_frame(0x8, (1000).to_bytes(2, "big")))
    assert (await read_frames_until_close(reader))[0] == 1000
    writer.close()


@pytest.mark.gen_test(timeout=30)
async def test_strictness_with_permessage_deflate(folio: Running) -> None:
    """A real client offering permessage-deflate (websockets) talks normally, compressed
    messages included; compressed invalid UTF-8 is still 1007."""
    from websockets.asyncio.client import connect

    cookie = await folio.login("alice")
    async with connect(folio.ws_url, additional_headers={"Cookie": f"session={cookie}"}) as ws:
        assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        await ws.send('{"type": "ping", "padding": "' + "x" * 4000 + '"}')
        assert ujson.loads(await asyncio.wait_for(ws.recv(), wait(5)))["type"] == "pong"
        await ws.send(b"\xff\xfe".decode("latin-1").encode("latin-1"), text=True)
        with pytest.raises(Exception):  # noqa: B017 - the connection closes
            await asyncio.wait_for(ws.recv(), wait(5))
        assert ws.close_code == 1007


def test_close_code_table() -> None:
    allowed = [c for c in range(0, 70000) if close_code_allowed(c)]
    assert allowed[:4] == [1000, 1001, 1002, 1003] and 1004 not in allowed and 1015 not in allowed
    assert {1007, 1011, 1014, 3000, 4999} <= set(allowed) and 5000 not in allowed


def test_pinned_tornado_internals() -> None:
    """The mixin overrides WebSocketProtocol13 internals of Tornado 6.5/6.6: they must exist."""
    major, minor = tornado.version_info[:2]
    assert (major, minor) >= (6, 5) and major < 7
    assert issubclass(StrictWebSocketProtocol13, StrictFramesMixin)
    for name in ("_receive_frame", "_handle_message", "_read_bytes", "_abort", "_run_callback"):
        assert callable(getattr(WebSocketProtocol13, name)), name
    assert StrictWebSocketProtocol13._receive_frame is StrictFramesMixin._receive_frame
