"""Prepared WebSocket messages: encode, compress and frame a message once, write it to every tab.

Fan-out cost should grow with events, not with tabs. A server→client frame is never masked
(RFC 6455 §5.1), so the bytes of one message are the same for every connection; and a
permessage-deflate message compressed from a fresh LZ77 window (RFC 7692 §7.2.1, what
``server_no_context_takeover`` promises the client) is decodable by any client inflater whose
window is at least as large as the one used to compress it. So a :class:`PreparedMessage` holds
one message's UTF-8 payload and builds, on first use, one frame per *variant*:

- ``None``: a plain text frame (connections without permessage-deflate);
- ``wbits`` 9…15: a frame whose payload is the raw DEFLATE output of a fresh compressor with a
  ``2**wbits`` window (the ``server_max_window_bits`` the connection negotiated; 15 when it
  did not ask), the final empty stored block's ``00 00 ff ff`` removed and RSV1 set
  (RFC 7692 §7.2.1). If compression does not make the payload smaller (tiny messages), the
  plain frame is used instead: permessage-deflate lets each message choose (RSV1 unset =
  not compressed, RFC 7692 §6). Window 8 (which zlib cannot produce, it widens raw windows of
  8 to 9) is always sent uncompressed for the same reason.

This is the technique of gorilla/websocket's ``PreparedMessage`` and Centrifugo's per-channel
encoding. Nothing here touches a socket: :mod:`handlers.tornado_ws` writes the bytes.
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["PreparedMessage", "frame_header", "deflate_payload", "COMPRESSION_LEVEL"]

#: zlib level for prepared messages: Tornado's and gzip's default (6). Compression happens once
#: per message, not once per tab, so a good ratio is worth more than the CPU (bench/README.md).
COMPRESSION_LEVEL = 6

#: zlib's memLevel (1–9); 8 is zlib's default. The compressor lives only for one message.
MEM_LEVEL = 8

_FIN_TEXT = 0x81  # FIN + opcode 0x1 (text), RFC 6455 §5.2
_RSV1 = 0x40  # "per-message compressed", RFC 7692 §6


def frame_header(payload_length: int, *, compressed: bool = False) -> bytes:
    """Return the header of a final, unmasked server→client text frame (RFC 6455 §5.2).

    Args:
        payload_length: bytes of payload that follow the header.
        compressed: set RSV1 (the payload is a permessage-deflate message, RFC 7692 §6).

    Returns:
        2, 4 or 10 bytes: FIN|RSV1|opcode, then the 7-bit, 16-bit or 64-bit length.
    """
    first = _FIN_TEXT | (_RSV1 if compressed else 0)
    if payload_length < 126:
        return struct.pack("!BB", first, payload_length)
    if payload_length <= 0xFFFF:
        return struct.pack("!BBH", first, 126, payload_length)
    return struct.pack("!BBQ", first, 127, payload_length)


def deflate_payload(payload: bytes, wbits: int) -> bytes:
    """Compress one whole message from a fresh context, as RFC 7692 §7.2.1 specifies.

    Args:
        payload: the uncompressed message bytes.
        wbits: LZ77 window size as a power of two, 9–15 (the negotiated
            ``server_max_window_bits``, 15 by default).

    Returns:
        The raw DEFLATE bytes without the trailing ``00 00 ff ff`` of the sync flush.

    Raises:
        ValueError: ``wbits`` outside 9–15.
    """
    if not 9 <= wbits <= 15:
        raise ValueError(f"window bits must be 9-15, got {wbits}")
    compressor = zlib.compressobj(COMPRESSION_LEVEL, zlib.DEFLATED, -wbits, MEM_LEVEL)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]  # RFC 7692 §7.2.1: remove the 4 octets 0x00 0x00 0xff 0xff


class PreparedMessage:
    """One text message, framed once per variant and shared by every connection.

    Args:
        text: the message (JSON text); encoded to UTF-8 once.

    Attributes:
        payload: the UTF-8 bytes of the message.
    """

    __slots__ = ("payload", "_frames")

    def __init__(self, text: str) -> None:
        self.payload = text.encode("utf-8")
        self._frames: dict[int | None, bytes] = {}

    @property
    def text(self) -> str:
        """The message as text (tests, logs)."""
        return self.payload.decode("utf-8")

    def frame(self, wbits: int | None) -> bytes:
        """Return the wire bytes of this message for a connection.

        Args:
            wbits: None for a connection without permessage-deflate; otherwise the window bits
                (8–15) the connection's ``server_max_window_bits`` allows (15 when not limited).

        Returns:
            The complete frame (header + payload), identical for every connection with the same
            ``wbits``; built on the first call for that variant, then cached.
        """
        frame = self._frames.get(wbits)
        if frame is None:
            frame = self._build(wbits)
            self._frames[wbits] = frame
        return frame

    def _build(self, wbits: int | None) -> bytes:
        if wbits is not None and wbits >= 9:
            compressed = deflate_payload(self.payload, wbits)
            if len(compressed) < len(self.payload):
                return frame_header(len(compressed), compressed=True) + compressed
        if wbits is not None:
            return self.frame(None)  # not smaller (or window 8): share the plain frame
        return frame_header(len(self.payload)) + self.payload
