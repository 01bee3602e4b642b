"""Wire formatting helpers: decimal strings and timestamps as Alpaca sends them.

Money, prices and quantities are :class:`~decimal.Decimal` inside the simulator and
decimal strings on the wire. Timestamps are RFC 3339 UTC strings with a ``Z`` suffix.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
_PRICE_STEP = Decimal("0.0001")
_RATIO_STEP = Decimal("0.0000000001")


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime.

    Returns:
        The current UTC time.
    """
    return datetime.now(UTC)


def iso(dt: datetime | None) -> str | None:
    """Format a datetime as Alpaca does (``2024-05-14T14:31:02.123456Z``).

    Args:
        dt: An aware datetime, or None.

    Returns:
        The RFC 3339 UTC string with microseconds and a ``Z`` suffix, or None.
    """
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_cents(value: Decimal) -> Decimal:
    """Round a price or amount to cents (ROUND_HALF_UP).

    Args:
        value: The amount in USD.

    Returns:
        The amount quantized to 0.01.
    """
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def fmt_money(value: Decimal) -> str:
    """Format a USD amount with exactly two decimals.

    Args:
        value: The amount in USD.

    Returns:
        A decimal string such as ``"-1234.50"``.
    """
    return str(to_cents(value))


def fmt_price(value: Decimal) -> str:
    """Format a price per share with two to four decimals.

    Args:
        value: The price in USD per share.

    Returns:
        A decimal string such as ``"187.32"`` or ``"103.2645"``.
    """
    q = value.quantize(_PRICE_STEP, rounding=ROUND_HALF_UP)
    text = format(q, "f")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    if len(frac) < 2:
        frac = frac.ljust(2, "0")
    return f"{whole}.{frac}"


def fmt_qty(value: Decimal) -> str:
    """Format a share quantity without exponent or trailing zeros.

    Args:
        value: The quantity in shares (may be signed or fractional).

    Returns:
        A decimal string such as ``"10"``, ``"-5"`` or ``"0.5"``.
    """
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def fmt_ratio(value: Decimal) -> str:
    """Format a fraction (e.g. ``unrealized_plpc``) with ten decimals.

    Args:
        value: The fraction (0.05 means 5 %).

    Returns:
        A decimal string such as ``"0.0512345678"``.
    """
    return format(value.quantize(_RATIO_STEP, rounding=ROUND_HALF_UP), "f")
