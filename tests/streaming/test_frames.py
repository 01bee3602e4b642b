"""The frame builder against RFC 6455 §5.2 and RFC 7692: decoded by websockets' own parser."""

from __future__ import annotations

import zlib

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from streaming.frames import PreparedMessage, deflate_payload, frame_header

BIG = (
    '{"type":"batch","data":{"positions":['
    + ",".join(
        f'{{"symbol":"S{i:03d}","quantity":"{i}","currentPrice":"{100 + i}.25"}}'
        for i in range(300)
    )
    + "]}}"
)


def parse(wire: bytes, wbits: int | None) -> tuple[Frame, str]:
    """Parse one server frame as a websockets client would, with or without permessage-deflate."""
    extensions = []
    if wbits is not None:
        # The client side of a negotiation that agreed server_no_context_takeover and
        # server_max_window_bits=wbits: remote = the server.
        extensions.append(PerMessageDeflate(True, True, wbits, 15))
    reader = StreamReader()
    reader.feed_data(wire)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None, extensions=extensions)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
    else:  # pragma: no cover - the whole frame was fed
        raise AssertionError("parser wanted more bytes")
    return frame, frame.data.decode("utf-8")


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_header_lengths_follow_rfc6455(length: int, header: bytes) -> None:
    assert frame_header(length) == header
    assert frame_header(length, compressed=True)[0] == 0xC1  # FIN + RSV1 + text
    assert frame_header(length, compressed=True)[1:] == header[1:]


@pytest.mark.parametrize("text", ["", "x", '{"type":"pong","seq":1}', "é✓🙂" * 50, BIG])
def test_plain_frame_decodes_to_the_text(text: str) -> None:
    frame, decoded = parse(PreparedMessage(text).frame(None), None)
    assert (frame.opcode, frame.fin, frame.rsv1) == (Opcode.TEXT, True, False)
    assert decoded == text


@pytest.mark.parametrize("wbits", range(9, 16))
def test_compressed_frame_decodes_identically_for_each_window(wbits: int) -> None:
    message = PreparedMessage(BIG)
    wire = message.frame(wbits)
    frame, decoded = parse(wire, wbits)
    assert frame.rsv1 is False  # the extension consumed it
    assert wire[0] == 0xC1  # compressed on the wire
    assert decoded == BIG
    assert len(wire) < len(BIG) // 3  # portfolio JSON compresses well
    assert message.frame(wbits) is wire  # built once, then shared


def test_small_window_output_fits_small_window_inflater() -> None:
    """Distances never exceed the negotiated window: a 2**9 inflater decodes a 9-bit frame."""
    payload = deflate_payload(BIG.encode(), 9)
    assert zlib.decompressobj(-9).decompress(payload + b"\x00\x00\xff\xff") == BIG.encode()


def test_tiny_message_is_sent_plain_even_with_deflate() -> None:
    message = PreparedMessage('{"a":1}')
    wire = message.frame(15)
    assert wire[0] == 0x81 and wire is message.frame(None)  # not smaller: the plain frame, shared
    frame, decoded = parse(wire, 15)
    assert decoded == '{"a":1}'


def test_window_8_is_sent_plain() -> None:
    """zlib widens a raw window of 8 to 9, which an 8-bit inflater may not decode: send plain."""
    message = PreparedMessage(BIG)
    assert message.frame(8) is message.frame(None)
    assert parse(message.frame(8), 8)[1] == BIG


def test_deflate_rejects_bad_window() -> None:
    for bad in (7, 8, 16):
        with pytest.raises(ValueError, match="window bits"):
            deflate_payload(b"x", bad)


def test_each_compressed_message_uses_a_fresh_context() -> None:
    """The same message compressed twice gives the same bytes: no state carried between them
    (RFC 7692 §7.2.1 no context takeover), so a client can inflate any one alone."""
    first = PreparedMessage(BIG).frame(15)
    second = PreparedMessage(BIG).frame(15)
    assert first == second
    # A client inflater that kept its window across messages (context takeover on its side)
    # decodes a stream of such messages too.
    inflater = zlib.decompressobj(-15)
    for _ in range(3):
        body = first[4:]  # 2-byte header + 16-bit length
        assert inflater.decompress(body + b"\x00\x00\xff\xff") == BIG.encode()
