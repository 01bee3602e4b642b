"""Unit tests for streaming.protocol.parse_client_message (the client→server frame parser)."""

from __future__ import annotations

import pytest
import ujson

from streaming.events import Channel
from streaming.protocol import MAX_SYMBOLS, ClientMessage, ProtocolError, parse_client_message

ALL = ["positions", "orders", "account", "trades"]


def frame(**fields: object) -> str:
    return ujson.dumps(fields)


def error_of(raw: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(raw)
    return info.value


# -- happy paths -------------------------------------------------------------------------------


def test_ping():
    """A ping carries nothing else."""
    assert parse_client_message('{"type": "ping"}') == ClientMessage("ping")


def test_ping_ignores_other_fields():
    """Extra fields on a ping are not validated."""
    msg = parse_client_message(frame(type="ping", channels="junk", lastSeq=-1))
    assert msg == ClientMessage("ping", frozenset(), None, None, None)


def test_subscribe_all_channels_without_symbols():
    msg = parse_client_message(frame(type="subscribe", channels=ALL))
    assert msg == ClientMessage(
        "subscribe",
        frozenset({Channel.POSITIONS, Channel.ORDERS, Channel.ACCOUNT, Channel.TRADES}),
        None,
        None,
        None,
    )


def test_subscribe_duplicate_channels_are_merged():
    msg = parse_client_message(frame(type="subscribe", channels=["trades", "trades"]))
    assert msg.channels == frozenset({Channel.TRADES})


def test_subscribe_symbols_upper_cased():
    """Symbols are upper-cased and de-duplicated."""
    msg = parse_client_message(
        frame(type="subscribe", channels=["positions"], symbols=["aapl", "AAPL", "brk.b", "Msft"])
    )
    assert msg.symbols == frozenset({"AAPL", "BRK.B", "MSFT"})


def test_subscribe_symbols_null_means_all():
    msg = parse_client_message(frame(type="subscribe", channels=["orders"], symbols=None))
    assert msg.symbols is None


def test_symbols_given_tells_null_from_absent():
    """null (clear the filter) and an absent key (keep it) both parse to None: symbols_given
    tells them apart."""
    cleared = parse_client_message(frame(type="subscribe", channels=["orders"], symbols=None))
    kept = parse_client_message(frame(type="subscribe", channels=["orders"]))
    narrowed = parse_client_message(frame(type="subscribe", channels=["orders"], symbols=["X"]))
    assert (cleared.symbols_given, kept.symbols_given, narrowed.symbols_given) == (
        True,
        False,
        True,
    )


def test_subscribe_empty_symbols_is_an_empty_filter():
    """An empty list is a filter that matches nothing (not "all symbols")."""
    msg = parse_client_message(frame(type="subscribe", channels=["orders"], symbols=[]))
    assert msg.symbols == frozenset()


def test_subscribe_symbol_charset_and_length_limits():
    """Symbols of 1..16 chars from [A-Za-z0-9./-] are accepted."""
    ok = ["A", "BRK-B", "BF/B", "X" * 16]
    msg = parse_client_message(frame(type="subscribe", channels=["trades"], symbols=ok))
    assert msg.symbols == frozenset(ok)


def test_subscribe_max_symbols_accepted():
    symbols = [f"S{i}" for i in range(MAX_SYMBOLS)]
    msg = parse_client_message(frame(type="subscribe", channels=["positions"], symbols=symbols))
    assert MAX_SYMBOLS == 500
    assert msg.symbols is not None and len(msg.symbols) == 500


def test_subscribe_with_last_seq_and_epoch():
    msg = parse_client_message(
        frame(type="subscribe", channels=["account"], lastSeq=41, epoch="k3J9")
    )
    assert msg == ClientMessage("subscribe", frozenset({Channel.ACCOUNT}), None, 41, "k3J9")


def test_subscribe_last_seq_zero_is_valid():
    msg = parse_client_message(frame(type="subscribe", channels=["account"], lastSeq=0, epoch="e"))
    assert (msg.last_seq, msg.epoch) == (0, "e")


def test_subscribe_null_last_seq_and_epoch_mean_absent():
    msg = parse_client_message(
        frame(type="subscribe", channels=["account"], lastSeq=None, epoch=None)
    )
    assert (msg.last_seq, msg.epoch) == (None, None)


def test_unsubscribe():
    msg = parse_client_message(frame(type="unsubscribe", channels=["trades", "orders"]))
    assert msg == ClientMessage("unsubscribe", frozenset({Channel.TRADES, Channel.ORDERS}))


# -- errors ------------------------------------------------------------------------------------


def test_binary_frame_rejected():
    err = error_of(b'{"type": "ping"}')
    assert err.code == "binary_not_supported"
    assert err.message == "binary frames are not supported; send JSON text"


@pytest.mark.parametrize("raw", ["", "not json", "{", '{"type": "ping"', "[" * 100_000])
def test_invalid_json(raw):
    err = error_of(raw)
    assert err.code == "invalid_json"
    assert err.message == "message is not valid JSON"


@pytest.mark.parametrize("raw", ["[]", '["ping"]', '"ping"', "42", "null", "true"])
def test_json_that_is_not_an_object(raw):
    err = error_of(raw)
    assert (err.code, err.message) == ("invalid_json", "message must be a JSON object")


@pytest.mark.parametrize(
    "raw", ["{}", '{"type": "PING"}', '{"type": "hello"}', '{"type": null}', '{"type": ["ping"]}']
)
def test_unknown_type(raw):
    err = error_of(raw)
    assert err.code == "unknown_type"
    assert "allowed: subscribe, unsubscribe, ping" in err.message


def test_unknown_type_message_names_the_type():
    assert error_of('{"type": "hello"}').message == (
        "unknown message type 'hello' (allowed: subscribe, unsubscribe, ping)"
    )


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe"])
def test_unknown_channel(kind):
    err = error_of(frame(type=kind, channels=["positions", "quotes"]))
    assert err.code == "unknown_channel"
    assert err.message == "unknown channel 'quotes' (allowed: positions, orders, account, trades)"


def test_channel_names_are_case_sensitive():
    assert error_of(frame(type="subscribe", channels=["Positions"])).code == "unknown_channel"


CHANNELS_MSG = "channels must be a non-empty array of strings"


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe"])
@pytest.mark.parametrize(
    "channels",
    [None, "positions", {"positions": True}, 1, [], [1], ["positions", None], [["positions"]]],
    ids=["missing", "string", "object", "number", "empty", "int-item", "null-item", "nested"],
)
def test_channels_invalid(kind, channels):
    fields: dict[str, object] = {"type": kind}
    if channels is not None:
        fields["channels"] = channels
    err = error_of(ujson.dumps(fields))
    assert (err.code, err.message) == ("invalid_field", CHANNELS_MSG)


SYMBOLS_SHAPE_MSG = "symbols must be an array of at most 500 strings or null"


@pytest.mark.parametrize("symbols", ["AAPL", {"AAPL": 1}, 5, True])
def test_symbols_not_a_list(symbols):
    err = error_of(frame(type="subscribe", channels=["positions"], symbols=symbols))
    assert (err.code, err.message) == ("invalid_field", SYMBOLS_SHAPE_MSG)


def test_too_many_symbols():
    symbols = [f"S{i}" for i in range(MAX_SYMBOLS + 1)]
    err = error_of(frame(type="subscribe", channels=["positions"], symbols=symbols))
    assert (err.code, err.message) == ("invalid_field", SYMBOLS_SHAPE_MSG)


@pytest.mark.parametrize(
    "bad", ["", "X" * 17, "AA PL", "AAPL;", "$SPY", "A*", 5, None, ["AAPL"], "\ud800"]
)
def test_bad_symbol(bad):
    err = error_of(frame(type="subscribe", channels=["positions"], symbols=["MSFT", bad]))
    assert err.code == "invalid_field"
    assert err.message == f"symbols: {bad!r} is not a ticker symbol"


LAST_SEQ_MSG = "lastSeq must be a non-negative integer"


@pytest.mark.parametrize("last_seq", [-1, True, False, "41", 41.0, 1.5, [41], {"seq": 41}])
def test_last_seq_invalid(last_seq):
    err = error_of(frame(type="subscribe", channels=["orders"], lastSeq=last_seq, epoch="e"))
    assert (err.code, err.message) == ("invalid_field", LAST_SEQ_MSG)


@pytest.mark.parametrize("epoch", [1, True, ["e"], {"e": 1}])
def test_epoch_not_a_string(epoch):
    err = error_of(frame(type="subscribe", channels=["orders"], lastSeq=3, epoch=epoch))
    assert (err.code, err.message) == ("invalid_field", "epoch must be a string")


@pytest.mark.parametrize(
    "fields", [{"lastSeq": 3}, {"epoch": "e"}, {"lastSeq": 3, "epoch": None}], ids=str
)
def test_last_seq_and_epoch_must_come_together(fields):
    err = error_of(frame(type="subscribe", channels=["orders"], **fields))
    assert (err.code, err.message) == ("invalid_field", "lastSeq and epoch must be given together")


@pytest.mark.parametrize("symbols", [["AAPL"], None, []])
def test_symbols_on_unsubscribe_rejected(symbols):
    """Even ``symbols: null`` is refused on unsubscribe."""
    err = error_of(frame(type="unsubscribe", channels=["positions"], symbols=symbols))
    assert (err.code, err.message) == (
        "invalid_field",
        "unsubscribe takes channels only, not symbols",
    )


def test_channels_checked_before_symbols():
    """With several bad fields, the first checked (channels) is reported."""
    err = error_of(frame(type="subscribe", channels=["quotes"], symbols="AAPL"))
    assert err.code == "unknown_channel"


def test_protocol_error_is_a_value_error():
    err = ProtocolError("invalid_field", "boom")
    assert isinstance(err, ValueError)
    assert (err.code, err.message, str(err)) == ("invalid_field", "boom", "boom")
