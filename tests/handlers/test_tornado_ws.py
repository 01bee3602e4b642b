"""The Tornado touch points of handlers/tornado_ws.py still exist in the installed Tornado.

Pinned in setup.cfg to the versions checked here; a Tornado upgrade that moves one of them fails
these tests first, with the name of what moved.
"""

from __future__ import annotations

import inspect

import tornado
from tornado.iostream import IOStream
from tornado.websocket import WebSocketProtocol13, _WebSocketParams

from handlers.tornado_ws import PreparedFrameProtocol, unsent_bytes


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
    stream_init = inspect.getsource(IOStream.__mro__[1].__init__)
    assert "_total_write_index" in stream_init and "_total_write_done_index" in stream_init


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
