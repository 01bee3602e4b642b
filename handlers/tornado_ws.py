"""The one place we reach inside Tornado's WebSocket: negotiation and writing prepared frames.

Tornado's public API compresses and frames each ``write_message`` per connection, keeps a zlib
compressor per connection (~256 KiB with context takeover) and wraps each write in a Task. For
fan-out to thousands of tabs we want the opposite: one :class:`streaming.frames.PreparedMessage`
per publication, its bytes written as they are to every socket. This adapter does three things,
all on :class:`tornado.websocket.WebSocketProtocol13`:

1. **Negotiation** (RFC 7692 §7.1). When a client offers permessage-deflate, the answer adds
   ``server_no_context_takeover`` (so each message is compressed from a fresh window and one
   compressed message fits every tab) and ``client_no_context_takeover`` (so no inflater for
   the client's direction is kept between messages either: client frames are a few small
   ``subscribe``/``ping`` messages). RFC 7692 §7.1.1.1–2 let a server add both even when the
   offer did not ask. An offered ``server_max_window_bits`` is echoed, as Tornado does, and
   remembered as :attr:`PreparedFrameProtocol.deflate_wbits`.
2. **Writing** (:meth:`PreparedFrameProtocol.write_prepared`): the variant of the prepared
   message for this connection goes straight to the socket when nothing is queued before it
   (``socket.send``, no per-connection compression, framing, Task or Future), and through the
   ``IOStream``'s buffer otherwise (what the kernel did not take, or while earlier bytes wait).
3. **Back-pressure** (:func:`unsent_bytes`): bytes queued on the ``IOStream`` but not yet taken
   by the kernel. :meth:`PreparedFrameProtocol.offer` is the fan-out's one call per frame: the
   closing check, the back-pressure check and the write in one method, reading each counter
   once (the hub calls it for every tab of a user, tens of thousands of times a second).

Tornado internals used, checked by ``tests/handlers/test_tornado_ws.py`` (pinned in setup.cfg
to the Tornado versions we allow, 6.5–6.6): ``WebSocketProtocol13._create_compressors``
(called with the offered parameters, which ``_accept_connection`` then echoes in the response),
``_compressor``, ``stream``, ``client_terminated``/``server_terminated`` (what ``is_closing``
reads), ``_message_bytes_out``/``_wire_bytes_out`` (Tornado's own counters),
``tornado.websocket._WebSocketParams``, ``IOStream._write_buffer`` (its length),
``IOStream._closed`` (what ``closed()`` returns), ``IOStream.socket``, and
``IOStream._total_write_index`` / ``_total_write_done_index`` (their difference is the length of
``_write_buffer``).
"""

from __future__ import annotations

from typing import Any

from tornado.iostream import IOStream, StreamClosedError
from tornado.websocket import WebSocketHandler, WebSocketProtocol13, _WebSocketParams

from streaming.frames import PreparedMessage
from streaming.session import Sent

__all__ = ["PING_FRAME", "PreparedFrameProtocol", "prepared_protocol", "unsent_bytes"]

#: An empty ping from the server: FIN + opcode 0x9, unmasked, length 0 (RFC 6455 §5.2, §5.5.2).
PING_FRAME = b"\x89\x00"


