"""Strict validation of pushed events (issue 7): canonical userIds, bounded decimals and strings,
every failing field named, and nothing but :class:`EventValidationError` for any input."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from streaming.events import EventValidationError, validate_pushed_event

ORDER: dict[str, Any] = {
    "orderId": "c-1",
    "brokerOrderId": "b-1",
    "symbol": "AAPL",
    "side": "buy",
    "type": "market",
    "status": "new",
    "submittedAt": "2026-11-25T20:15:03Z",
}


def body(user_id: Any = "1", **data: Any) -> dict[str, Any]:
    return {"userId": user_id, "type": "order_update", "data": {**ORDER, **data}}


def error(value: dict[str, Any]) -> EventValidationError:
    with pytest.raises(EventValidationError) as info:
        validate_pushed_event(value)
    return info.value


@pytest.mark.parametrize("user_id", ["1", "42", "9223372036854775807", 7, 2**63 - 1])
def test_canonical_user_ids_accepted(user_id: Any) -> None:
    assert validate_pushed_event(body(user_id))[0] == str(user_id)


@pytest.mark.parametrize(
    "user_id",
    [
        "01",  # leading zero: another spelling of user 1
        "\u0661",  # Arabic-Indic one
        "\uff11",  # fullwidth one
        "\u00b9",  # superscript one (int() raises on it)
        "0",
        "-1",
        "+1",
        " 1",
        "1 ",
        "1.0",
        "9223372036854775808",  # 2^63: not a 64-bit id
        "1" * 20,
        "1" * 5000,
        0,
        -3,
        2**63,
        pytest.param(10**5000, id="10**5000"),
        1.0,
        True,
        None,
        ["1"],
        {"id": 1},
    ],
)
def test_non_canonical_user_ids_rejected(user_id: Any) -> None:
    err = error(body(user_id))
    assert err.field == "userId"


@pytest.mark.parametrize(
    "price",
    [
        "1" * 19,  # 19 integer digits
        "1" * 400,
        "0." + "1" * 11,  # 11 fraction digits
        "1e3",
        "1E+400",
        "\u0661\u0662",  # Arabic-Indic digits: Decimal() would take them
        "\uff11\uff12",
        "Infinity",
        "NaN",
        "",
        12.5,
    ],
)
def test_unbounded_or_odd_decimals_rejected(price: Any) -> None:
    err = error(body(filledAvgPrice=price))
    assert err.field == "data.filledAvgPrice"


def test_decimals_at_the_bounds_are_accepted_exactly() -> None:
    big = "9" * 18 + ".9999999999"
    _, _, data = validate_pushed_event(body(qty=big, filledAvgPrice="0." + "0" * 9 + "1"))
    assert data["qty"] == big
    assert data["filledAvgPrice"] == "0.00"  # price rounds half up to 4 places (docs/protocol.md)
    _, _, data = validate_pushed_event(body(qty="000000000000000000000001"))  # zeros don't count
    assert data["qty"] == "1"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("orderId", "x" * 129),
        ("orderId", "a\nb"),
        ("orderId", "a\x00b"),
        ("status", "\u200b"),  # zero-width space: not printable
        ("status", "   "),
        ("submittedAt", "2026-11-25T20:15:03Z" + " " * 30),
        ("submittedAt", "\u0662026-11-25T20:15:03Z"),
    ],
)
def test_strings_bounded_in_length_and_charset(name: str, value: str) -> None:
    assert error(body(**{name: value})).field == f"data.{name}"


def test_every_failing_field_is_named_in_schema_order() -> None:
    err = error(body("01", symbol="$X", side="hold", qty="1e3", submittedAt="yesterday"))
    fields = [f for f, _ in err.errors]
    assert fields == ["userId", "data.symbol", "data.side", "data.qty", "data.submittedAt"]
    assert err.field == "userId"
    for name in fields:
        assert f"{name}: " in str(err)


def test_missing_fields_are_all_named() -> None:
    err = error({"userId": "1", "type": "order_update", "data": {}})
    assert {f for f, _ in err.errors} == {
        "data.orderId",
        "data.brokerOrderId",
        "data.symbol",
        "data.side",
        "data.type",
        "data.status",
        "data.submittedAt",
    }


def test_bad_type_and_user_named_together() -> None:
    err = error({"userId": "x", "type": ["order_update"] * 100, "data": ORDER})
    assert [f for f, _ in err.errors] == ["userId", "type"]
    assert len(str(err)) < 400  # a huge value is shown cut short


ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**70,
    10**5000,
    1e308,
    float("inf"),
    "",
    "\ud800",
    "\u0661",
    "\u00b9",
    "9" * 5000,
    "1e999999",
    "-0",
    ".5",
    "x" * 10_000,
    [],
    {},
    [{"a": 1}],
]


def test_no_input_raises_anything_but_a_validation_error() -> None:
    """Every field of every type crossed with odd values: a result or EventValidationError."""
    outcomes = 0
    for name, value in itertools.product(
        [*ORDER, "qty", "filledQty", "filledAvgPrice"], ODD_VALUES
    ):
        try:
            validate_pushed_event(body(**{name: value}))
        except EventValidationError:
            pass
        outcomes += 1
    for user_id, type_ in itertools.product(ODD_VALUES, ODD_VALUES):
        try:
            validate_pushed_event({"userId": user_id, "type": type_, "data": ORDER})
        except EventValidationError:
            pass
        outcomes += 1
    assert outcomes == 10 * len(ODD_VALUES) + len(ODD_VALUES) ** 2
