"""The event model: event types, channels, the wire envelope and the schemas of event data.

Every server→client message is a ``PortfolioEvent`` envelope (the design document's shape plus
``seq`` and ``epoch``)::

    {"type": "position_update", "timestamp": "2026-11-25T20:15:03.123456Z", "userId": "1",
     "seq": 42, "epoch": "k3J9", "data": {...}}

*Stream events* (:data:`STREAM_TYPES`) are published to a user's stream and numbered; the other
types are per-connection control messages. See ``docs/protocol.md`` for the full contract.

:func:`validate_event_data` checks the ``data`` of events pushed by other services through the
internal hook against the schemas below and raises :class:`EventValidationError` naming every
failing field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

import ujson

from streaming.money import fmt_money, fmt_percent, fmt_price, fmt_qty

__all__ = [
    "EventType",
    "NoticeCode",
    "Channel",
    "STREAM_TYPES",
    "HOOK_TYPES",
    "CHANNEL_OF",
    "EventValidationError",
    "envelope",
    "encode",
    "utc_now_iso",
    "validate_event_data",
    "validate_pushed_event",
]


class EventType(StrEnum):
    """Server→client message types."""

    POSITION_UPDATE = "position_update"
    ORDER_UPDATE = "order_update"
    ACCOUNT_UPDATE = "account_update"
    TRADE_EXECUTED = "trade_executed"
    BATCH = "batch"
    STATUS = "status"
    SNAPSHOT = "snapshot"
    SUBSCRIBED = "subscribed"
    PONG = "pong"
    ERROR = "error"
    NOTICE = "notice"


class NoticeCode(StrEnum):
    """Codes of the per-connection ``notice`` message (``docs/protocol.md``).

    A notice is about the connection's web process, not the user's stream: it is sent to the
    process's own sockets directly (never through the engine), carries no stream position
    (``seq`` 0, ``epoch`` ``""``) and is not de-duplicated by ``seq``. Notices are idempotent
    state announcements: the same one may arrive twice.
    """

    #: This process's engine fan-out is down (Redis unreachable): live updates are paused.
    ENGINE_DOWN = "engine_down"
    #: The fan-out is back: resubscribe with ``lastSeq`` + ``epoch`` to replay what was missed.
    ENGINE_OK = "engine_ok"


class Channel(StrEnum):
    """Subscription channels a client may ask for."""

    POSITIONS = "positions"
    ORDERS = "orders"
    ACCOUNT = "account"
    TRADES = "trades"


#: Types published to a user's stream: each advances the user's ``seq`` by one.
STREAM_TYPES = frozenset(
    {
        EventType.POSITION_UPDATE,
        EventType.ORDER_UPDATE,
        EventType.ACCOUNT_UPDATE,
        EventType.TRADE_EXECUTED,
        EventType.BATCH,
        EventType.STATUS,
    }
)

#: Types other services may push through ``POST /internal/events``.
HOOK_TYPES = frozenset(
    {
        EventType.POSITION_UPDATE,
        EventType.ORDER_UPDATE,
        EventType.ACCOUNT_UPDATE,
        EventType.TRADE_EXECUTED,
    }
)

#: The channel that carries each single-channel stream type.
CHANNEL_OF: dict[str, Channel] = {
    EventType.POSITION_UPDATE: Channel.POSITIONS,
    EventType.ORDER_UPDATE: Channel.ORDERS,
    EventType.ACCOUNT_UPDATE: Channel.ACCOUNT,
    EventType.TRADE_EXECUTED: Channel.TRADES,
}


def utc_now_iso() -> str:
    """Return the current UTC time as ISO 8601 with microseconds and a ``Z`` suffix."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def envelope(
    type_: str,
    user_id: str,
    data: Mapping[str, Any],
    *,
    seq: int,
    epoch: str,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """Build a ``PortfolioEvent`` envelope.

    Args:
        type_: an :class:`EventType` value.
        user_id: the wire ``userId`` (string).
        data: the event data (already in wire shape: decimal strings, ISO timestamps).
        seq: the user's sequence number for this event (or the current one for control types).
        epoch: the stream epoch (changes when history is lost).
        timestamp: ISO 8601 UTC; defaults to now.

    Returns:
        The envelope dict, ready for :func:`encode`.
    """
    return {
        "type": str(type_),
        "timestamp": timestamp or utc_now_iso(),
        "userId": user_id,
        "seq": seq,
        "epoch": epoch,
        "data": data,
    }


def encode(message: Mapping[str, Any]) -> str:
    """Serialise a message to compact JSON text with ujson (no NaN, no floats for money)."""
    return ujson.dumps(message, ensure_ascii=False, escape_forward_slashes=False)


