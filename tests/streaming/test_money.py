from decimal import Decimal

import pytest

from streaming.money import fmt_money, fmt_percent, fmt_price, fmt_qty, to_decimal


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("187.32", Decimal("187.32")),
        (" -1e3 ", Decimal("-1000")),
        (10, Decimal(10)),
        (Decimal("0.5"), Decimal("0.5")),
        (0.1, Decimal("0.1")),  # via str(): no 0.1000000000000000055511151231257827
        (187.32, Decimal("187.32")),
        (1e-7, Decimal("1E-7")),
    ],
)
def test_to_decimal_accepts(value, expected):
    assert to_decimal(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "   ", "abc", "1.2.3", "NaN", "nan", "sNaN", "Infinity", "-inf", None, True, [1], {}],
)
def test_to_decimal_rejects_junk(value):
    with pytest.raises(ValueError):
        to_decimal(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), Decimal("NaN")])
def test_to_decimal_rejects_non_finite(value):
    with pytest.raises(ValueError, match="finite"):
        to_decimal(value)


def test_to_decimal_error_names_field():
    with pytest.raises(ValueError, match=r"^price: not a decimal number: 'abc'$"):
        to_decimal("abc", field="price")
    with pytest.raises(ValueError, match="^qty: .*None"):
        to_decimal(None, field="qty")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1873.2"), "1873.20"),
        (Decimal("-1234.5"), "-1234.50"),
        (Decimal("0.005"), "0.01"),  # half up, not banker's (which gives 0.00)
        (Decimal("0.015"), "0.02"),
        (Decimal("0.025"), "0.03"),  # banker's would give 0.02
        (Decimal("-0.005"), "-0.01"),  # half up is away from zero
        (Decimal("2.675"), "2.68"),  # exact Decimal, no binary drift
        (2.675, "2.68"),  # a float goes through str(), so same answer
        (Decimal("-0.004"), "0.00"),  # never "-0.00"
        (Decimal("-0"), "0.00"),
        (Decimal("-0.00"), "0.00"),
        (0, "0.00"),
        (Decimal("1E+3"), "1000.00"),  # no exponent
        (Decimal("1E+27"), "1000000000000000000000000000.00"),  # beyond 28 digits: no overflow
        ("12.3456", "12.35"),
    ],
)
def test_fmt_money(value, expected):
    assert fmt_money(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("187.3200"), "187.32"),
        (Decimal("187.32"), "187.32"),
        (Decimal("187"), "187.00"),
        (Decimal("1.5"), "1.50"),
        (Decimal("1.123"), "1.123"),
        (Decimal("0.1234"), "0.1234"),
        (Decimal("0.12345"), "0.1235"),  # half up at the 4th place
        (Decimal("0.12344"), "0.1234"),
        (Decimal("187.33333333"), "187.3333"),
        (Decimal("9.99995"), "10.00"),
        (Decimal("1.10000"), "1.10"),
        (Decimal("1.1020"), "1.102"),
        (Decimal("-0.00001"), "0.00"),  # never "-0.00"
        (Decimal("1E+2"), "100.00"),
        ("0.0001", "0.0001"),
    ],
)
def test_fmt_price(value, expected):
    assert fmt_price(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("10"), "10"),
        (Decimal("10.000"), "10"),
        (Decimal("1E+1"), "10"),
        (Decimal("100"), "100"),  # normalize() alone would give "1E+2"
        (Decimal("0.5"), "0.5"),
        (Decimal("0.50"), "0.5"),
        (Decimal("1E-9"), "0.000000001"),
        (Decimal("-3"), "-3"),
        (Decimal("-0"), "0"),
        (Decimal("0E-8"), "0"),
        ("2.000000000", "2"),
        (5, "5"),
    ],
)
def test_fmt_qty(value, expected):
    assert fmt_qty(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("5.25"), "5.25"),
        (Decimal("5.255"), "5.26"),
        (Decimal("-5.255"), "-5.26"),
        (Decimal("1.6666666666"), "1.67"),
        (Decimal("-0.001"), "0.00"),
        (Decimal(0), "0.00"),
        (Decimal(100), "100.00"),
    ],
)
def test_fmt_percent(value, expected):
    assert fmt_percent(value) == expected


@pytest.mark.parametrize("fmt", [fmt_money, fmt_price, fmt_qty, fmt_percent])
def test_formatters_reject_junk(fmt):
    with pytest.raises(ValueError):
        fmt("abc")
    with pytest.raises(ValueError):
        fmt(Decimal("NaN"))
