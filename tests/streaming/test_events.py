"""Unit tests for streaming.events: hook data validation, the envelope and encoding."""

from __future__ import annotations

import re
from typing import Any

import pytest
import ujson

from streaming.events import (
    CHANNEL_OF,
    HOOK_TYPES,
    STREAM_TYPES,
    Channel,
    EventType,
    EventValidationError,
    encode,
    envelope,
    utc_now_iso,
    validate_event_data,
)

TS = "2026-11-25T20:15:03.123456Z"


def position(**over: Any) -> dict[str, Any]:
    data = {
        "symbol": "aapl",
        "quantity": "10",
        "currentPrice": "187.32",
        "entryPrice": "180.00",
        "unrealizedPnl": "73.20",
        "unrealizedPnlPercent": "4.07",
        "marketValue": "1873.20",
        "side": "long",
        "openedAt": TS,
    }
    data.update(over)
    return data


def order(**over: Any) -> dict[str, Any]:
    data = {
        "orderId": "c-1",
        "brokerOrderId": "b-1",
        "symbol": "MSFT",
        "side": "buy",
        "type": "market",
        "status": "new",
        "submittedAt": TS,
    }
    data.update(over)
    return data


def account(**over: Any) -> dict[str, Any]:
    data = {
        "equity": "100000.00",
        "buyingPower": "200000.00",
        "cash": "50000.00",
        "portfolioValue": "100000.00",
        "dayPnl": "-12.50",
        "dayPnlPercent": "-0.01",
        "timestamp": TS,
    }
    data.update(over)
    return data


def trade(**over: Any) -> dict[str, Any]:
    data = {
        "executionId": "x-1",
        "orderId": "c-1",
        "symbol": "tsla",
        "side": "sell",
        "qty": "0.5",
        "price": "250.1234",
        "timestamp": TS,
    }
    data.update(over)
    return data


FACTORIES = {
    "position_update": position,
    "order_update": order,
    "account_update": account,
    "trade_executed": trade,
}


def field_error(type_: str, data: Any) -> EventValidationError:
    with pytest.raises(EventValidationError) as info:
        validate_event_data(type_, data)
    return info.value


# -- enums and tables --------------------------------------------------------------------------


def test_type_tables():
    assert HOOK_TYPES == {"position_update", "order_update", "account_update", "trade_executed"}
    assert STREAM_TYPES == HOOK_TYPES | {"batch", "status"}
    assert CHANNEL_OF == {
        "position_update": Channel.POSITIONS,
        "order_update": Channel.ORDERS,
        "account_update": Channel.ACCOUNT,
        "trade_executed": Channel.TRADES,
    }
    assert [c.value for c in Channel] == ["positions", "orders", "account", "trades"]


# -- happy paths -------------------------------------------------------------------------------


def test_position_minimal_upper_cases_symbol():
    assert validate_event_data("position_update", position()) == {**position(), "symbol": "AAPL"}


def test_position_with_optional_fields():
    data = position(updatedAt=TS, strategyId="momo", side="short", marketValue="-1873.20")
    assert validate_event_data("position_update", data) == {**data, "symbol": "AAPL"}


def test_order_minimal():
    assert validate_event_data("order_update", order()) == order()


def test_order_with_all_optional_fields():
    data = order(
        qty="10",
        filledQty="4",
        filledAvgPrice="101.25",
        filledAt=TS,
        updatedAt=TS,
        status="partially_filled",
        type="limit",
    )
    assert validate_event_data("order_update", data) == data


def test_account():
    assert validate_event_data("account_update", account()) == account()


def test_trade_minimal_and_full():
    assert validate_event_data("trade_executed", trade()) == {**trade(), "symbol": "TSLA"}
    full = trade(brokerOrderId="b-1", positionQty="-3", partial=True)
    assert validate_event_data("trade_executed", full) == {**full, "symbol": "TSLA"}


def test_enum_type_accepted():
    assert validate_event_data(EventType.ACCOUNT_UPDATE, account()) == account()


def test_unknown_fields_dropped():
    data = order(extra="x", price="1.00", userId="2")
    assert validate_event_data("order_update", data) == order()


@pytest.mark.parametrize("field", ["updatedAt", "strategyId"])
def test_optional_null_is_omitted(field):
    assert validate_event_data("position_update", position(**{field: None})) == {
        **position(),
        "symbol": "AAPL",
    }


def test_result_is_a_copy():
    data = account()
    out = validate_event_data("account_update", data)
    out["cash"] = "0"
    assert data["cash"] == "50000.00"


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("0", "0.00"),
        ("-1234.50", "-1234.50"),
        ("187.3200", "187.32"),
        ("0.125", "0.13"),
        ("10", "10.00"),
        (".5", "0.50"),
        ("-0", "0.00"),
        ("+5", "5.00"),
    ],
)
def test_money_strings_accepted_and_normalised(value, wire):
    """Money from a hook is re-formatted like the server's own (2 dp, half up, no -0.00)."""
    assert validate_event_data("account_update", account(cash=value))["cash"] == wire


