"""RFC 6455 strictness for the server side of Tornado's WebSocket protocol: fail with a close code.

Tornado (6.5/6.6) drops the TCP connection without a close frame on most protocol errors and
accepts unmasked client frames. :class:`StrictFramesMixin` makes the server *fail the WebSocket
connection* as RFC 6455 §7.1.7 asks: it sends a close frame with the code, then drops the
connection.

=================================================  =====  ====================
peer error                                         code   RFC 6455
=================================================  =====  ====================
text message (or close reason) not valid UTF-8     1007   §5.6, §8.1
frame from the client not masked                   1002   §5.1
reserved opcode (0x3–0x7, 0xB–0xF)                 1002   §5.2
continuation frame with no message to continue     1002   §5.4
new data frame inside a fragmented message         1002   §5.4
fragmented or over-125-byte control frame          1002   §5.5
RSV bit set that no extension negotiated           1002   §5.2
close frame with a 1-byte payload or a code that   1002   §5.5.1, §7.4
must not be sent (< 1000, 1004–1006, 1015,
1016–2999, >= 5000)
=================================================  =====  ====================

Use it before the protocol class in the bases::

    class StrictProtocol(StrictFramesMixin, WebSocketProtocol13): ...

It replaces ``WebSocketProtocol13._receive_frame`` (the frame parser, a copy of Tornado's with
the checks added) and wraps ``_handle_message`` for text and close frames. **Pinned to Tornado
>= 6.5, < 7 internals** — attributes ``stream``, ``params.max_message_size``, ``_read_bytes``,
``_decompressor``, ``_frame_compressed``, ``_fragmented_message_buffer``,
``_fragmented_message_opcode``, ``_frame_mask``, ``client_terminated``, ``_run_callback`` and
``_abort`` — all checked by ``tests/security/test_ws_strict.py`` on real sockets; re-check them
when Tornado's major version changes.
"""

from __future__ import annotations

import struct
from typing import Any

from tornado.websocket import WebSocketProtocol13, _DecompressTooLargeError, _websocket_mask

from streaming.closecodes import CloseCode

__all__ = ["StrictFramesMixin", "StrictWebSocketProtocol13", "close_code_allowed"]

PROTOCOL_ERROR = int(CloseCode.PROTOCOL_ERROR)
INVALID_DATA = int(CloseCode.INVALID_DATA)
MESSAGE_TOO_BIG = int(CloseCode.MESSAGE_TOO_BIG)

_FIN, _RSV1, _RSV_MASK, _OPCODE_MASK = 0x80, 0x40, 0x70, 0x0F
_KNOWN_OPCODES = frozenset({0x0, 0x1, 0x2, 0x8, 0x9, 0xA})


