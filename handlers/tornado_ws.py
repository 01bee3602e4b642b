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
   message for this connection goes straight to the ``IOStream`` — no per-connection
   compression, framing or Task.
3. **Back-pressure** (:func:`unsent_bytes`): bytes queued on the ``IOStream`` but not yet taken
   by the kernel.

Tornado internals used, checked by ``tests/handlers/test_tornado_ws.py`` (pinned in setup.cfg
to the Tornado versions we allow, 6.5–6.6): ``WebSocketProtocol13._create_compressors``
(called with the offered parameters, which ``_accept_connection`` then echoes in the response),
``_compressor``, ``stream``, ``_message_bytes_out``/``_wire_bytes_out`` (Tornado's own
counters), ``tornado.websocket._WebSocketParams``, and ``IOStream._total_write_index`` /
``_total_write_done_index``.
"""

from __future__ import annotations

from typing import Any

from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketHandler, WebSocketProtocol13, _WebSocketParams

from streaming.frames import PreparedMessage

__all__ = ["PreparedFrameProtocol", "prepared_protocol", "unsent_bytes"]


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

    def write_prepared(self, message: PreparedMessage) -> bool:
        """Write ``message``'s frame for this connection; False if the stream is closed.

        The frame is the message's variant for :attr:`deflate_wbits` (built once per message
        and variant, shared by every connection); Tornado's write buffer keeps a reference,
        not a copy, for frames over 2 KiB.
        """
        frame = message.frame(self.deflate_wbits if self._compressor is not None else None)
        try:
            self.stream.write(frame)
        except StreamClosedError:
            return False
        self._message_bytes_out += len(message.payload)
        self._wire_bytes_out += len(frame)
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