def test_each_decimal_kind_gets_its_wire_format():
    """Prices 2-4 dp, quantities plain, percents 2 dp (docs/protocol.md, Number formats)."""
    clean = validate_event_data(
        "position_update",
        position(
            quantity="10.000",
            currentPrice="187.3200",
            entryPrice="0.12345",
            unrealizedPnl="26.8",
            unrealizedPnlPercent="1.4349",
            marketValue="1873.2",
        ),
    )
    assert (
        clean["quantity"],
        clean["currentPrice"],
        clean["entryPrice"],
        clean["unrealizedPnl"],
        clean["unrealizedPnlPercent"],
        clean["marketValue"],
    ) == ("10", "187.32", "0.1235", "26.80", "1.43", "1873.20")


@pytest.mark.parametrize(
    "value",
    ["2026-11-25T20:15:03.123456Z", "2026-11-25T20:15:03Z", "2026-11-25T20:15:03+00:00"],
)
def test_timestamps_accepted_unchanged(value):
    assert validate_event_data("account_update", account(timestamp=value))["timestamp"] == value


@pytest.mark.parametrize("symbol", ["brk.b", "BRK.B", "X" * 10, "A1"])
def test_symbols_accepted(symbol):
    out = validate_event_data("position_update", position(symbol=symbol))
    assert out["symbol"] == symbol.upper()


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("type_", ["batch", "status", "snapshot", "", "POSITION_UPDATE", None])
def test_wrong_type(type_):
    err = field_error(type_, position())
    assert err.field == "type"
    assert err.message == (
        "must be one of account_update, order_update, position_update, trade_executed, "
        f"got {type_!r}"
    )


@pytest.mark.parametrize("data", [None, [], "x", 1, [position()]])
def test_data_not_an_object(data):
    err = field_error("position_update", data)
    assert (err.field, err.message) == ("data", "must be a JSON object")


REQUIRED = {
    "position_update": [
        "symbol",
        "quantity",
        "currentPrice",
        "entryPrice",
        "unrealizedPnl",
        "unrealizedPnlPercent",
        "marketValue",
        "side",
        "openedAt",
    ],
    "order_update": [
        "orderId",
        "brokerOrderId",
        "symbol",
        "side",
        "type",
        "status",
        "submittedAt",
    ],
    "account_update": [
        "equity",
        "buyingPower",
        "cash",
        "portfolioValue",
        "dayPnl",
        "dayPnlPercent",
        "timestamp",
    ],
    "trade_executed": ["executionId", "orderId", "symbol", "side", "qty", "price", "timestamp"],
}


@pytest.mark.parametrize(
    ("type_", "name"), [(t, n) for t, names in REQUIRED.items() for n in names]
)
def test_required_field_missing_or_null(type_, name):
    data = FACTORIES[type_]()
    data[name] = None
    err = field_error(type_, data)
    assert (err.field, err.message, str(err)) == (
        f"data.{name}",
        "is required",
        f"data.{name}: is required",
    )
    del data[name]
    assert field_error(type_, data).field == f"data.{name}"


def test_first_bad_field_in_schema_order_is_reported():
    err = field_error("position_update", position(symbol=None, quantity="abc"))
    assert err.field == "data.symbol"


@pytest.mark.parametrize(
    ("type_", "name", "value"),
    [
        ("position_update", "side", "buy"),
        ("position_update", "side", "LONG"),
        ("order_update", "side", "long"),
        ("order_update", "side", ""),
        ("trade_executed", "side", "short"),
        ("trade_executed", "side", 1),
    ],
)
def test_enum_values(type_, name, value):
    err = field_error(type_, FACTORIES[type_](**{name: value}))
    assert err.field == f"data.{name}"
    allowed = "long, short" if type_ == "position_update" else "buy, sell"
    assert err.message == f"must be one of {allowed}, got {value!r}"


@pytest.mark.parametrize("value", [["long"], {"side": "long"}])
def test_enum_unhashable_value_is_a_validation_error(value):
    err = field_error("position_update", position(side=value))
    assert err.field == "data.side"


@pytest.mark.parametrize(
    "value", ["abc", "", "1.2.3", "1,5", "$5", "NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf"]
)
def test_bad_decimal_strings(value):
    err = field_error("account_update", account(equity=value))
    assert err.field == "data.equity"


def test_decimal_error_messages():
    assert field_error("account_update", account(cash="abc")).message == (
        "must be a decimal string, got 'abc'"
    )
    assert field_error("account_update", account(cash="NaN")).message == (
        "must be finite, got 'NaN'"
    )
    assert field_error("account_update", account(cash="")).message == "must be a non-empty string"


