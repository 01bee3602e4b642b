"""The Tornado touch points of handlers/tornado_ws.py still exist in the installed Tornado.

Pinned in setup.cfg to the versions checked here; a Tornado upgrade that moves one of them fails
these tests first, with the name of what moved.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from typing import Any

import tornado
from tornado.iostream import IOStream
from tornado.websocket import WebSocketProtocol13, _WebSocketParams

from handlers.tornado_ws import PING_FRAME, PreparedFrameProtocol, unsent_bytes
from streaming.frames import PreparedMessage
from streaming.session import Sent


def test_tornado_version_is_one_the_adapter_was_checked_against() -> None:
    major, minor = tornado.version_info[:2]
    assert (major, minor) in {(6, 5), (6, 6)}, tornado.version


def test_internals_used_by_the_adapter_exist() -> None:
    params = inspect.signature(WebSocketProtocol13._create_compressors).parameters
    assert list(params)[:4] == ["self", "side", "agreed_parameters", "compression_options"]
    assert set(inspect.signature(_WebSocketParams).parameters) >= {
        "ping_interval",
        "ping_timeout",
        "max_message_size",
        "compression_options",
    }
    source = inspect.getsource(WebSocketProtocol13._accept_connection)
    # The offer's parameter dict is handed to _create_compressors and then echoed as the answer.
    assert 'self._create_compressors("server", ext[1]' in source
    assert 'httputil._encode_header("permessage-deflate", ext[1])' in source
    init = inspect.getsource(WebSocketProtocol13.__init__)
    for name in ("_compressor", "_message_bytes_out", "_wire_bytes_out"):
        assert f"self.{name}" in init
    # offer() reads what is_closing() reads, without the call
    closing = inspect.getsource(WebSocketProtocol13.is_closing)
    assert "self.stream.closed() or self.client_terminated or self.server_terminated" in closing
    assert "return self._closed" in inspect.getsource(IOStream.closed)
    stream_init = inspect.getsource(IOStream.__mro__[1].__init__)
    assert "_total_write_index" in stream_init and "_total_write_done_index" in stream_init
    assert "self._write_buffer = _StreamBuffer()" in stream_init
    assert "self.socket = socket" in inspect.getsource(IOStream.__init__)
    # The fast path writes only when this buffer is empty, as IOStream's own writer would.
    assert "size = len(self._write_buffer)" in inspect.getsource(IOStream._handle_write)


def test_unsent_bytes_reads_the_stream_counters() -> None:
    class Stream:
        _total_write_index = 10_000
        _total_write_done_index = 2_500

    class Proto:
        stream = Stream()

    assert unsent_bytes(Proto()) == 7_500
    assert unsent_bytes(object()) == 0


def test_protocol_is_a_websocket_protocol13() -> None:
    assert issubclass(PreparedFrameProtocol, WebSocketProtocol13)
    assert PreparedFrameProtocol.deflate_wbits is None  # until negotiated


class _Stream:
    """What offer() reads of an IOStream; write() records instead of writing."""

    def __init__(self, queued: int = 0, closed: bool = False) -> None:
        self._total_write_index = 1000 + queued
        self._total_write_done_index = 1000
        self._closed = closed
        self.written: list[bytes] = []

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))


def _protocol(stream: Any, *, client: bool = False, server: bool = False) -> PreparedFrameProtocol:
    proto = PreparedFrameProtocol.__new__(PreparedFrameProtocol)  # no handler needed
    proto.stream = stream
    proto.client_terminated, proto.server_terminated = client, server
    proto._compressor = None
    proto._message_bytes_out = proto._wire_bytes_out = 0
    return proto


def test_offer_refuses_a_closing_connection_and_writes_nothing() -> None:
    message = PreparedMessage('{"type":"status"}')
    for kwargs, stream in (
        ({"client": True}, _Stream()),
        ({"server": True}, _Stream()),
        ({}, _Stream(closed=True)),
    ):
        assert _protocol(stream, **kwargs).offer(message, 100) is Sent.CLOSED
        assert stream.written == []


def test_offer_refuses_over_the_buffer_limit_and_queues_behind_waiting_bytes() -> None:
    message = PreparedMessage('{"type":"status"}')
    full = _Stream(queued=101)
    assert _protocol(full).offer(message, 100) is Sent.OVERLOADED
    assert full.written == []
    waiting = _Stream(queued=100)  # at the limit: still queued, behind the waiting bytes
    proto = _protocol(waiting)
    assert proto.offer(message, 100) is Sent.OK
    assert waiting.written == [message.frame(None)]
    assert (proto._message_bytes_out, proto._wire_bytes_out) == (17, 19)


def test_offer_writes_straight_to_an_idle_socket() -> None:
    """Nothing queued: the frame goes to the socket itself, and the peer reads exactly it."""

    async def go() -> None:
        left, right = socket.socketpair()
        stream = IOStream(left)
        try:
            message = PreparedMessage('{"type":"status","data":{}}')
            proto = _protocol(stream)
            assert proto.offer(message, 100) is Sent.OK
            assert stream._total_write_index == 0  # IOStream's buffer was not used
            right.settimeout(5)
            assert right.recv(100) == message.frame(None)
            stream.close()
            assert proto.offer(message, 100) is Sent.CLOSED
        finally:
            stream.close()
            right.close()

    asyncio.run(go())


def test_offer_queues_what_the_kernel_did_not_take_and_keeps_the_order() -> None:
    """A frame larger than the socket buffer: the rest waits in IOStream, later frames behind it."""

    async def go() -> None:
        loop = asyncio.get_running_loop()
        left, right = socket.socketpair()
        left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        stream = IOStream(left)
        right.setblocking(False)
        try:
            big = PreparedMessage('{"pad":"' + "x" * 2_000_000 + '"}')
            small = PreparedMessage('{"type":"status"}')
            proto = _protocol(stream)
            assert proto.offer(big, 10_000_000) is Sent.OK
            assert unsent_bytes(proto) > 0  # the kernel took only part of it
            assert proto.offer(small, 10) is Sent.OVERLOADED  # over a small limit: refused
            assert proto.offer(small, 10_000_000) is Sent.OK  # queued behind the rest
            want = big.frame(None) + small.frame(None)
            got = bytearray()
            while len(got) < len(want):
                got += await asyncio.wait_for(loop.sock_recv(right, 1 << 20), 10)
            assert bytes(got) == want
        finally:
            stream.close()
            right.close()

    asyncio.run(go())


def test_ping_prepared_writes_an_empty_ping_in_order_and_not_when_closing() -> None:
    """The heartbeat's ping: the two bytes of an empty ping (RFC 6455 §5.5.2), straight to an
    idle socket, queued behind waiting bytes, nothing on a closing connection."""

    async def go() -> None:
        left, right = socket.socketpair()
        stream = IOStream(left)
        try:
            proto = _protocol(stream)
            assert proto.ping_prepared() is True
            right.settimeout(5)
            assert right.recv(100) == PING_FRAME == bytes([0x89, 0x00])
        finally:
            stream.close()
            right.close()

    asyncio.run(go())
    waiting = _Stream(queued=10)
    assert _protocol(waiting).ping_prepared() is True
    assert waiting.written == [PING_FRAME]  # behind the 10 bytes already queued
    for kwargs, stream in (({"client": True}, _Stream()), ({}, _Stream(closed=True))):
        assert _protocol(stream, **kwargs).ping_prepared() is False
        assert stream.written == []
