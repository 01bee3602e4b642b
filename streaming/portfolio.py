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
from fractions import Fraction
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
_FZERO = Fraction(0)
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


def _dec(value: Fraction) -> Decimal:
    """Render an exact fraction as a Decimal good to 40 significant digits (for the wire)."""
    with localcontext(_ARITH):
        return Decimal(value.numerator) / Decimal(value.denominator)


def _shown_as(exact: Fraction, shown: Decimal) -> bool:
    """Whether the broker's ``shown`` rendering is a rounding of ``exact`` (≥ 4 places assumed).

    Alpaca renders prices with at least 4 decimal places of precision; the simulator trims
    trailing zeros (``"100.01"`` for 100.0100), so the tolerance is half a unit of the 4th
    place, or of the last place shown when the broker shows more.
    """
    exponent = shown.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) else 0
    tolerance = Fraction(1, 2 * 10 ** max(places, 4))
    return abs(exact - Fraction(shown)) <= tolerance


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
    """An open (or just closed) position. ``qty`` is signed: negative is short.

    ``avg`` is the exact average entry price (cost basis / qty, a :class:`Fraction`), and
    ``realized`` the exact realized P&L in USD since ``opened_at`` (average-cost method).
    """

    symbol: str
    qty: Decimal
    avg: Fraction
    current_price: Decimal | None
    price_at: datetime | None  # time of the price tick / fill that set current_price
    opened_at: datetime
    updated_at: datetime
    short: bool  # kept separately so a closed (qty 0) record still knows its side
    realized: Fraction = _FZERO

    @property
    def mark(self) -> Fraction:
        """Price used for valuation: the last known price, else the entry price."""
        return self.avg if self.current_price is None else Fraction(self.current_price)

    @property
    def market_value(self) -> Fraction:
        return Fraction(self.qty) * self.mark

    def wire(
        self, realized_today: Fraction, lastday: Decimal | None, day_pnl: Fraction | None
    ) -> dict[str, Any]:
        """Render as ``PositionUpdate`` (see :class:`PortfolioState` for the formulas).

        Args:
            realized_today: the symbol's realized P&L today in USD (it outlives the position).
            lastday: the broker's previous close of the symbol (USD per share), None if unknown.
            day_pnl: the symbol's P&L since the last close in USD, None if unknown.
        """
        qty = Fraction(self.qty)
        pnl = (self.mark - self.avg) * qty
        cost = self.avg * abs(qty)
        percent = _FZERO if cost == 0 else pnl / cost * 100
        return {
            "symbol": self.symbol,
            "quantity": fmt_qty(abs(self.qty)),
            "currentPrice": fmt_price(_dec(self.mark)),
            "entryPrice": fmt_price(_dec(self.avg)),
            "unrealizedPnl": fmt_money(_dec(pnl)),
            "unrealizedPnlPercent": fmt_percent(_dec(percent)),
            "realizedPnl": fmt_money(_dec(self.realized)),
            "realizedPnlToday": fmt_money(_dec(realized_today)),
            "lastdayPrice": None if lastday is None else fmt_price(lastday),
            "dayPnl": None if day_pnl is None else fmt_money(_dec(day_pnl)),
            "marketValue": fmt_money(_dec(self.market_value)),
            "side": "short" if self.short else "long",
            "openedAt": format_timestamp(self.opened_at),
            "updatedAt": format_timestamp(self.updated_at),
        }


@dataclass(frozen=True)
class _Today:
    """One symbol's figures for the current trading day.

    ``realized``: realized P&L today (USD, average-cost method). ``open_qty``/``open_cost``:
    shares opened today and still held, and what they cost (USD) — what a pattern day trader's
    day-trading buying power is using for this symbol.

    The day P&L (``dayPnl``, see :meth:`PortfolioState._day_pnl`) uses the rest:
    ``start_qty`` the signed shares held at the last close; ``start_sync`` the number of the
    sync whose REST view gave ``start_qty`` (None when it is the position held before the day's
    first execution seen) and ``start_rolled`` whether that sync began a new trading day;
    ``cash_flow`` the cash the day's executions in the symbol moved (USD,
    ``+`` for a sell, ``−`` for a buy); ``lastday`` the broker's ``lastday_price`` (USD per
    share, None until a sync gives one).
    """

    realized: Fraction = _FZERO
    open_qty: Decimal = _ZERO
    open_cost: Fraction = _FZERO
    start_qty: Decimal = _ZERO
    start_sync: int | None = None
    start_rolled: bool = False
    cash_flow: Fraction = _FZERO
    lastday: Decimal | None = None