@pytest.mark.parametrize("value", [10, 10.5, 0, True, ["1"]])
def test_decimal_given_as_json_number_rejected(value):
    """Money and quantities must be strings, never JSON numbers."""
    err = field_error("position_update", position(quantity=value))
    assert (err.field, err.message) == ("data.quantity", "must be a non-empty string")


@pytest.mark.parametrize("value", ["1_000", "1e3", "1E+3", "1."])
def test_decimal_in_non_plain_notation_rejected(value):
    """Only plain decimal notation is a wire decimal string (docs/protocol.md, Number formats)."""
    assert field_error("account_update", account(cash=value)).field == "data.cash"


@pytest.mark.parametrize(
    "value", ["yesterday", "2026-13-01T00:00:00Z", "2026-11-25 25:00", "1764101703", ""]
)
def test_bad_timestamps(value):
    err = field_error("order_update", order(submittedAt=value))
    assert err.field == "data.submittedAt"


def test_timestamp_error_message_and_non_string():
    assert field_error("order_update", order(submittedAt="soon")).message == (
        "must be an ISO 8601 timestamp, got 'soon'"
    )
    err = field_error("order_update", order(submittedAt=1764101703))
    assert (err.field, err.message) == ("data.submittedAt", "must be a non-empty string")


def test_optional_timestamp_validated_when_present():
    assert field_error("order_update", order(filledAt="later")).field == "data.filledAt"


def test_optional_decimal_validated_when_present():
    assert field_error("order_update", order(filledQty=3)).field == "data.filledQty"
    assert field_error("trade_executed", trade(positionQty="x")).field == "data.positionQty"


@pytest.mark.parametrize(
    "value",
    ["", "X" * 11, "AA PL", "$SPY", "AAPL;", 5, None, "BF/B", "a-b", "1AB", "\uff21PL", "\u00c4PL"],
)
def test_bad_symbols(value):
    err = field_error("trade_executed", trade(symbol=value))
    assert err.field == "data.symbol"


def test_bad_symbol_message():
    assert field_error("trade_executed", trade(symbol="AA PL")).message == (
        "is not a ticker symbol: 'AA PL'"
    )


@pytest.mark.parametrize("value", ["true", 1, 0, "yes"])
def test_bool_field(value):
    err = field_error("trade_executed", trade(partial=value))
    assert (err.field, err.message) == ("data.partial", "must be a boolean")


@pytest.mark.parametrize(("name", "value"), [("orderId", ""), ("orderId", 5), ("type", ["x"])])
def test_str_field(name, value):
    err = field_error("order_update", order(**{name: value}))
    assert (err.field, err.message) == (f"data.{name}", "must be a non-empty string")


def test_optional_str_field():
    err = field_error("position_update", position(strategyId=7))
    assert err.field == "data.strategyId"


def test_validation_error_is_value_error():
    err = EventValidationError("data.x", "bad")
    assert isinstance(err, ValueError)
    assert (err.field, err.message, str(err)) == ("data.x", "bad", "data.x: bad")


# -- envelope / encode -------------------------------------------------------------------------


def test_envelope_shape():
    assert envelope(
        EventType.POSITION_UPDATE, "1", {"a": 1}, seq=42, epoch="k3J9", timestamp=TS
    ) == {
        "type": "position_update",
        "timestamp": TS,
        "userId": "1",
        "seq": 42,
        "epoch": "k3J9",
        "data": {"a": 1},
    }


def test_envelope_type_is_plain_string_and_default_timestamp():
    env = envelope(EventType.PONG, "1", {}, seq=0, epoch="E")
    assert type(env["type"]) is str and env["type"] == "pong"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", env["timestamp"])


def test_utc_now_iso_format():
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", utc_now_iso())


def test_encode_compact_unescaped():
    msg = envelope("error", "1", {"message": "é/ü"}, seq=3, epoch="E", timestamp=TS)
    text = encode(msg)
    assert text == (
        '{"type":"error","timestamp":"2026-11-25T20:15:03.123456Z","userId":"1","seq":3,'
        '"epoch":"E","data":{"message":"é/ü"}}'
    )
    assert ujson.loads(text) == msg


def test_position_day_fields_are_optional_and_formatted():
    """A pushed position may carry lastdayPrice (a price) and dayPnl (money), or omit them."""
    clean = validate_event_data("position_update", position(lastdayPrice="185.1250", dayPnl="48.7"))
    assert (clean["lastdayPrice"], clean["dayPnl"]) == ("185.125", "48.70")
    for absent in ({}, {"lastdayPrice": None, "dayPnl": None}):
        clean = validate_event_data("position_update", position(**absent))
        assert "lastdayPrice" not in clean and "dayPnl" not in clean


@pytest.mark.parametrize(
    ("name", "value"), [("lastdayPrice", "yesterday"), ("dayPnl", "1e3"), ("dayPnl", 48.7)]
)
def test_position_day_fields_are_validated_when_present(name, value):
    assert field_error("position_update", position(**{name: value})).field == f"data.{name}"
