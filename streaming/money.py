"""Decimal helpers for money, prices, quantities and percentages.

Inside the server every amount is a :class:`decimal.Decimal`; on the wire it is a decimal string
(see ``docs/protocol.md``, "Number formats"). Floats never take part in arithmetic: a float that
reaches :func:`to_decimal` is converted through ``str()`` (its shortest round-trip repr), so
``0.1`` becomes ``Decimal("0.1")`` and not ``Decimal("0.1000000000000000055511151231257827...")``.

Formats (all ROUND_HALF_UP, applied once, on output, to exact ``Decimal`` values):

=============  =========================================  ======================================
helper         format                                     examples
=============  =========================================  ======================================
fmt_money      USD, exactly 2 decimal places              ``"-1234.50"``, ``"0.01"``
fmt_price      USD per share, 2 to 4 decimal places       ``"187.32"``, ``"0.1235"``, ``"5.00"``
fmt_qty        shares, plain, no exponent, no trailing 0  ``"10"``, ``"0.5"``, ``"-3"``
fmt_percent    percent (not a fraction), 2 decimal places ``"5.25"`` (5.25 %)
=============  =========================================  ======================================

No helper ever returns a negative zero (``"-0.00"``, ``"-0"``): a value that rounds to zero is
written without a sign.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

__all__ = [
    "DecimalLike",
    "fmt_money",
    "fmt_percent",
    "fmt_price",
    "fmt_qty",
    "to_decimal",
]

DecimalLike = str | int | Decimal | float
"""Anything :func:`to_decimal` accepts (besides ``None``, which it rejects)."""

# Wide enough that quantize() never overflows for any realistic amount (28 digits, the default,
# would raise InvalidOperation when quantizing e.g. 10**27 to 2 places).
_CTX = Context(prec=60, rounding=ROUND_HALF_UP)
_CENT = Decimal("0.01")
_PRICE_MAX = Decimal("0.0001")


def to_decimal(value: DecimalLike | None, *, field: str = "value") -> Decimal:
    """Convert a broker or user value to a finite :class:`~decimal.Decimal`.

    Args:
        value: A decimal string (``"187.32"``, ``" -1e3 "``), an int, a ``Decimal`` or a float.
            Floats are converted through ``str()`` so no binary-fraction noise is introduced.
        field: Name used in the error message (e.g. ``"price"``), so the caller's log says which
            input was bad.

    Returns:
        The exact decimal value. Units are whatever the input's units are.

    Raises:
        ValueError: ``None``, a bool, an empty or non-numeric string, any other type, NaN or
            infinity. The message names ``field`` and shows the offending value.
    """
    if value is None:
        raise ValueError(f"{field}: expected a decimal number, got None")
    if isinstance(value, bool):  # bool is an int subclass; True is never a price
        raise ValueError(f"{field}: expected a decimal number, got bool {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(str(value))
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError(f"{field}: expected a decimal number, got an empty string")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"{field}: not a decimal number: {value!r}") from None
    else:
        raise ValueError(
            f"{field}: expected a decimal number, got {type(value).__name__} {value!r}"
        )
    if not result.is_finite():
        raise ValueError(f"{field}: must be a finite number, got {value!r}")
    return result


def _plain(d: Decimal) -> str:
    """Return ``d`` in fixed-point notation, with a negative zero written as a positive one."""
    if d.is_zero():
        d = d.copy_abs()
    return format(d, "f")


def _quantize(value: DecimalLike, exp: Decimal, field: str) -> Decimal:
    return to_decimal(value, field=field).quantize(exp, rounding=ROUND_HALF_UP, context=_CTX)


def fmt_money(value: DecimalLike) -> str:
    """Format a USD amount with exactly 2 decimal places, rounding half up.

    Args:
        value: Amount in USD.

    Returns:
        E.g. ``"1873.20"``, ``"-0.01"``; ``-0.004`` gives ``"0.00"`` (never ``"-0.00"``).

    Raises:
        ValueError: ``value`` is not a finite number (see :func:`to_decimal`).
    """
    return _plain(_quantize(value, _CENT, "money"))


def fmt_price(value: DecimalLike) -> str:
    """Format a USD-per-share price with at least 2 and at most 4 decimal places.

    The value is rounded half up to 4 places, then trailing zeros beyond the second place are
    dropped: ``187.3200`` → ``"187.32"``, ``0.12345`` → ``"0.1235"``, ``1.123`` → ``"1.123"``,
    ``5`` → ``"5.00"``.

    Args:
        value: Price in USD per share.

    Returns:
        The price as a decimal string.

    Raises:
        ValueError: ``value`` is not a finite number (see :func:`to_decimal`).
    """
    text = _plain(_quantize(value, _PRICE_MAX, "price"))
    # Exactly 4 decimals now; drop at most two trailing zeros.
    for _ in range(2):
        if text.endswith("0"):
            text = text[:-1]
    return text


def fmt_qty(value: DecimalLike) -> str:
    """Format a share quantity plainly: no exponent, no trailing zeros, no rounding.

    Args:
        value: Number of shares (fractional allowed; the sign is kept, e.g. ``positionQty``).

    Returns:
        E.g. ``"10"`` (also for ``Decimal("1E+1")`` or ``"10.000"``), ``"0.5"``, ``"-3"``;
        zero of any sign or exponent is ``"0"``.

    Raises:
        ValueError: ``value`` is not a finite number (see :func:`to_decimal`).
    """
    d = to_decimal(value, field="qty")
    if d.is_zero():
        return "0"
    return _plain(d.normalize(context=_CTX))


def fmt_percent(value: DecimalLike) -> str:
    """Format a percentage (already multiplied by 100) with 2 decimal places, rounding half up.

    Args:
        value: Percent, not a fraction: ``Decimal("5.255")`` means 5.255 %.

    Returns:
        E.g. ``"5.26"``; a value that rounds to zero is ``"0.00"``.

    Raises:
        ValueError: ``value`` is not a finite number (see :func:`to_decimal`).
    """
    return _plain(_quantize(value, _CENT, "percent"))
