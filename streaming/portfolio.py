"""Per broker account portfolio state: Alpaca events in, wire-protocol changes out.

:class:`PortfolioState` is pure: no sockets, no clock except the injectable ``now``, no logging.
It is fed Alpaca's own JSON, exactly as alpaca-py delivers it with ``raw_data=True``:

* the ``data`` of a ``trade_updates`` stream message (``apply_trade_update``),
* market-data trade prices for held symbols (``apply_price``),
* the REST views ``GET /v2/account``, ``GET /v2/positions`` and ``GET /v2/orders`` (``sync``, the
  design's ``syncPositionsFromAlpaca``, run at start and every 60 s),

and answers with a list of :data:`Change` values, ``(event type, wire data)``, whose data are the
``PositionUpdate``, ``OrderUpdate``, ``AccountUpdate`` and ``TradeExecuted`` shapes of
``docs/protocol.md``. The caller adds ``seq``, ``userId`` and the envelope.

Units: money in USD, prices in USD per share, quantities in shares, percentages in percent. All
arithmetic is exact :class:`~decimal.Decimal`; rounding (ROUND_HALF_UP) happens once, when a value
is written to the wire (:mod:`streaming.money`). The formulas, with worked examples, are in
``docs/pnl.md``. Sources: Alpaca's position and account objects
(https://docs.alpaca.markets/reference/getallopenpositions,
https://docs.alpaca.markets/reference/getaccount-1, and the field docstrings of
``alpaca/trading/models.py``: ``equity = cash + long_market_value + short_market_value``,
``last_equity`` = equity at 16:00 ET on the previous trading day) and the ``trade_updates``
stream (https://docs.alpaca.markets/docs/websocket-streaming: ``fill``/``partial_fill`` carry
this execution's ``price`` and ``qty`` and the signed ``position_qty`` after it).

Every public mutator validates its whole input before touching the state, so an input rejected
with :class:`ValueError` leaves the state exactly as it was.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any

from streaming.money import (
    fmt_money,
    fmt_percent,
    fmt_price,
    fmt_qty,
    to_decimal,
)

__all__ = [
    "CLOSED_ORDER_STATUSES",
    "TRADE_EVENTS",
    "Change",
    "PortfolioState",
    "format_timestamp",
    "parse_timestamp",
    "utc_now",
]

Change = tuple[str, dict[str, Any]]
"""``(event type, wire data)``; the type is one of ``order_update``, ``trade_executed``,
``position_update``, ``account_update`` and the data is that type's shape in protocol.md."""

TRADE_EVENTS = frozenset(
    {
        # Alpaca's documented trade_updates events ...
        "new",
        "fill",
        "partial_fill",
        "canceled",
        "expired",
        "done_for_day",
        "replaced",
        "rejected",
        "pending_new",
        "stopped",
        "pending_cancel",
        "pending_replace",
        "calculated",
        "suspended",
        "order_replace_rejected",
        "order_cancel_rejected",
        # ... plus the extra values of alpaca-py's TradeEvent enum.
        "accepted",
        "restated",
    }
)
"""Events :meth:`PortfolioState.apply_trade_update` accepts; anything else is a ValueError."""

FILL_EVENTS = frozenset({"fill", "partial_fill"})

CLOSED_ORDER_STATUSES = frozenset({"filled", "canceled", "expired", "replaced", "rejected"})
"""Alpaca order statuses after which an order can no longer fill. Every other status
(``new``, ``partially_filled``, ``accepted``, ``pending_*``, ``held``, ``done_for_day``, …) counts
as open."""

_MAX_SEEN_EXECUTIONS = 10_000
_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
# Precision for intermediate results (average entry price, percentages). Independent of whatever
# the thread's decimal context happens to be.
_ARITH = Context(prec=40, rounding=ROUND_HALF_EVEN)


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime (the default ``now`` clock)."""
    return datetime.now(UTC)


def parse_timestamp(value: Any, *, field: str = "timestamp") -> datetime:
    """Parse an Alpaca ISO 8601 timestamp into an aware UTC datetime.

    Alpaca sends up to nanosecond precision (``"2024-05-14T14:31:02.123456789Z"``); digits beyond
    microseconds are truncated (Python's datetime stops at microseconds).

    Args:
        value: An ISO 8601 string with ``Z`` or a numeric UTC offset, or an aware ``datetime``.
        field: Name used in the error message.

    Returns:
        The instant, converted to UTC.

    Raises:
        ValueError: ``value`` is missing, not a string/datetime, unparsable, or has no UTC offset
            (a naive time is ambiguous).
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{field}: not an ISO 8601 timestamp: {value!r}") from None
    else:
        raise ValueError(f"{field}: expected an ISO 8601 timestamp, got {value!r}")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"{field}: timestamp has no UTC offset: {value!r}")
    return parsed.astimezone(UTC)