class EventValidationError(ValueError):
    """Pushed event data does not match its schema.

    ``errors`` lists every failing field as ``(field, message)`` (dotted paths such as
    ``"data.symbol"``), in schema order; ``field`` and ``message`` are the first of them, and
    ``str(error)`` joins all of them with ``"; "`` (the hook's 400 message and the ingest's
    ``:rejected`` ``error`` field).
    """

    def __init__(
        self, field: str, message: str, errors: list[tuple[str, str]] | None = None
    ) -> None:
        self.errors = errors or [(field, message)]
        super().__init__("; ".join(f"{f}: {m}" for f, m in self.errors))
        self.field, self.message = self.errors[0]


# Field kinds: "str" non-empty string; "money" / "price" / "qty" / "percent" decimal strings in
# plain notation, normalised to the wire formats of docs/protocol.md (2 dp, 2–4 dp, plain, 2 dp);
# "ts" ISO 8601 timestamp; ("enum", {...}) one of the values; "bool". A trailing "?" on the name
# marks it optional.
_Kind = Any
_POSITION: dict[str, _Kind] = {
    "symbol": "symbol",
    "quantity": "qty",
    "currentPrice": "price",
    "entryPrice": "price",
    "unrealizedPnl": "money",
    "unrealizedPnlPercent": "percent",
    "realizedPnl?": "money",
    "realizedPnlToday?": "money",
    "lastdayPrice?": "price",
    "dayPnl?": "money",
    "marketValue": "money",
    "side": ("enum", {"long", "short"}),
    "openedAt": "ts",
    "updatedAt?": "ts",
    "strategyId?": "str",
}
_ORDER: dict[str, _Kind] = {
    "orderId": "str",
    "brokerOrderId": "str",
    "symbol": "symbol",
    "side": ("enum", {"buy", "sell"}),
    "type": "str",
    "status": "str",
    "qty?": "qty",
    "filledQty?": "qty",
    "filledAvgPrice?": "price",
    "submittedAt": "ts",
    "filledAt?": "ts",
    "updatedAt?": "ts",
}
_ACCOUNT: dict[str, _Kind] = {
    "equity": "money",
    "buyingPower": "money",
    "cash": "money",
    "portfolioValue": "money",
    "dayPnl": "money",
    "dayPnlPercent": "percent",
    "realizedPnlToday?": "money",
    "timestamp": "ts",
}
_TRADE: dict[str, _Kind] = {
    "executionId": "str",
    "orderId": "str",
    "brokerOrderId?": "str",
    "symbol": "symbol",
    "side": ("enum", {"buy", "sell"}),
    "qty": "qty",
    "price": "price",
    "positionQty?": "qty",
    "partial?": "bool",
    "timestamp": "ts",
}
SCHEMAS: dict[str, dict[str, _Kind]] = {
    EventType.POSITION_UPDATE: _POSITION,
    EventType.ORDER_UPDATE: _ORDER,
    EventType.ACCOUNT_UPDATE: _ACCOUNT,
    EventType.TRADE_EXECUTED: _TRADE,
}


#: Wire format of each decimal kind (docs/protocol.md, "Number formats").
_FORMATS: dict[str, Callable[[Decimal], str]] = {
    "money": fmt_money,
    "price": fmt_price,
    "qty": fmt_qty,
    "percent": fmt_percent,
}

#: Plain decimal notation only ("-12.50", "0.5", ".5"): no exponent, underscore or bare dot, so
#: every client's parser (the SPA's included) reads the value exactly as the server does.
#: ASCII digits only (``re.ASCII``: no Arabic-Indic or fullwidth digits).
_PLAIN_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d+)?|\.\d+)$", re.ASCII)
#: Bounds of a pushed decimal: digits before and after the point (no exponent is allowed at all).
MAX_INT_DIGITS, MAX_FRACTION_DIGITS = 18, 10
#: Ticker symbols: Alpaca's US equity symbols (``AAPL``, ``BRK.B``), upper-cased from ASCII.
_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$", re.ASCII)
#: A wire userId: the canonical decimal form of a positive 64-bit integer (no sign, no leading
#: zero, ASCII digits only), so one user has exactly one spelling.
_USER_ID = re.compile(r"^[1-9][0-9]{0,18}$", re.ASCII)
_MAX_USER_ID = 2**63 - 1
#: Longest free-text field ("str" kind: order ids, status, strategy id) and timestamp.
MAX_STR_LEN, MAX_TS_LEN = 128, 40


def _show(value: Any) -> str:
    """``repr(value)`` cut to 40 characters, for error messages."""
    try:
        text = repr(value)
    except ValueError:  # e.g. an int too long to print (sys.get_int_max_str_digits)
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:37] + "..."