class PreparedFrameProtocol(WebSocketProtocol13):
    """RFC 6455/7692 server protocol that negotiates no context takeover and writes prepared frames.

    Attributes:
        deflate_wbits: the window bits for this connection's compressed frames (8–15), or None
            when permessage-deflate was not negotiated.
    """

    deflate_wbits: int | None = None

    def _create_compressors(
        self,
        side: str,
        agreed_parameters: dict[str, Any],
        compression_options: dict[str, Any] | None = None,
    ) -> None:
        if side == "server":
            # Mutating the offer's parameters is what puts them in the response header:
            # Tornado echoes this same dict (RFC 7692 §7.1.1.1 and §7.1.1.2 allow both).
            agreed_parameters["server_no_context_takeover"] = None
            agreed_parameters["client_no_context_takeover"] = None
        super()._create_compressors(side, agreed_parameters, compression_options)
        if side == "server":
            bits = agreed_parameters.get("server_max_window_bits")
            self.deflate_wbits = 15 if bits is None else int(bits)

    def offer(self, message: PreparedMessage, max_buffered: int) -> Sent:
        """Write ``message`` unless the connection is closing or has stopped reading.

        The same as ``is_closing()``, then :func:`unsent_bytes`, then :meth:`write_prepared`,
        with each Tornado attribute read once: this runs once per frame of the fan-out.

        Args:
            message: the prepared message.
            max_buffered: bytes that may wait unsent in the stream's buffer
                (``MAX_BUFFERED_BYTES``).

        Returns:
            :attr:`Sent.CLOSED` when either side started the closing handshake or the stream is
            closed (nothing written); :attr:`Sent.OVERLOADED` when more than ``max_buffered``
            bytes wait unsent (nothing written: the caller closes with 4002);
            :attr:`Sent.OK` once written or queued.
        """
        stream = self.stream
        if self.client_terminated or self.server_terminated or stream._closed:
            return Sent.CLOSED
        unsent = stream._total_write_index - stream._total_write_done_index
        if unsent > max_buffered:
            return Sent.OVERLOADED
        return Sent.OK if self._write(message, not unsent) else Sent.CLOSED

    def write_prepared(self, message: PreparedMessage) -> bool:
        """Write ``message``'s frame for this connection; False if the stream is closed.

        The frame is the message's variant for :attr:`deflate_wbits` (built once per message
        and variant, shared by every connection); Tornado's write buffer keeps a reference,
        not a copy, for frames over 2 KiB.
        """
        stream = self.stream
        return self._write(message, not len(stream._write_buffer) and not stream.closed())

    def ping_prepared(self) -> bool:
        """Write an empty ping frame (RFC 6455 §5.5.2) the way prepared frames are written.

        The frame is always the same two bytes (FIN, opcode 0x9, no mask, no payload), so it
        needs no framing per connection: the heartbeat pings thousands of tabs per interval.
        False when the connection is closing or closed (nothing written).
        """
        stream = self.stream
        if self.client_terminated or self.server_terminated or stream._closed:
            return False
        self._wire_bytes_out += len(PING_FRAME)
        return self._send(
            PING_FRAME, not (stream._total_write_index - stream._total_write_done_index)
        )

    def _write(self, message: PreparedMessage, idle: bool) -> bool:
        """Write the frame: to the socket directly when ``idle`` (nothing queued, stream open)."""
        frame = message.frame(self.deflate_wbits if self._compressor is not None else None)
        self._message_bytes_out += len(message.payload)
        self._wire_bytes_out += len(frame)
        return self._send(frame, idle)

    def _send(self, frame: bytes | memoryview, idle: bool) -> bool:
        """``frame`` to the socket at once when ``idle``, else (or what it did not take) queued."""
        stream = self.stream
        if idle and type(stream) is IOStream:
            # Fast path: nothing queued before it, so the kernel may take the frame at once,
            # without IOStream's per-write Future and callback (most of a write's cost when
            # one message goes to thousands of sockets). What it does not take is queued
            # below, in order.
            try:
                sent = stream.socket.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError as exc:  # reset or broken pipe: close as IOStream's writer would
                stream.close(exc_info=exc)
                return False
            if sent == len(frame):
                return True
            frame = memoryview(frame)[sent:]
        try:
            stream.write(frame)
        except StreamClosedError:
            return False
        return True


def prepared_protocol(
    handler: WebSocketHandler, protocol: type[PreparedFrameProtocol] = PreparedFrameProtocol
) -> PreparedFrameProtocol | None:
    """Build the protocol for ``handler``'s upgrade, as ``WebSocketHandler.get_websocket_protocol``.

    Args:
        handler: the handler being upgraded.
        protocol: the class to build (a subclass may add mixins, e.g. strict frame checks).

    Returns:
        The protocol for ``Sec-WebSocket-Version: 13``, or None (Tornado answers 426).
    """
    if handler.request.headers.get("Sec-WebSocket-Version") != "13":
        return None
    params = _WebSocketParams(
        ping_interval=handler.ping_interval,
        ping_timeout=handler.ping_timeout,
        max_message_size=handler.max_message_size,
        compression_options=handler.get_compression_options(),
    )
    return protocol(handler, False, params)


def unsent_bytes(protocol: object) -> int:
    """Bytes written to the connection's ``IOStream`` but not yet handed to the kernel.

    Tornado keeps no public counter; ``IOStream`` tracks the total bytes queued and the total
    written, whose difference is what waits in its buffer.
    """
    stream = getattr(protocol, "stream", None)
    queued = getattr(stream, "_total_write_index", 0)
    done = getattr(stream, "_total_write_done_index", 0)
    return int(queued - done)