def format_timestamp(moment: datetime) -> str:
    """Write an aware datetime as the wire's ISO 8601 UTC form, ``2026-11-25T20:15:03.123456Z``.

    Args:
        moment: An aware datetime (any offset; converted to UTC).

    Returns:
        Always six fractional digits and a ``Z`` suffix.

    Raises:
        ValueError: ``moment`` is naive.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamp has no UTC offset: {moment!r}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextmanager
def _arith() -> Iterator[None]:
    with localcontext(_ARITH):
        yield


def _sign(d: Decimal) -> int:
    return (d > 0) - (d < 0)


def _require_mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{field}: expected an object, got {type(value).__name__}")
    return value


def _require_str(raw: Mapping[str, Any], key: str, prefix: str, *, empty: bool = False) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise ValueError(f"{prefix}{key}: expected a non-empty string, got {value!r}")
    return value


def _decimal(raw: Mapping[str, Any], key: str, prefix: str) -> Decimal:
    return to_decimal(raw.get(key), field=f"{prefix}{key}")


def _optional_decimal(raw: Mapping[str, Any], key: str, prefix: str) -> Decimal | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    return to_decimal(value, field=f"{prefix}{key}")


def _positive(raw: Mapping[str, Any], key: str, prefix: str) -> Decimal:
    value = _decimal(raw, key, prefix)
    if value <= 0:
        raise ValueError(f"{prefix}{key}: must be positive, got {raw.get(key)!r}")
    return value


def _optional_timestamp(raw: Mapping[str, Any], key: str, prefix: str) -> datetime | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    return parse_timestamp(value, field=f"{prefix}{key}")


def _without(wire: Mapping[str, Any] | None, key: str) -> dict[str, Any] | None:
    if wire is None:
        return None
    return {k: v for k, v in wire.items() if k != key}


# ---------------------------------------------------------------------------------------------
# Internal records
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Order:
    """One order, already validated and rendered as an ``OrderUpdate``."""

    broker_id: str
    symbol: str
    side: str
    status: str
    updated_at: datetime
    created_at: datetime
    filled_qty: Decimal | None
    wire: dict[str, Any]

    @property
    def is_open(self) -> bool:
        return self.status not in CLOSED_ORDER_STATUSES


@dataclass(frozen=True)
class _Execution:
    """The execution part of a ``fill``/``partial_fill`` event."""

    execution_id: str
    qty: Decimal  # shares of this execution, > 0
    price: Decimal  # USD per share, > 0
    position_qty: Decimal | None  # broker's signed position after it
    timestamp: datetime
    partial: bool


@dataclass(frozen=True)
class _Position:
    """An open (or just closed) position. ``qty`` is signed: negative is short."""

    symbol: str
    qty: Decimal
    avg_entry: Decimal
    current_price: Decimal | None
    price_at: datetime | None  # time of the price tick / fill that set current_price
    opened_at: datetime
    updated_at: datetime
    short: bool  # kept separately so a closed (qty 0) record still knows its side

    @property
    def mark(self) -> Decimal:
        """Price used for valuation: the last known price, else the entry price."""
        return self.avg_entry if self.current_price is None else self.current_price

    @property
    def market_value(self) -> Decimal:
        return self.qty * self.mark

    def wire(self) -> dict[str, Any]:
        """Render as ``PositionUpdate`` (see :meth:`PortfolioState.positions` for formulas)."""
        pnl = (self.mark - self.avg_entry) * self.qty
        cost = self.avg_entry * abs(self.qty)
        percent = _ZERO if cost == 0 else pnl / cost * _HUNDRED
        return {
            "symbol": self.symbol,
            "quantity": fmt_qty(abs(self.qty)),
            "currentPrice": fmt_price(self.mark),
            "entryPrice": fmt_price(self.avg_entry),
            "unrealizedPnl": fmt_money(pnl),
            "unrealizedPnlPercent": fmt_percent(percent),
            "marketValue": fmt_money(self.market_value),
            "side": "short" if self.short else "long",
            "openedAt": format_timestamp(self.opened_at),
            "updatedAt": format_timestamp(self.updated_at),
        }


@dataclass(frozen=True)
class _Account:
    """Broker account figures from the last sync plus the cash moved by fills since."""

    cash: Decimal
    last_equity: Decimal
    buying_power_at_sync: Decimal
    cash_at_sync: Decimal
    multiplier: Decimal
    updated_at: datetime


@dataclass(frozen=True)
class _SyncAccount:
    cash: Decimal
    last_equity: Decimal | None
    buying_power: Decimal
    multiplier: Decimal


@dataclass(frozen=True)
class _SyncPosition:
    symbol: str
    qty: Decimal
    avg_entry: Decimal
    current_price: Decimal | None


# ---------------------------------------------------------------------------------------------
# Parsing (validation happens here, before any state changes)
# ---------------------------------------------------------------------------------------------


def _parse_order(raw_value: Any, prefix: str) -> _Order:
    """Validate an Alpaca order object and render its ``OrderUpdate``.

    ``prefix`` is the field path used in error messages, e.g. ``"order."`` or ``"orders[3]."``.
    """
    raw = _require_mapping(raw_value, prefix.rstrip("."))
    broker_id = _require_str(raw, "id", prefix)
    client_id = _require_str(raw, "client_order_id", prefix, empty=True)
    symbol = _require_str(raw, "symbol", prefix)
    side = raw.get("side")
    if side not in ("buy", "sell"):
        raise ValueError(f"{prefix}side: expected 'buy' or 'sell', got {side!r}")
    order_type = raw.get("type") or raw.get("order_type")
    if not isinstance(order_type, str) or not order_type:
        raise ValueError(f"{prefix}type: expected a non-empty string, got {order_type!r}")
    status = _require_str(raw, "status", prefix)
    updated_at = parse_timestamp(raw.get("updated_at"), field=f"{prefix}updated_at")
    created_at = _optional_timestamp(raw, "created_at", prefix)
    submitted_at = _optional_timestamp(raw, "submitted_at", prefix)
    filled_at = _optional_timestamp(raw, "filled_at", prefix)
    qty = _optional_decimal(raw, "qty", prefix)
    filled_qty = _optional_decimal(raw, "filled_qty", prefix)
    filled_avg_price = _optional_decimal(raw, "filled_avg_price", prefix)

    created = created_at or submitted_at or updated_at
    wire: dict[str, Any] = {
        "orderId": client_id or broker_id,  # Alpaca always sets one; never send ""
        "brokerOrderId": broker_id,
        "symbol": symbol,
        "side": side,
        "type": order_type,
        "status": status,
    }
    if qty is not None:
        wire["qty"] = fmt_qty(qty)
    if filled_qty is not None:
        wire["filledQty"] = fmt_qty(filled_qty)
    if filled_avg_price is not None:
        wire["filledAvgPrice"] = fmt_price(filled_avg_price)
    wire["submittedAt"] = format_timestamp(submitted_at or created)
    if filled_at is not None:
        wire["filledAt"] = format_timestamp(filled_at)
    wire["updatedAt"] = format_timestamp(updated_at)
    return _Order(
        broker_id=broker_id,
        symbol=symbol,
        side=side,
        status=status,
        updated_at=updated_at,
        created_at=created,
        filled_qty=filled_qty,
        wire=wire,
    )


def _parse_trade_update(update: Any) -> tuple[str, _Order, _Execution | None]:
    raw = _require_mapping(update, "update")
    event = raw.get("event")
    if not isinstance(event, str) or event not in TRADE_EVENTS:
        raise ValueError(f"event: unknown trade_updates event {event!r}")
    timestamp = parse_timestamp(raw.get("timestamp"), field="timestamp")
    if raw.get("order") is None:
        raise ValueError("order: missing from the trade update")
    order = _parse_order(raw.get("order"), "order.")
    if event not in FILL_EVENTS:
        return event, order, None

    qty = _positive(raw, "qty", "")
    price = _positive(raw, "price", "")
    position_qty = _optional_decimal(raw, "position_qty", "")
    execution_id = raw.get("execution_id")
    if execution_id is None or execution_id == "":
        # Alpaca sends execution_id with every fill; without one, the order id plus its
        # cumulative filled quantity identifies the execution just as well.
        if order.filled_qty is None:
            raise ValueError("execution_id: missing (and order.filled_qty too, needed instead)")
        execution_id = f"{order.broker_id}:{fmt_qty(order.filled_qty)}"
    if not isinstance(execution_id, str):
        raise ValueError(f"execution_id: expected a string, got {execution_id!r}")
    execution = _Execution(
        execution_id=execution_id,
        qty=qty,
        price=price,
        position_qty=position_qty,
        timestamp=timestamp,
        partial=event == "partial_fill",
    )
    return event, order, execution


def _parse_sync_account(raw_value: Any) -> _SyncAccount:
    raw = _require_mapping(raw_value, "account")
    cash = _decimal(raw, "cash", "account.")
    last_equity = _optional_decimal(raw, "last_equity", "account.")
    if last_equity is None:
        last_equity = _optional_decimal(raw, "equity", "account.")
    buying_power = _optional_decimal(raw, "buying_power", "account.")
    multiplier = _optional_decimal(raw, "multiplier", "account.")
    if multiplier is not None and multiplier <= 0:
        raise ValueError(f"account.multiplier: must be positive, got {raw.get('multiplier')!r}")
    return _SyncAccount(
        cash=cash,
        last_equity=last_equity,
        buying_power=cash if buying_power is None else buying_power,
        multiplier=Decimal(1) if multiplier is None else multiplier,
    )


def _parse_sync_position(raw_value: Any, prefix: str) -> tuple[str, _SyncPosition | None]:
    """Validate an Alpaca position object; ``None`` for a zero quantity (nothing held)."""
    raw = _require_mapping(raw_value, prefix.rstrip("."))
    symbol = _require_str(raw, "symbol", prefix)
    qty = _decimal(raw, "qty", prefix)
    side = raw.get("side")
    if side is not None and side not in ("long", "short"):
        raise ValueError(f"{prefix}side: expected 'long' or 'short', got {side!r}")
    avg_entry = _decimal(raw, "avg_entry_price", prefix)
    if avg_entry < 0:
        raise ValueError(f"{prefix}avg_entry_price: must not be negative, got {avg_entry}")
    current_price = _optional_decimal(raw, "current_price", prefix)
    if current_price is not None and current_price <= 0:
        raise ValueError(f"{prefix}current_price: must be positive, got {current_price}")
    if qty == 0:
        return symbol, None
    # Alpaca's REST qty is negative for a short; some simulators send a positive qty with
    # side "short". Either marks a short.
    short = side == "short" or qty < 0
    signed = -abs(qty) if short else abs(qty)
    return symbol, _SyncPosition(symbol, signed, avg_entry, current_price)


# ---------------------------------------------------------------------------------------------
# The state
# ---------------------------------------------------------------------------------------------


class PortfolioState:
    """Positions, orders, recent executions and account figures of one broker account.

    Wire formulas (Alpaca's conventions; ``qty`` signed, negative for a short; ``price`` is the
    last trade price, or the average entry price while none is known):

    * ``marketValue = qty * price`` (negative for a short)
    * ``unrealizedPnl = (price - avgEntry) * qty`` (a short gains when the price falls)
    * ``unrealizedPnlPercent = unrealizedPnl / (avgEntry * |qty|) * 100``
    * ``equity = portfolioValue = cash + Σ marketValue``
    * ``dayPnl = equity - last_equity``; ``dayPnlPercent = dayPnl / last_equity * 100``
    * ``buyingPower = max(0, buying_power_at_sync + (cash - cash_at_sync) * multiplier)``

    Args:
        account_id: The broker account this state belongs to (kept for the caller's logs and
            lookups; not part of any wire shape).
        now: Clock returning an aware datetime; used for ``updatedAt``/``timestamp`` of changes
            made by :meth:`sync` and by :meth:`apply_price` without ``at``.
        max_recent_orders: How many orders to remember. Open orders are never dropped; when over
            the limit the oldest closed orders go first.
        max_recent_trades: How many executions :meth:`trades` keeps (oldest dropped first).

    Raises:
        ValueError: a limit is below 1.
    """

    def __init__(
        self,
        account_id: str,
        *,
        now: Callable[[], datetime] = utc_now,
        max_recent_orders: int = 200,
        max_recent_trades: int = 200,
    ) -> None:
        if max_recent_orders < 1 or max_recent_trades < 1:
            raise ValueError("max_recent_orders and max_recent_trades must be at least 1")
        self.account_id = account_id
        self._now = now
        self._max_orders = max_recent_orders
        self._orders: dict[str, _Order] = {}
        self._positions: dict[str, _Position] = {}
        self._trades: deque[dict[str, Any]] = deque(maxlen=max_recent_trades)
        self._seen_executions: OrderedDict[str, None] = OrderedDict()
        self._account: _Account | None = None

    # -- clock ---------------------------------------------------------------------------------

    def _clock(self) -> datetime:
        return parse_timestamp(self._now(), field="now()")

    # -- trade_updates -------------------------------------------------------------------------

    def apply_trade_update(self, update: Mapping[str, Any]) -> list[Change]:
        """Apply one ``trade_updates`` event (the ``data`` of the stream message).

        Every accepted event yields an ``order_update`` (the order as Alpaca now reports it).
        ``fill`` and ``partial_fill`` then also yield, in this order, ``trade_executed`` (this
        execution's ``qty`` shares at ``price`` USD, and ``positionQty``, the signed position
        after it), ``position_update`` for the symbol and, once an account is known (after the
        first :meth:`sync` with one), ``account_update``.

        Position arithmetic for an execution of ``q`` shares (``+q`` buy, ``-q`` sell) at ``p``,
        on a position ``Q`` shares at average entry ``A``:

        * flat, or same direction (buy while long, sell while short):
          ``A' = (Q*A + q*p) / (Q + q)`` (signed), ``Q' = Q + q``; a position opened from flat
          gets ``openedAt`` = the execution time.
        * reducing (sell while long, buy while short): ``Q' = Q + q``, ``A`` unchanged.
          ``Q' = 0`` closes it: a ``position_update`` with ``quantity "0"``, then it is removed.
        * crossing zero: the remainder ``Q + q`` opens a new position on the other side at ``p``
          with a new ``openedAt``.
        * Alpaca's ``position_qty`` is the broker's truth: if it disagrees with ``Q'`` it wins,
          keeping the average entry computed above (or the previous one, or ``p``, whichever
          belongs to a position on the same side as ``position_qty``).

        Cash (once an account is known): a buy spends ``q*p`` USD, a sell receives ``q*p``.
        The execution price also becomes the symbol's current price.

        Args:
            update: ``{"event", "execution_id", "timestamp", "price", "qty", "position_qty",
                "order": {...}}``; prices and quantities as decimal strings or numbers (USD,
                shares).

        Returns:
            The changes to publish. ``[]`` when the order's ``updated_at`` is older than the
            version held (a stale, out-of-order event), when the execution id was already
            applied (a duplicate fill), or when a non-fill event repeats exactly the order
            version already held.

        Raises:
            ValueError: ``update`` is malformed: not an object, unknown ``event``, missing or
                bad ``timestamp``, missing ``order`` or bad order fields (``order.id``,
                ``order.symbol``, ``order.side``, ``order.updated_at``, …), a fill without a
                positive ``price``/``qty``, a non-numeric ``position_qty``. The message names
                the field. Nothing is changed.
        """
        with _arith():
            _event, order, execution = _parse_trade_update(update)
            held = self._orders.get(order.broker_id)
            if held is not None and order.updated_at < held.updated_at:
                return []
            if execution is not None and execution.execution_id in self._seen_executions:
                return []
            if (
                execution is None
                and held is not None
                and held.updated_at == order.updated_at
                and held.wire == order.wire
            ):
                return []
            self._store_order(order)
            changes: list[Change] = [("order_update", dict(order.wire))]
            if execution is not None:
                changes.extend(self._apply_execution(order, execution))
            return changes

    def _apply_execution(self, order: _Order, ex: _Execution) -> list[Change]:
        signed = ex.qty if order.side == "buy" else -ex.qty
        old = self._positions.get(order.symbol)
        old_qty = _ZERO if old is None else old.qty
        if ex.position_qty is not None and ex.position_qty == old_qty:
            # An execution always changes the position, so if we already hold what the broker
            # says the position is *after* it, a REST sync taken after the fill has counted it:
            # record the execution, but do not move the position or the cash a second time.
            return self._record_reflected(order, ex, old)
        new_qty = old_qty + signed

        # What the arithmetic says: (avg entry, openedAt) of the position after the execution.
        computed: tuple[Decimal, datetime] | None
        if old is None or old_qty == 0:
            computed = (ex.price, ex.timestamp)
        elif _sign(signed) == _sign(old_qty):
            avg = (old_qty * old.avg_entry + signed * ex.price) / new_qty
            computed = (avg, old.opened_at)
        elif new_qty == 0:
            computed = None
        elif _sign(new_qty) == _sign(old_qty):
            computed = (old.avg_entry, old.opened_at)
        else:  # crossed zero: the remainder is a new position at the fill price
            computed = (ex.price, ex.timestamp)

        final_qty = new_qty if ex.position_qty is None else ex.position_qty
        if final_qty == 0:
            entry = (
                (old.avg_entry, old.opened_at)
                if old is not None and old_qty != 0
                else (ex.price, ex.timestamp)
            )
            short = old.short if old is not None and old_qty != 0 else signed < 0
        else:
            short = final_qty < 0
            if computed is not None and _sign(final_qty) == _sign(new_qty):
                entry = computed
            elif old is not None and old_qty != 0 and _sign(final_qty) == _sign(old_qty):
                entry = (old.avg_entry, old.opened_at)
            else:
                entry = (ex.price, ex.timestamp)

        position = _Position(
            symbol=order.symbol,
            qty=final_qty,
            avg_entry=entry[0],
            current_price=ex.price,
            price_at=ex.timestamp,
            opened_at=entry[1],
            updated_at=ex.timestamp,
            short=short,
        )
        if final_qty == 0:
            self._positions.pop(order.symbol, None)
        else:
            self._positions[order.symbol] = position

        trade = self._record_trade(order, ex, final_qty)

        changes: list[Change] = [
            ("trade_executed", dict(trade)),
            ("position_update", position.wire()),
        ]
        if self._account is not None:
            self._account = replace(
                self._account,
                cash=self._account.cash - signed * ex.price,
                updated_at=ex.timestamp,
            )
            changes.append(("account_update", self._account_wire(self._account)))
        return changes

    def _record_reflected(
        self, order: _Order, ex: _Execution, old: _Position | None
    ) -> list[Change]:
        trade = self._record_trade(order, ex, old.qty if old is not None else _ZERO)
        changes: list[Change] = [("trade_executed", dict(trade))]
        if old is not None:
            changes.append(("position_update", old.wire()))
        return changes

    def _record_trade(self, order: _Order, ex: _Execution, position_qty: Decimal) -> dict[str, Any]:
        """Remember one execution and return its ``TradeExecuted`` wire dict."""
        trade = {
            "executionId": ex.execution_id,
            "orderId": order.wire["orderId"],
            "brokerOrderId": order.broker_id,
            "symbol": order.symbol,
            "side": order.side,
            "qty": fmt_qty(ex.qty),
            "price": fmt_price(ex.price),
            "positionQty": fmt_qty(position_qty),
            "partial": ex.partial,
            "timestamp": format_timestamp(ex.timestamp),
        }
        self._trades.append(trade)
        self._remember_execution(ex.execution_id)
        return trade

    def _remember_execution(self, execution_id: str) -> None:
        self._seen_executions[execution_id] = None
        while len(self._seen_executions) > _MAX_SEEN_EXECUTIONS:
            self._seen_executions.popitem(last=False)

    def _store_order(self, order: _Order) -> None:
        self._orders[order.broker_id] = order
        excess = len(self._orders) - self._max_orders
        if excess <= 0:
            return
        closed = sorted(
            (o for o in self._orders.values() if not o.is_open),
            key=lambda o: (o.created_at, o.broker_id),
        )
        for victim in closed[:excess]:
            del self._orders[victim.broker_id]

    # -- market data ---------------------------------------------------------------------------

    def apply_price(
        self, symbol: str, price: Decimal | str | float, at: datetime | None = None
    ) -> list[Change]:
        """Mark a held symbol to a new last-trade price (from the market-data stream).

        Only symbols with an open position are affected. The position's ``marketValue``,
        ``unrealizedPnl`` and ``unrealizedPnlPercent`` and the account's ``equity``/``dayPnl``
        follow from the formulas in the class docstring.

        Args:
            symbol: Ticker, e.g. ``"AAPL"`` (upper-cased before lookup).
            price: Last trade price in USD per share, > 0. Floats (msgpack) go through ``str()``.
            at: Time of the trade (aware); default ``now()``. A tick with an ``at`` older than
                the tick or fill that set the current price is ignored.

        Returns:
            ``position_update`` then ``account_update`` (the latter once an account is known),
            each only if its wire form actually changed; ``[]`` for a symbol not held.

        Raises:
            ValueError: ``symbol`` is empty, ``price`` is not a positive finite number, or ``at``
                is naive. Nothing is changed.
        """
        if not isinstance(symbol, str) or not symbol.strip():
            raise ValueError(f"symbol: expected a non-empty string, got {symbol!r}")
        value = to_decimal(price, field="price")
        if value <= 0:
            raise ValueError(f"price: must be positive, got {price!r}")
        tick_at = None if at is None else parse_timestamp(at, field="at")
        with _arith():
            held = self._positions.get(symbol.strip().upper())
            if held is None:
                return []
            if tick_at is not None and held.price_at is not None and tick_at < held.price_at:
                return []
            moment = tick_at if tick_at is not None else self._clock()
            before_position = _without(held.wire(), "updatedAt")
            before_account = self._account_core()
            position = replace(
                held,
                current_price=value,
                price_at=tick_at if tick_at is not None else held.price_at,
            )
            changes: list[Change] = []
            if _without(position.wire(), "updatedAt") != before_position:
                position = replace(position, updated_at=moment)
                changes.append(("position_update", position.wire()))
            self._positions[position.symbol] = position
            if self._account is not None and self._account_core() != before_account:
                self._account = replace(self._account, updated_at=moment)
                changes.append(("account_update", self._account_wire(self._account)))
            return changes

    # -- REST reconcile ------------------------------------------------------------------------

    def sync(
        self,
        account: Mapping[str, Any] | None,
        positions: Sequence[Mapping[str, Any]],
        orders: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[Change]:
        """Reconcile with the broker's REST view (``syncPositionsFromAlpaca``).

        * ``positions`` (``GET /v2/positions``) replace each symbol's qty, average entry and
          current price (the local price is kept when REST has none). A short is a negative
          ``qty`` or ``side: "short"``. Symbols held locally but absent from REST are closed
          (``quantity "0"``). A position that persists on the same side keeps its ``openedAt``;
          a new one (or one that changed side) gets ``now()``.
        * ``orders`` (``GET /v2/orders``, the open orders), when given, replace the open-order
          set: listed orders are stored unless the version held is newer (``updated_at``), and
          held open orders that are not listed are forgotten (their final status is unknown, so
          nothing is published for them).
        * ``account`` (``GET /v2/account``), when given, sets ``cash``, ``last_equity`` (or
          ``equity`` when absent), ``buying_power`` (or ``cash``) and ``multiplier`` (or 1); it
          also becomes the new base of the buying-power estimate.

        Args:
            account: Alpaca account object, or ``None`` to keep the current account figures.
            positions: Alpaca position objects (USD strings, shares).
            orders: Alpaca order objects, or ``None`` to leave orders alone.

        Returns:
            Only what differs on the wire: ``order_update``s, then ``position_update``s (by
            symbol), then the ``account_update`` last. An unchanged view returns ``[]``.

        Raises:
            ValueError: a malformed account (``account.cash``, …), position
                (``positions[i].qty``, ``positions[i].avg_entry_price``, …) or order
                (``orders[i].id``, …). Nothing is changed.
        """
        parsed_account = None if account is None else _parse_sync_account(account)
        if isinstance(positions, (str, bytes)) or not isinstance(positions, Sequence):
            raise ValueError("positions: expected a list of position objects")
        parsed_positions: dict[str, _SyncPosition] = {}
        for index, raw in enumerate(positions):
            symbol, parsed = _parse_sync_position(raw, f"positions[{index}].")
            if parsed is not None:
                parsed_positions[symbol] = parsed
            else:
                parsed_positions.pop(symbol, None)
        parsed_orders: list[_Order] | None = None
        if orders is not None:
            if isinstance(orders, (str, bytes)) or not isinstance(orders, Sequence):
                raise ValueError("orders: expected a list of order objects")
            parsed_orders = [_parse_order(raw, f"orders[{i}].") for i, raw in enumerate(orders)]
        moment = self._clock()

        with _arith():
            before_account = self._account_core()
            order_changes = [] if parsed_orders is None else self._sync_orders(parsed_orders)
            position_changes = self._sync_positions(parsed_positions, moment)
            if parsed_account is not None:
                self._set_account(parsed_account, moment)
            changes = order_changes + position_changes
            if self._account is not None:
                if self._account_core() != before_account:
                    self._account = replace(self._account, updated_at=moment)
                    changes.append(("account_update", self._account_wire(self._account)))
            return changes

    def _sync_orders(self, listed: list[_Order]) -> list[Change]:
        changes: list[Change] = []
        listed_ids = {order.broker_id for order in listed}
        for broker_id in [oid for oid, o in self._orders.items() if o.is_open]:
            if broker_id not in listed_ids:
                del self._orders[broker_id]
        for order in sorted(listed, key=lambda o: (o.created_at, o.broker_id)):
            held = self._orders.get(order.broker_id)
            if held is not None and held.updated_at > order.updated_at:
                continue
            self._store_order(order)
            if held is None or held.wire != order.wire:
                changes.append(("order_update", dict(order.wire)))
        return changes

    def _sync_positions(self, listed: dict[str, _SyncPosition], moment: datetime) -> list[Change]:
        changes: list[Change] = []
        for symbol in sorted(set(listed) | set(self._positions)):
            held = self._positions.get(symbol)
            rest = listed.get(symbol)
            if rest is None:
                if held is None:  # unreachable: the symbol came from one of the two
                    continue
                closed = replace(held, qty=_ZERO, updated_at=moment)
                del self._positions[symbol]
                changes.append(("position_update", closed.wire()))
                continue
            same_side = held is not None and _sign(held.qty) == _sign(rest.qty)
            position = _Position(
                symbol=symbol,
                qty=rest.qty,
                avg_entry=rest.avg_entry,
                current_price=(
                    rest.current_price
                    if rest.current_price is not None
                    else (held.current_price if held is not None else None)
                ),
                price_at=held.price_at if held is not None else None,
                opened_at=held.opened_at if held is not None and same_side else moment,
                updated_at=held.updated_at if held is not None else moment,
                short=rest.qty < 0,
            )
            if held is None or _without(position.wire(), "updatedAt") != _without(
                held.wire(), "updatedAt"
            ):
                position = replace(position, updated_at=moment)
                changes.append(("position_update", position.wire()))
            self._positions[symbol] = position
        return changes

    def _set_account(self, parsed: _SyncAccount, moment: datetime) -> None:
        last_equity = parsed.last_equity
        if last_equity is None:
            last_equity = parsed.cash + sum(
                (p.market_value for p in self._positions.values()), _ZERO
            )
        self._account = _Account(
            cash=parsed.cash,
            last_equity=last_equity,
            buying_power_at_sync=parsed.buying_power,
            cash_at_sync=parsed.cash,
            multiplier=parsed.multiplier,
            updated_at=self._account.updated_at if self._account is not None else moment,
        )

    # -- account -------------------------------------------------------------------------------

    def _account_wire(self, account: _Account) -> dict[str, Any]:
        equity = account.cash + sum((p.market_value for p in self._positions.values()), _ZERO)
        day_pnl = equity - account.last_equity
        day_pct = _ZERO if account.last_equity == 0 else day_pnl / account.last_equity * _HUNDRED
        buying_power = max(
            _ZERO,
            account.buying_power_at_sync
            + (account.cash - account.cash_at_sync) * account.multiplier,
        )
        return {
            "equity": fmt_money(equity),
            "buyingPower": fmt_money(buying_power),
            "cash": fmt_money(account.cash),
            "portfolioValue": fmt_money(equity),
            "dayPnl": fmt_money(day_pnl),
            "dayPnlPercent": fmt_percent(day_pct),
            "timestamp": format_timestamp(account.updated_at),
        }

    def _account_core(self) -> dict[str, Any] | None:
        if self._account is None:
            return None
        return _without(self._account_wire(self._account), "timestamp")

    # -- read side -----------------------------------------------------------------------------

    def positions(self) -> list[dict[str, Any]]:
        """Return the open positions as ``PositionUpdate`` dicts, sorted by symbol.

        Returns:
            Fresh dicts (safe to mutate). ``quantity`` is ``|qty|`` shares, ``side`` gives the
            sign; money in USD (2 dp), prices in USD per share (2–4 dp).
        """
        with _arith():
            return [self._positions[s].wire() for s in sorted(self._positions)]

    def orders(self, *, open_only: bool = False) -> list[dict[str, Any]]:
        """Return remembered orders as ``OrderUpdate`` dicts, newest first.

        Args:
            open_only: Only orders whose status is not in :data:`CLOSED_ORDER_STATUSES`.

        Returns:
            Fresh dicts, sorted by ``created_at`` (else ``submitted_at``), newest first.
        """
        chosen = [o for o in self._orders.values() if o.is_open or not open_only]
        chosen.sort(key=lambda o: (o.created_at, o.broker_id), reverse=True)
        return [dict(o.wire) for o in chosen]

    def trades(self) -> list[dict[str, Any]]:
        """Return the recent executions as ``TradeExecuted`` dicts, newest last."""
        return [dict(t) for t in self._trades]

    def account(self) -> dict[str, Any] | None:
        """Return the ``AccountUpdate`` for the current state, or ``None`` before any account sync.

        Returns:
            USD amounts with 2 dp and percentages with 2 dp; ``timestamp`` is the time of the
            last change that altered the account figures.
        """
        if self._account is None:
            return None
        with _arith():
            return self._account_wire(self._account)

    def symbols(self) -> set[str]:
        """Return the symbols with an open position (to subscribe market data for)."""
        return set(self._positions)