def _check(field: str, kind: _Kind, value: Any) -> Any:
    if isinstance(kind, tuple):
        if not isinstance(value, str) or value not in kind[1]:
            allowed = ", ".join(sorted(kind[1]))
            raise EventValidationError(field, f"must be one of {allowed}, got {_show(value)}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise EventValidationError(field, "must be a boolean")
        return value
    if not isinstance(value, str) or not value:
        raise EventValidationError(field, "must be a non-empty string")
    if kind == "symbol":
        upper = value.upper() if value.isascii() else value
        if not _SYMBOL.match(upper):
            raise EventValidationError(field, f"is not a ticker symbol: {_show(value)}")
        return upper
    if kind in _FORMATS:
        if not _PLAIN_DECIMAL.match(value):
            if value.lower().lstrip("+-").startswith(("nan", "snan", "inf")):
                raise EventValidationError(field, f"must be finite, got {_show(value)}")
            raise EventValidationError(field, f"must be a decimal string, got {_show(value)}")
        whole, _, fraction = value.lstrip("+-").partition(".")
        if len(whole.lstrip("0")) > MAX_INT_DIGITS or len(fraction) > MAX_FRACTION_DIGITS:
            raise EventValidationError(
                field,
                f"must have at most {MAX_INT_DIGITS} digits before the point and "
                f"{MAX_FRACTION_DIGITS} after, got {_show(value)}",
            )
        try:
            number = Decimal(value)
            if not number.is_finite():
                raise EventValidationError(field, f"must be finite, got {_show(value)}")
            return _FORMATS[kind](number)
        except (InvalidOperation, ArithmeticError, ValueError) as exc:
            if isinstance(exc, EventValidationError):
                raise
            raise EventValidationError(
                field, f"must be a decimal string, got {_show(value)}"
            ) from None
    if kind == "ts":
        try:
            if len(value) > MAX_TS_LEN or not value.isascii():
                raise ValueError(value)
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise EventValidationError(
                field, f"must be an ISO 8601 timestamp, got {_show(value)}"
            ) from None
        return value
    if len(value) > MAX_STR_LEN or not value.isprintable() or not value.strip():
        raise EventValidationError(
            field, f"must be at most {MAX_STR_LEN} printable characters, got {_show(value)}"
        )
    return value


def validate_event_data(type_: str, data: Any) -> dict[str, Any]:
    """Validate hook event ``data`` against the schema of ``type_``.

    Args:
        type_: one of :data:`HOOK_TYPES`.
        data: the decoded JSON value.

    Returns:
        A cleaned copy: symbols upper-cased, decimals in the wire formats (money ``"0.5"`` →
        ``"0.50"``, price ``"187.3200"`` → ``"187.32"``, quantity ``"10.0"`` → ``"10"``),
        unknown fields dropped.

    Raises:
        EventValidationError: naming every failing field (``"type"``, ``"data"`` or
            ``"data.<name>"``) in ``errors``, the first in ``field``.
    """
    schema = SCHEMAS.get(type_)
    if schema is None:
        allowed = ", ".join(sorted(SCHEMAS))
        raise EventValidationError("type", f"must be one of {allowed}, got {_show(type_)}")
    if not isinstance(data, dict):
        raise EventValidationError("data", "must be a JSON object")
    clean: dict[str, Any] = {}
    errors: list[tuple[str, str]] = []
    for key, kind in schema.items():
        name = key.rstrip("?")
        optional = key.endswith("?")
        if name not in data or data[name] is None:
            if not optional:
                errors.append((f"data.{name}", "is required"))
            continue
        try:
            clean[name] = _check(f"data.{name}", kind, data[name])
        except EventValidationError as exc:
            errors.extend(exc.errors)
    if errors:
        raise EventValidationError(*errors[0], errors=errors)
    return clean


def validate_pushed_event(body: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Validate an event pushed by another service (internal hook body or Redis ingest entry).

    Never raises anything else, whatever ``body`` holds (huge numbers, odd Unicode, wrong types).

    Args:
        body: the decoded ``{"userId", "type", "data"}`` object. ``userId`` is the canonical
            decimal string of a positive 64-bit id (``^[1-9][0-9]{0,18}$``, ASCII digits: no
            ``"01"``, ``"١"`` or ``"１"``) or the same number as a JSON integer.

    Returns:
        ``(user_id, type, clean data)`` with ``data`` as :func:`validate_event_data` returns it.

    Raises:
        EventValidationError: naming every failing field (``"userId"``, ``"type"``, ``"data"``,
            ``"data.<name>"``) in ``errors``.
    """
    errors: list[tuple[str, str]] = []
    user_id = body.get("userId")
    if isinstance(user_id, int) and not isinstance(user_id, bool) and 0 < user_id <= _MAX_USER_ID:
        user_id = str(user_id)
    if not isinstance(user_id, str) or not _USER_ID.match(user_id) or int(user_id) > _MAX_USER_ID:
        errors.append(
            ("userId", 'must be a user id string such as "1" (1 to 2^63-1, no zeros before)')
        )
    type_ = body.get("type")
    data: dict[str, Any] = {}
    try:
        data = validate_event_data(
            type_ if isinstance(type_, str) else _show(type_), body.get("data")
        )
    except EventValidationError as exc:
        errors.extend(exc.errors)
    if errors:
        raise EventValidationError(*errors[0], errors=errors)
    assert isinstance(user_id, str)
    return user_id, str(type_), data