def close_code_allowed(code: int) -> bool:
    """True when a peer may send ``code`` in a close frame (RFC 6455 §7.4.1–7.4.2, IANA).

    Allowed: 1000–1003, 1007–1014 and 3000–4999. Not: below 1000, 1004–1006 and 1015 (reserved,
    never on the wire), 1016–2999 (reserved for the standard), 5000 and up (undefined).
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class StrictFramesMixin:
    """Mixin for :class:`tornado.websocket.WebSocketProtocol13` (server side) enforcing RFC 6455.

    See the module docstring for the table of errors and codes.
    """

    # Provided by WebSocketProtocol13 (tornado >= 6.5, < 7).
    stream: Any
    params: Any
    handler: Any
    mask_outgoing: bool
    client_terminated: bool
    close_code: int | None
    close_reason: str | None
    _decompressor: Any
    _frame_compressed: bool | None
    _fragmented_message_buffer: bytearray | None
    _fragmented_message_opcode: Any
    _frame_mask: bytes | None

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): close frame with ``code``, then drop it."""
        close = getattr(self.handler, "close", None)
        if callable(close):
            close(code, reason)  # through the handler, so it records the code it sent
        else:  # pragma: no cover - a protocol without a handler close
            self.close(code, reason)  # type: ignore[attr-defined]
        self._abort()  # type: ignore[attr-defined]

    async def _receive_frame(self) -> None:
        read = self._read_bytes  # type: ignore[attr-defined]
        data = await read(2)
        header, mask_payloadlen = struct.unpack("BB", data)
        is_final_frame = header & _FIN
        reserved_bits = header & _RSV_MASK
        opcode = header & _OPCODE_MASK
        opcode_is_control = opcode & 0x8
        if opcode not in _KNOWN_OPCODES:
            self._fail(PROTOCOL_ERROR, f"reserved opcode 0x{opcode:X}")
            return
        if self._decompressor is not None and opcode != 0:
            self._frame_compressed = bool(reserved_bits & _RSV1)
            reserved_bits &= ~_RSV1
        if reserved_bits:
            self._fail(PROTOCOL_ERROR, "reserved bits set without an extension")
            return
        is_masked = bool(mask_payloadlen & 0x80)
        if not is_masked and not self.mask_outgoing:
            self._fail(PROTOCOL_ERROR, "client frames must be masked")
            return
        payloadlen = mask_payloadlen & 0x7F
        if opcode_is_control and payloadlen >= 126:
            self._fail(PROTOCOL_ERROR, "control frame payload over 125 bytes")
            return
        if opcode_is_control and not is_final_frame:
            self._fail(PROTOCOL_ERROR, "fragmented control frame")
            return
        if opcode == 0 and self._fragmented_message_buffer is None:
            self._fail(PROTOCOL_ERROR, "continuation frame with no message to continue")
            return
        if opcode in (0x1, 0x2) and self._fragmented_message_buffer is not None:
            self._fail(PROTOCOL_ERROR, "new message inside a fragmented message")
            return
        if payloadlen == 126:
            payloadlen = struct.unpack("!H", await read(2))[0]
        elif payloadlen == 127:
            payloadlen = struct.unpack("!Q", await read(8))[0]
        new_len = payloadlen
        if self._fragmented_message_buffer is not None:
            new_len += len(self._fragmented_message_buffer)
        if new_len > self.params.max_message_size:
            self._fail(MESSAGE_TOO_BIG, "message too big")
            return
        if is_masked:
            self._frame_mask = await read(4)
        data = await read(payloadlen)
        if is_masked:
            assert self._frame_mask is not None
            data = _websocket_mask(self._frame_mask, data)
        if opcode == 0:
            assert self._fragmented_message_buffer is not None
            self._fragmented_message_buffer.extend(data)
            if is_final_frame:
                opcode = self._fragmented_message_opcode or 0
                data = bytes(self._fragmented_message_buffer)
                self._fragmented_message_buffer = None
        elif not opcode_is_control and not is_final_frame:
            self._fragmented_message_opcode = opcode
            self._fragmented_message_buffer = bytearray(data)
        if is_final_frame:
            handled = self._handle_message(opcode, data)
            if handled is not None:
                await handled

    def _handle_message(self, opcode: int, data: bytes) -> Any:
        if self.client_terminated:
            return None
        if opcode == 0x1:
            if self._frame_compressed:
                assert self._decompressor is not None
                try:
                    data = self._decompressor.decompress(data)
                except _DecompressTooLargeError:
                    self._fail(MESSAGE_TOO_BIG, "message too big after decompression")
                    return None
                self._frame_compressed = False  # decompressed here, not again below
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(INVALID_DATA, "text message is not valid UTF-8")
                return None
        elif opcode == 0x8:
            if len(data) == 1:
                self._fail(PROTOCOL_ERROR, "close frame with a 1-byte payload")
                return None
            if len(data) >= 2:
                code = struct.unpack(">H", data[:2])[0]
                if not close_code_allowed(code):
                    self.close_code = code
                    self._fail(PROTOCOL_ERROR, "invalid close code")
                    return None
                try:
                    data[2:].decode("utf-8")
                except UnicodeDecodeError:
                    self._fail(INVALID_DATA, "close reason is not valid UTF-8")
                    return None
        return super()._handle_message(opcode, data)  # type: ignore[misc]


class StrictWebSocketProtocol13(StrictFramesMixin, WebSocketProtocol13):
    """Tornado's RFC 6455 protocol with :class:`StrictFramesMixin` (server side)."""