@dataclass(frozen=True)
class _Account:
    """Broker account figures from the last sync plus the cash moved by fills since."""

    cash: Decimal
    last_equity: Decimal | None  # None: the broker did not say (day P&L unknown)
    multiplier: Decimal
    day_trading: bool  # pattern day trader (multiplier 4): buying power is day-trading BP
    dtbp_at_sync: Decimal
    dt_used_at_sync: Fraction
    trading_day: str | None  # the broker's balance_asof
    updated_at: datetime


@dataclass(frozen=True)
class _SyncAccount:
    cash: Decimal
    last_equity: Decimal | None
    buying_power: Decimal
    multiplier: Decimal
    trading_day: str | None


@dataclass(frozen=True)
class _SyncPosition:
    symbol: str
    qty: Decimal
    avg_entry: Decimal
    current_price: Decimal | None
    lastday: Decimal | None


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
    buying_power = _optional_decimal(raw, "buying_power", "account.")
    multiplier = _optional_decimal(raw, "multiplier", "account.")
    if multiplier is not None and multiplier <= 0:
        raise ValueError(f"account.multiplier: must be positive, got {raw.get('multiplier')!r}")
    trading_day = raw.get("balance_asof")
    if trading_day is not None and not isinstance(trading_day, str):
        raise ValueError(f"account.balance_asof: expected a date string, got {trading_day!r}")
    return _SyncAccount(
        cash=cash,
        last_equity=last_equity,
        buying_power=cash if buying_power is None else buying_power,
        multiplier=Decimal(1) if multiplier is None else multiplier,
        trading_day=trading_day or None,
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
    lastday = _optional_decimal(raw, "lastday_price", prefix)
    if lastday is not None and lastday < 0:
        raise ValueError(f"{prefix}lastday_price: must not be negative, got {lastday}")
    if lastday == 0:
        lastday = None  # no previous close (e.g. the symbol's first session): day P&L unknown
    if qty == 0:
        return symbol, None
    # Alpaca's REST qty is negative for a short; some simulators send a positive qty with
    # side "short". Either marks a short.
    short = side == "short" or qty < 0
    signed = -abs(qty) if short else abs(qty)
    return symbol, _SyncPosition(symbol, signed, avg_entry, current_price, lastday)


def _parse_orders(raw: Sequence[Mapping[str, Any]] | None, name: str) -> list[_Order] | None:
    if raw is None:
        return None
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise ValueError(f"{name}: expected a list of order objects")
    return [_parse_order(item, f"{name}[{i}].") for i, item in enumerate(raw)]


# ---------------------------------------------------------------------------------------------
# The state
# ---------------------------------------------------------------------------------------------


class PortfolioState:
    """Positions, orders, recent executions and account figures of one broker account.

    Wire formulas (Alpaca's conventions; ``qty`` signed, negative for a short; ``price`` is the
    last trade price, or the average entry price while none is known; ``avgEntry`` is kept exact,
    cost basis / qty, and only rounded on the wire):

    * ``marketValue = qty * price`` (negative for a short)
    * ``unrealizedPnl = (price - avgEntry) * qty`` (a short gains when the price falls)
    * ``unrealizedPnlPercent = unrealizedPnl / (avgEntry * |qty|) * 100``
    * ``realizedPnl`` (since the position opened) and ``realizedPnlToday`` (the symbol, this
      trading day): ``Σ closed * (fill price - avgEntry) * sign(qty)`` over reducing executions
      (average-cost method)
    * ``lastdayPrice = L``, the broker's ``lastday_price`` from the last sync (None until one
      gives it; replaced on a new trading day), and ``dayPnl = Q * price − Q0 * L + F`` (the
      symbol, this trading day): ``Q0`` the signed shares held at the last close, ``F`` the cash
      the day's executions in the symbol moved; None when ``Q0 ≠ 0`` and ``L`` is unknown. With
      no cash movements the symbols' ``dayPnl`` sum to ``equity − last_equity``. Source:
      Alpaca's position object (``lastday_price``, ``unrealized_intraday_pl``;
      https://docs.alpaca.markets/reference/positions); worked examples in ``docs/pnl.md``.
    * ``equity = portfolioValue = cash + Σ marketValue``
    * ``dayPnl = equity - last_equity`` (``None`` when the broker gave no ``last_equity``);
      ``dayPnlPercent = dayPnl / last_equity * 100``; ``realizedPnlToday = Σ`` of the symbols'
    * ``buyingPower`` per Alpaca's account docs: cash account (multiplier 1) ``cash``; margin
      (multiplier 2) ``2 * equity - (long + |short| market value)`` (Reg T, 50 % initial
      margin); pattern day trader (multiplier 4) the day-trading buying power of the last sync
      minus the cost of shares opened today since, plus the cost of today's shares closed since.
      Never below 0.

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
        self._today: dict[str, _Today] = {}
        self._dt_used: Fraction = _FZERO
        # What the last sync's REST view had already counted: each listed order's filled_qty
        # (open and recently closed orders), and the positions, for symbols untouched since.
        self._synced_filled: dict[str, Decimal] = {}
        self._synced_qty: dict[str, Decimal] | None = None
        self._touched: set[str] = set()
        self._syncs = 0  # syncs applied (numbers the REST views, for _Today.start_sync)

    # -- clock ---------------------------------------------------------------------------------

    def _clock(self) -> datetime:
        return parse_timestamp(self._now(), field="now()")

    # -- trade_updates -------------------------------------------------------------------------

    def apply_trade_update(self, update: Mapping[str, Any]) -> list[Change]:
        """Apply one ``trade_updates`` event (the ``data`` of the stream message).

        Every accepted event whose order version is not older than the one held yields an
        ``order_update`` (the order as Alpaca now reports it). ``fill`` and ``partial_fill``
        then also yield, in this order, ``trade_executed`` (this execution's ``qty`` shares at
        ``price`` USD, and ``positionQty``, the broker's signed position after it),
        ``position_update`` for the symbol and, once an account is known (after the first
        :meth:`sync` with one), ``account_update``. Executions are de-duplicated by execution
        id only: one that arrives with an older order version than the one held (out of order,
        or after a sync stored a newer version) is still applied and published, without an
        ``order_update``.

        Position arithmetic for an execution of ``q`` shares (``+q`` buy, ``-q`` sell) at ``p``,
        on a position ``Q`` shares at exact average entry ``A`` (a fraction):

        * flat, or same direction (buy while long, sell while short):
          ``A' = (Q*A + q*p) / (Q + q)`` (signed), ``Q' = Q + q``; a position opened from flat
          gets ``openedAt`` = the execution time.
        * reducing (sell while long, buy while short): ``Q' = Q + q``, ``A`` unchanged; realized
          P&L ``+= closed * (p - A) * sign(Q)``. ``Q' = 0`` closes it: a ``position_update``
          with ``quantity "0"``, then it is removed.
        * crossing zero: the old position is closed (realized as above) and the remainder
          ``Q + q`` opens a new position at ``p`` with a new ``openedAt`` and no realized P&L.
        * already counted by the last :meth:`sync` (its order's ``filled_qty`` is at most what
          the sync's order list showed; or, for an order the sync did not list, the symbol is
          untouched since the sync and ``position_qty`` equals the synced quantity): recorded
          and published (``trade_executed``) but neither the position nor the cash moves again.

        Cash (once an account is known): a buy spends ``q*p`` USD, a sell receives ``q*p``.
        The execution price also becomes the symbol's current price.

        Args:
            update: ``{"event", "execution_id", "timestamp", "price", "qty", "position_qty",
                "order": {...}}``; prices and quantities as decimal strings or numbers (USD,
                shares).

        Returns:
            The changes to publish. ``[]`` when the execution id was already applied (a
            duplicate fill), or for a non-fill event whose order version is older than, or
            exactly repeats, the version held.

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
            stale = held is not None and order.updated_at < held.updated_at
            if execution is None:
                repeat = (
                    held is not None
                    and held.updated_at == order.updated_at
                    and held.wire == order.wire
                )
                if stale or repeat:
                    return []
                self._store_order(order)
                return [("order_update", dict(order.wire))]
            if execution.execution_id in self._seen_executions:
                return []
            changes: list[Change] = []
            if not stale:
                self._store_order(order)
                changes.append(("order_update", dict(order.wire)))
            changes.extend(self._apply_execution(order, execution))
            return changes

    def _counted_by_sync(self, order: _Order, ex: _Execution, symbol: str) -> bool:
        listed = self._synced_filled.get(order.broker_id)
        if listed is not None and order.filled_qty is not None:
            return order.filled_qty <= listed
        if self._synced_qty is None or symbol in self._touched or ex.position_qty is None:
            return False
        return ex.position_qty == self._synced_qty.get(symbol, _ZERO)

    def _apply_execution(self, order: _Order, ex: _Execution) -> list[Change]:
        symbol = order.symbol
        signed = ex.qty if order.side == "buy" else -ex.qty
        old = self._positions.get(symbol)
        old_qty = _ZERO if old is None else old.qty
        if self._counted_by_sync(order, ex, symbol):
            return self._record_reflected(order, ex, old, signed)
        self._touched.add(symbol)
        price = Fraction(ex.price)
        new_qty = old_qty + signed
        closing = (
            min(ex.qty, abs(old_qty))
            if old is not None and old_qty != 0 and _sign(signed) != _sign(old_qty)
            else _ZERO
        )
        realized = (
            _FZERO
            if old is None or closing == 0
            else (price - old.avg) * Fraction(closing) * _sign(old_qty)
        )
        self._count_today(
            symbol,
            realized,
            closing,
            ex.qty - closing,
            price,
            start_qty=old_qty,
            cash=-Fraction(signed) * price,
        )

        position: _Position
        if old is not None and old_qty != 0 and new_qty == 0:
            position = replace(old, qty=_ZERO, realized=old.realized + realized)
        elif old is None or old_qty == 0 or _sign(new_qty) != _sign(old_qty):
            position = _Position(
                symbol=symbol,
                qty=new_qty,
                avg=price,
                current_price=None,
                price_at=None,
                opened_at=ex.timestamp,
                updated_at=ex.timestamp,
                short=new_qty < 0,
            )
        elif _sign(signed) == _sign(old_qty):
            avg = (Fraction(old_qty) * old.avg + Fraction(signed) * price) / Fraction(new_qty)
            position = replace(old, qty=new_qty, avg=avg)
        else:
            position = replace(old, qty=new_qty, realized=old.realized + realized)
        position = replace(
            position, current_price=ex.price, price_at=ex.timestamp, updated_at=ex.timestamp
        )
        if new_qty == 0:
            self._positions.pop(symbol, None)
        else:
            self._positions[symbol] = position

        trade = self._record_trade(
            order, ex, ex.position_qty if ex.position_qty is not None else new_qty
        )
        changes: list[Change] = [
            ("trade_executed", dict(trade)),
            ("position_update", self._position_wire(position)),
        ]
        if self._account is not None:
            self._account = replace(
                self._account,
                cash=self._account.cash - signed * ex.price,
                updated_at=ex.timestamp,
            )
            changes.append(("account_update", self._account_wire(self._account)))
        return changes

    def _count_today(
        self,
        symbol: str,
        realized: Fraction,
        closing: Decimal,
        opening: Decimal,
        price: Fraction,
        *,
        start_qty: Decimal,
        cash: Fraction,
    ) -> None:
        """Add an execution to the symbol's day figures and the day-trading buying power used.

        ``closing`` shares close today's shares first (restoring what they cost); ``opening``
        shares at ``price`` use day-trading buying power. ``cash`` (USD) is what the execution
        moved, added to the day's cash flow; ``start_qty`` is the position held before it, the
        day's starting quantity if this is the symbol's first record of the day.
        """
        today = self._today.get(symbol) or _Today(start_qty=start_qty)
        restored = _FZERO
        open_qty, open_cost = today.open_qty, today.open_cost
        if closing and open_qty:
            matched = min(closing, open_qty)
            restored = open_cost * Fraction(matched) / Fraction(open_qty)
            open_qty -= matched
            open_cost -= restored
        used = Fraction(opening) * price
        self._today[symbol] = replace(
            today,
            realized=today.realized + realized,
            open_qty=open_qty + opening,
            open_cost=open_cost + used,
            cash_flow=today.cash_flow + cash,
        )
        self._dt_used += used - restored

    def _record_reflected(
        self, order: _Order, ex: _Execution, held: _Position | None, signed: Decimal
    ) -> list[Change]:
        """An execution the last sync had counted: publish it, move nothing but realized P&L.

        The position held is the one *after* the execution. When it reduced a position that is
        still open on the same side, its realized P&L (against the unchanged average entry) is
        added; other cases (opened, added, closed, flipped) realize nothing that can still be
        computed, and leave it to the broker's figures.

        Its cash is added to the symbol's day cash flow. When the day's starting quantity was
        taken from the very sync that counted it, that quantity holds its shares: if the sync
        began the trading day the execution counts to the previous day (nothing changes), else
        it is today's and its shares leave the starting quantity.
        """
        changes: list[Change] = []
        held_qty = _ZERO if held is None else held.qty
        trade = self._record_trade(
            order, ex, ex.position_qty if ex.position_qty is not None else held_qty
        )
        changes.append(("trade_executed", dict(trade)))
        before = held_qty - signed
        today = self._today.get(order.symbol) or _Today(start_qty=before)
        cash = -Fraction(signed) * Fraction(ex.price)
        if today.start_sync != self._syncs:
            today = replace(today, cash_flow=today.cash_flow + cash)
        elif not today.start_rolled:
            today = replace(
                today, start_qty=today.start_qty - signed, cash_flow=today.cash_flow + cash
            )
        self._today[order.symbol] = today
        if held is not None and held_qty != 0:
            if _sign(before) == _sign(held_qty) and abs(before) > abs(held_qty):
                realized = (Fraction(ex.price) - held.avg) * Fraction(ex.qty) * _sign(before)
                held = replace(held, realized=held.realized + realized)
                self._positions[held.symbol] = held
                self._count_today(
                    held.symbol,
                    realized,
                    ex.qty,
                    _ZERO,
                    Fraction(ex.price),
                    start_qty=before,
                    cash=_FZERO,
                )
            changes.append(("position_update", self._position_wire(held)))
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
        (and a margin account's ``buyingPower``) follow from the formulas in the class docstring.

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
            before_position = _without(self._position_wire(held), "updatedAt")
            before_account = self._account_core()
            position = replace(
                held,
                current_price=value,
                price_at=tick_at if tick_at is not None else held.price_at,
            )
            changes: list[Change] = []
            if _without(self._position_wire(position), "updatedAt") != before_position:
                position = replace(position, updated_at=moment)
                changes.append(("position_update", self._position_wire(position)))
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
        closed_orders: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[Change]:
        """Reconcile with the broker's REST view (``syncPositionsFromAlpaca``).

        The view must be consistent (taken while no fill happened between its reads; see
        :meth:`AlpacaBridge.sync_account <streaming.alpaca_bridge.AlpacaBridge.sync_account>`).

        * ``positions`` (``GET /v2/positions``) set each symbol's qty and current price (the
          local price is kept when REST has none). The exact average entry is kept when the
          broker's ``avg_entry_price`` is a rounding of it (compared at the broker's precision,
          at least 4 places), else replaced. A short is a negative ``qty`` or ``side: "short"``.
          Symbols held locally but absent from REST are closed (``quantity "0"``). A position
          that persists on the same side keeps its ``openedAt`` and realized P&L; a new one (or
          one that changed side) gets ``now()`` and none. ``lastday_price`` (optional; ``"0"``
          is none) sets the symbol's previous close for the day P&L; a symbol seen for the
          first time today (or every one, on a new trading day) starts the day with the
          quantity listed.
        * ``orders`` (``GET /v2/orders``, the open orders), when given, replace the open-order
          set: listed orders are stored unless the version held is newer (``updated_at``), and
          held open orders that are not listed are forgotten (their final status is unknown, so
          nothing is published for them).
        * ``orders`` and ``closed_orders`` (recently closed orders) together tell which
          executions this view already counts: each listed order's ``filled_qty``. An execution
          event arriving later for one of them is published but not counted again.
        * ``account`` (``GET /v2/account``), when given, sets ``cash``, ``last_equity`` (None
          when absent: day P&L unknown), ``multiplier`` (or 1) and, for a pattern day trader
          (multiplier 4), the day-trading ``buying_power``. A changed ``balance_asof`` is a new
          trading day: the realized P&L today and the day-trading use restart from zero.

        Args:
            account: Alpaca account object, or ``None`` to keep the current account figures.
            positions: Alpaca position objects (USD strings, shares).
            orders: Alpaca order objects (open ones), or ``None`` to leave orders alone.
            closed_orders: Alpaca order objects recently closed, only read for ``filled_qty``.

        Returns:
            Only what differs on the wire: ``order_update``s, then ``position_update``s (by
            symbol), then the ``account_update`` last. An unchanged view returns ``[]``.

        Raises:
            ValueError: a malformed account (``account.cash``, …), position
                (``positions[i].qty``, ``positions[i].avg_entry_price``,
                ``positions[i].lastday_price``, …) or order
                (``orders[i].id``, ``closed_orders[i].id``, …). Nothing is changed.
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
        parsed_orders = _parse_orders(orders, "orders")
        parsed_closed = _parse_orders(closed_orders, "closed_orders")
        moment = self._clock()

        with _arith():
            before_positions = {
                s: _without(self._position_wire(p), "updatedAt") for s, p in self._positions.items()
            }
            before_account = self._account_core()
            order_changes = [] if parsed_orders is None else self._sync_orders(parsed_orders)
            if parsed_orders is not None or parsed_closed is not None:
                self._synced_filled = {
                    o.broker_id: o.filled_qty
                    for o in (parsed_closed or []) + (parsed_orders or [])
                    if o.filled_qty is not None
                }
            rolled = parsed_account is not None and self._roll_day(parsed_account.trading_day)
            self._syncs += 1
            closed = self._sync_positions(parsed_positions, moment, rolled=rolled)
            self._synced_qty = {s: p.qty for s, p in parsed_positions.items()}
            self._touched = set()
            if parsed_account is not None:
                self._set_account(parsed_account, moment)
            changes = order_changes
            for symbol in sorted(set(before_positions) | set(self._positions) | set(closed)):
                position = self._positions.get(symbol) or closed[symbol]
                if _without(self._position_wire(position), "updatedAt") != before_positions.get(
                    symbol
                ):
                    position = replace(position, updated_at=moment)
                    if symbol in self._positions:
                        self._positions[symbol] = position
                    changes.append(("position_update", self._position_wire(position)))
            if self._account is not None and self._account_core() != before_account:
                self._account = replace(self._account, updated_at=moment)
                changes.append(("account_update", self._account_wire(self._account)))
            return changes

    def _roll_day(self, trading_day: str | None) -> bool:
        """Start a new trading day if ``trading_day`` (``balance_asof``) changed; say if it did."""
        current = None if self._account is None else self._account.trading_day
        if trading_day is not None and current is not None and trading_day != current:
            self._today = {}
            self._dt_used = _FZERO
            return True
        return False

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

    def _sync_positions(
        self, listed: dict[str, _SyncPosition], moment: datetime, *, rolled: bool
    ) -> dict[str, _Position]:
        """Set positions from REST; return the records of positions REST no longer has."""
        closed: dict[str, _Position] = {}
        for symbol in sorted(set(listed) | set(self._positions)):
            held = self._positions.get(symbol)
            rest = listed.get(symbol)
            if rest is None:
                if held is not None:
                    closed[symbol] = replace(held, qty=_ZERO)
                    del self._positions[symbol]
                continue
            same_side = held is not None and _sign(held.qty) == _sign(rest.qty)
            keep = held is not None and same_side and _shown_as(held.avg, rest.avg_entry)
            position = _Position(
                symbol=symbol,
                qty=rest.qty,
                avg=held.avg if keep and held is not None else Fraction(rest.avg_entry),
                current_price=(
                    rest.current_price
                    if rest.current_price is not None
                    else (held.current_price if held is not None else None)
                ),
                price_at=held.price_at if held is not None else None,
                opened_at=held.opened_at if held is not None and same_side else moment,
                updated_at=held.updated_at if held is not None else moment,
                short=rest.qty < 0,
                realized=held.realized if held is not None and same_side else _FZERO,
            )
            today = self._today.get(symbol)
            if today is None:
                # First sight of the symbol today: what REST holds was held at the last close.
                today = _Today(start_qty=rest.qty, start_sync=self._syncs, start_rolled=rolled)
            elif today.open_qty:
                # Today's shares can't exceed the position (a missed fill closed some).
                kept = min(today.open_qty, abs(rest.qty)) if same_side else _ZERO
                cost = today.open_cost * Fraction(kept) / Fraction(today.open_qty)
                today = replace(today, open_qty=kept, open_cost=cost)
            if rest.lastday is not None:
                today = replace(today, lastday=rest.lastday)
            self._today[symbol] = today
            self._positions[symbol] = position
        return closed

    def _set_account(self, parsed: _SyncAccount, moment: datetime) -> None:
        self._account = _Account(
            cash=parsed.cash,
            last_equity=parsed.last_equity,
            multiplier=parsed.multiplier,
            day_trading=parsed.multiplier >= 4,
            dtbp_at_sync=parsed.buying_power,
            dt_used_at_sync=self._dt_used,
            trading_day=parsed.trading_day,
            updated_at=self._account.updated_at if self._account is not None else moment,
        )

    # -- account -------------------------------------------------------------------------------

    def _position_wire(self, position: _Position) -> dict[str, Any]:
        today = self._today.get(position.symbol)
        if today is None:  # not seen today (defensive): all of it was held at the last close
            today = _Today(start_qty=position.qty)
        return position.wire(today.realized, today.lastday, self._day_pnl(position, today))

    @staticmethod
    def _day_pnl(position: _Position, today: _Today) -> Fraction | None:
        """The symbol's P&L since the last close (USD), or None when it needs an unknown close.

        ``Q × P − Q0 × L + cash_flow``: the position's value now, less its value at the last
        close (``Q0`` shares at the broker's ``lastday_price`` ``L``), plus the cash its
        executions moved today. ``L`` is only needed when ``Q0 ≠ 0``.
        """
        start = Fraction(today.start_qty)
        if start and today.lastday is None:
            return None
        lastday = _FZERO if today.lastday is None else Fraction(today.lastday)
        return position.market_value - start * lastday + today.cash_flow

    def _buying_power(self, account: _Account, equity: Fraction) -> Fraction:
        if account.day_trading:
            power = Fraction(account.dtbp_at_sync) - (self._dt_used - account.dt_used_at_sync)
        elif account.multiplier >= 2:
            gross = sum((abs(p.market_value) for p in self._positions.values()), _FZERO)
            power = 2 * equity - gross
        else:
            power = Fraction(account.cash)
        return max(_FZERO, power)

    def _account_wire(self, account: _Account) -> dict[str, Any]:
        equity = Fraction(account.cash) + sum(
            (p.market_value for p in self._positions.values()), _FZERO
        )
        day_pnl: str | None = None
        day_pct: str | None = None
        if account.last_equity is not None:
            last = Fraction(account.last_equity)
            pnl = equity - last
            day_pnl = fmt_money(_dec(pnl))
            day_pct = fmt_percent(_dec(_FZERO if last == 0 else pnl / last * 100))
        realized_today = sum((t.realized for t in self._today.values()), _FZERO)
        return {
            "equity": fmt_money(_dec(equity)),
            "buyingPower": fmt_money(_dec(self._buying_power(account, equity))),
            "cash": fmt_money(account.cash),
            "portfolioValue": fmt_money(_dec(equity)),
            "dayPnl": day_pnl,
            "dayPnlPercent": day_pct,
            "realizedPnlToday": fmt_money(_dec(realized_today)),
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
            return [self._position_wire(self._positions[s]) for s in sorted(self._positions)]

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
            USD amounts with 2 dp and percentages with 2 dp; ``dayPnl``/``dayPnlPercent`` are
            ``None`` while the broker's ``last_equity`` is unknown; ``timestamp`` is the time of
            the last change that altered the account figures.
        """
        if self._account is None:
            return None
        with _arith():
            return self._account_wire(self._account)

    def symbols(self) -> set[str]:
        """Return the symbols with an open position (to subscribe market data for)."""
        return set(self._positions)
