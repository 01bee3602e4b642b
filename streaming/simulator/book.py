"""Simulated brokerage accounts: cash, positions and orders, rendered as Alpaca JSON.

Everything here is synchronous and free of I/O: the :class:`~streaming.simulator.server.Simulator`
owns the clock (fill delays, price ticks) and publishes the events this module returns.
Money, prices and quantities are :class:`~decimal.Decimal`; the ``*_json`` methods render them
as decimal strings exactly like Alpaca's REST API and trading stream.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation, localcontext
from fractions import Fraction
from typing import Any

from streaming.simulator.activities import FillActivity
from streaming.simulator.fmt import fmt_money, fmt_price, fmt_qty, fmt_ratio, iso, utcnow

PriceOf = Callable[[str], Decimal]

ZERO = Decimal(0)
FZERO = Fraction(0)

#: Account multipliers Alpaca's accounts have: 1 cash, 2 Reg T margin, 4 pattern day trader.
MULTIPLIERS = (1, 2, 4)
#: Reg T initial margin and the maintenance margin the simulator's assets require (their
#: ``maintenance_margin_requirement`` is 30).
INITIAL_MARGIN = Decimal("0.5")
MAINTENANCE_MARGIN = Decimal("0.3")

#: Listing exchange per replayed symbol (as Alpaca reports it on positions).
EXCHANGES: dict[str, str] = {
    "AAPL": "NASDAQ",
    "AMZN": "NASDAQ",
    "GOOG": "NASDAQ",
    "IBM": "NYSE",
    "MSFT": "NASDAQ",
}

OPEN_STATUSES = frozenset({"new", "partially_filled", "accepted", "pending_new"})
ORDER_TYPES = frozenset({"market", "limit"})
TIME_IN_FORCE = frozenset({"day", "gtc", "ioc", "fok", "opg", "cls"})
_ASSET_NS = uuid.UUID("5f0c6a52-8f0e-4c1e-9d59-6a3c1f6f2b10")
_MAX_DECIMALS = 9


def asset_id(symbol: str) -> str:
    """Return the stable asset UUID the simulator uses for a symbol.

    Args:
        symbol: The ticker.

    Returns:
        A UUID string, the same for every run.
    """
    return str(uuid.uuid5(_ASSET_NS, symbol.upper()))


class SimAPIError(Exception):
    """An Alpaca-style API error (HTTP status + JSON body ``{"code", "message"}``)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        """Create the error.

        Args:
            status: The HTTP status (401, 403, 404, 422, …).
            code: Alpaca's numeric error code (e.g. 40010001).
            message: The human-readable message.
        """
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        """Return the JSON error body Alpaca sends.

        Returns:
            ``{"code": int, "message": str}``.
        """
        return {"code": self.code, "message": self.message}


def unprocessable(message: str) -> SimAPIError:
    """Build the 422 validation error Alpaca returns for a bad request field.

    Args:
        message: What is wrong.

    Returns:
        A ``SimAPIError(422, 40010001, message)``.
    """
    return SimAPIError(422, 40010001, message)


@dataclass
class OrderSpec:
    """A validated order request.

    Attributes:
        symbol: The upper-cased ticker.
        qty: The ordered shares (> 0).
        side: ``"buy"`` or ``"sell"``.
        type: ``"market"`` or ``"limit"``.
        time_in_force: Alpaca's time in force (``day``, ``gtc``, …).
        limit_price: The limit in USD per share, limit orders only.
        client_order_id: The caller's id, or None to generate one.
        extended_hours: Alpaca's flag, echoed back.
    """

    symbol: str
    qty: Decimal
    side: str
    type: str = "market"
    time_in_force: str = "day"
    limit_price: Decimal | None = None
    client_order_id: str | None = None
    extended_hours: bool = False


def _decimal_field(body: dict[str, Any], name: str) -> Decimal | None:
    """Read a positive decimal field sent as a JSON string or number."""
    raw = body.get(name)
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise unprocessable(f"{name} must be a decimal number")
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise unprocessable(f"invalid {name}: {raw!r}") from None
    if not value.is_finite() or value <= 0:
        raise unprocessable(f"{name} must be > 0")
    if -value.as_tuple().exponent > _MAX_DECIMALS:  # type: ignore[operator]
        raise unprocessable(f"{name} has too many decimal places")
    return value


def parse_order_request(body: Any, known_symbols: Iterable[str]) -> OrderSpec:
    """Validate a ``POST /v2/orders`` body the way Alpaca does.

    Args:
        body: The decoded JSON body.
        known_symbols: The tradable symbols.

    Returns:
        The validated order.

    Raises:
        SimAPIError: 422 (code 40010001) naming the offending field, or 422 for an
            unknown symbol.
    """
    if not isinstance(body, dict):
        raise unprocessable("request body must be a JSON object")
    symbol = body.get("symbol")
    if not isinstance(symbol, str) or not symbol.strip():
        raise unprocessable("symbol is required")
    symbol = symbol.strip().upper()
    if symbol not in set(known_symbols):
        raise unprocessable(f'asset "{symbol}" not found')
    if body.get("notional") not in (None, ""):
        raise unprocessable("notional orders are not supported by the simulator; use qty")
    qty = _decimal_field(body, "qty")
    if qty is None:
        raise unprocessable("qty is required")
    side = body.get("side")
    if side not in ("buy", "sell"):
        raise unprocessable(f"invalid side: {side!r} (must be buy or sell)")
    order_type = body.get("type", body.get("order_type"))
    if order_type is None:
        raise unprocessable("type is required")
    if order_type not in ORDER_TYPES:
        raise unprocessable(
            f"invalid order type: {order_type!r} (the simulator supports market, limit)"
        )
    tif = body.get("time_in_force")
    if tif is None:
        raise unprocessable("time_in_force is required")
    if tif not in TIME_IN_FORCE:
        raise unprocessable(f"invalid time_in_force: {tif!r}")
    limit_price = _decimal_field(body, "limit_price")
    if order_type == "limit" and limit_price is None:
        raise unprocessable("limit_price is required for limit orders")
    if order_type == "market" and limit_price is not None:
        raise unprocessable("limit_price must not be set for market orders")
    if body.get("stop_price") not in (None, ""):
        raise unprocessable("stop_price is not supported by the simulator")
    order_class = body.get("order_class")
    if order_class not in (None, "", "simple"):
        raise unprocessable(f"order_class {order_class!r} is not supported by the simulator")
    client_order_id = body.get("client_order_id")
    if client_order_id is not None:
        if not isinstance(client_order_id, str) or not client_order_id:
            raise unprocessable("client_order_id must be a non-empty string")
        if len(client_order_id) > 128:
            raise unprocessable("client_order_id must be at most 128 characters")
    extended_hours = body.get("extended_hours", False)
    if not isinstance(extended_hours, bool):
        raise unprocessable("extended_hours must be a boolean")
    return OrderSpec(
        symbol=symbol,
        qty=qty,
        side=side,
        type=order_type,
        time_in_force=tif,
        limit_price=limit_price,
        client_order_id=client_order_id,
        extended_hours=extended_hours,
    )


@dataclass
class SimPosition:
    """A position in one symbol.

    Attributes:
        symbol: The ticker.
        qty: Signed shares (negative for a short).
        cost_basis: Signed cost in USD (``qty * avg_entry_price``; negative for a short).
    """

    symbol: str
    qty: Decimal
    cost_basis: Decimal

    @property
    def avg_entry_price(self) -> Decimal:
        """The average entry price in USD per share.

        Returns:
            ``cost_basis / qty`` (0 for an empty position).
        """
        return self.cost_basis / self.qty if self.qty else ZERO

    def to_json(
        self,
        current_price: Decimal,
        lastday_price: Decimal,
        day_open: tuple[Decimal, Fraction] = (ZERO, FZERO),
    ) -> dict[str, Any]:
        """Render the position as Alpaca's ``Position`` JSON.

        ``unrealized_intraday_pl`` is Alpaca's unrealized P&L for the day
        (https://docs.alpaca.markets/reference/positions: "Unrealized profit/loss in dollars
        for the day"; in Alpaca's examples ``qty × (current_price − lastday_price)`` for shares
        held since the last close, ``unrealized_pl`` for a position opened today): the shares
        held at the last close are marked from ``lastday_price``, the shares opened today from
        what they cost. ``unrealized_intraday_plpc`` divides it by that day's basis (for a
        position held since the close, it equals ``change_today``).

        Args:
            current_price: The symbol's current price in USD.
            lastday_price: The symbol's previous close in USD.
            day_open: Shares of the position opened today (unsigned) and their cost in USD
                (:attr:`SimAccount.day_open`); the rest was held at the last close.

        Returns:
            The position dict with decimal strings.
        """
        market_value = self.qty * current_price
        unrealized = market_value - self.cost_basis
        plpc = unrealized / abs(self.cost_basis) if self.cost_basis else ZERO
        change = (current_price - lastday_price) / lastday_price if lastday_price else ZERO
        sign = 1 if self.qty > 0 else -1
        today_qty = min(day_open[0], abs(self.qty))
        today_cost = (
            day_open[1] * Fraction(today_qty) / Fraction(day_open[0]) if today_qty else FZERO
        )
        held = Fraction(self.qty - sign * today_qty)  # signed shares held since the last close
        price, last = Fraction(current_price), Fraction(lastday_price)
        intraday = held * (price - last) + sign * (Fraction(today_qty) * price - today_cost)
        basis = abs(held) * last + today_cost
        intraday_plpc = _dec(intraday / basis) if basis else ZERO
        return {
            "asset_id": asset_id(self.symbol),
            "symbol": self.symbol,
            "exchange": EXCHANGES.get(self.symbol, "NASDAQ"),
            "asset_class": "us_equity",
            "asset_marginable": True,
            "qty": fmt_qty(self.qty),
            "qty_available": fmt_qty(self.qty),
            "avg_entry_price": fmt_price(self.avg_entry_price),
            "side": "long" if self.qty > 0 else "short",
            "market_value": fmt_money(market_value),
            "cost_basis": fmt_money(self.cost_basis),
            "unrealized_pl": fmt_money(unrealized),
            "unrealized_plpc": fmt_ratio(plpc),
            "unrealized_intraday_pl": fmt_money(_dec(intraday)),
            "unrealized_intraday_plpc": fmt_ratio(intraday_plpc),
            "current_price": fmt_price(current_price),
            "lastday_price": fmt_price(lastday_price),
            "change_today": fmt_ratio(change),
        }


@dataclass
class SimOrder:
    """An order and its fill state.

    Attributes:
        id: Alpaca's order id (UUID string).
        client_order_id: The caller's id.
        symbol: The ticker.
        qty: Ordered shares.
        side: ``"buy"`` or ``"sell"``.
        type: ``"market"`` or ``"limit"``.
        time_in_force: Alpaca's time in force.
        limit_price: The limit for limit orders, else None.
        position_intent: ``buy_to_open``, ``sell_to_close``, … at submission.
        extended_hours: Echoed flag.
        status: Alpaca's order status (``new``, ``partially_filled``, ``filled``, ``canceled``).
        filled_qty: Shares executed so far.
        filled_notional: Sum of ``qty * price`` over executions, in USD.
        created_at: Creation time (also ``submitted_at``).
        updated_at: Time of the last change.
        filled_at: Time of the final fill.
        canceled_at: Time of cancellation.
    """

    id: str
    client_order_id: str
    symbol: str
    qty: Decimal
    side: str
    type: str
    time_in_force: str
    limit_price: Decimal | None
    position_intent: str
    extended_hours: bool = False
    status: str = "new"
    filled_qty: Decimal = ZERO
    filled_notional: Decimal = ZERO
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    filled_at: datetime | None = None
    canceled_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        """Whether the order can still fill or be canceled.

        Returns:
            True for ``new`` and ``partially_filled`` orders.
        """
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        """Shares not yet executed.

        Returns:
            ``qty - filled_qty``.
        """
        return self.qty - self.filled_qty

    @property
    def filled_avg_price(self) -> Decimal | None:
        """Volume-weighted average execution price.

        Returns:
            The price in USD per share, or None before the first execution.
        """
        return self.filled_notional / self.filled_qty if self.filled_qty else None

    def to_json(self) -> dict[str, Any]:
        """Render the order as Alpaca's order JSON.

        Returns:
            The full order dict (decimal strings, RFC 3339 timestamps, nulls where Alpaca has them).
        """
        avg = self.filled_avg_price
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "submitted_at": iso(self.created_at),
            "filled_at": iso(self.filled_at),
            "expired_at": None,
            "canceled_at": iso(self.canceled_at),
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": asset_id(self.symbol),
            "symbol": self.symbol,
            "asset_class": "us_equity",
            "notional": None,
            "qty": fmt_qty(self.qty),
            "filled_qty": fmt_qty(self.filled_qty),
            "filled_avg_price": fmt_price(avg) if avg is not None else None,
            "order_class": "simple",
            "order_type": self.type,
            "type": self.type,
            "side": self.side,
            "time_in_force": self.time_in_force,
            "limit_price": fmt_price(self.limit_price) if self.limit_price is not None else None,
            "stop_price": None,
            "status": self.status,
            "extended_hours": self.extended_hours,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
            "position_intent": self.position_intent,
        }


@dataclass
class Execution:
    """One (partial) fill, as published on the trading stream.

    Attributes:
        order: The order after the execution.
        qty: Shares executed.
        price: Execution price in USD per share.
        position_qty: Signed position in the symbol after the execution.
        execution_id: Unique execution UUID string.
        timestamp: Execution time.
    """

    order: SimOrder
    qty: Decimal
    price: Decimal
    position_qty: Decimal
    execution_id: str
    timestamp: datetime

    @property
    def event(self) -> str:
        """The trade-update event name.

        Returns:
            ``"fill"`` when the order is complete, else ``"partial_fill"``.
        """
        return "fill" if self.order.status == "filled" else "partial_fill"


def _dec(value: Fraction) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 40
        return Decimal(value.numerator) / Decimal(value.denominator)


class SimAccount:
    """One simulated account and its API key pair; cash, margin or pattern day trader.

    The multiplier is 1 (cash account), 2 (Reg T margin) or 4 (pattern day trader); shorting
    is allowed in all three.

    Buying power follows Alpaca's account docs (``buying_power`` in alpaca-py's ``TradeAccount``
    and https://docs.alpaca.markets/docs/margin-and-short-selling): cash account ``cash``;
    margin ``max(equity - initial_margin, 0) * 2`` with a 50 % initial margin on long and short
    market value, i.e. ``2 * equity - (long + |short|)``; pattern day trader the day-trading
    buying power ``4 * (last_equity - last_maintenance_margin)`` set at the start of the day
    (``bod_dtbp``), used by the cost of shares opened today and given back when today's shares
    are closed. Never below 0.
    """

    def __init__(
        self,
        key: str,
        secret: str,
        cash: Decimal = Decimal("100000"),
        *,
        auto_trade: bool = True,
        multiplier: int = 1,
        trading_day: date | None = None,
    ) -> None:
        """Create an account.

        Args:
            key: The API key id (``APCA-API-KEY-ID``).
            secret: The API secret (``APCA-API-SECRET-KEY``).
            cash: Starting cash in USD; also the account's ``last_equity``.
            auto_trade: Whether the simulator's auto trader places orders for it.
            multiplier: 1 (cash account), 2 (margin) or 4 (pattern day trader).
            trading_day: The account's current trading day (``balance_asof``); default today
                (UTC).

        Raises:
            ValueError: ``multiplier`` is not 1, 2 or 4.
        """
        if multiplier not in MULTIPLIERS:
            raise ValueError(f"multiplier must be one of {MULTIPLIERS}, got {multiplier!r}")
        self.key = key
        self.secret = secret
        self.cash = Decimal(cash)
        self.last_equity = Decimal(cash)
        self.auto_trade = auto_trade
        self.multiplier = multiplier
        self.trading_day = trading_day or utcnow().date()
        self.last_maintenance_margin = ZERO
        self.bod_dtbp = 4 * self.cash if multiplier == 4 else ZERO
        #: Shares opened today and still held, and their cost, per symbol (day-trading BP use).
        self.day_open: dict[str, tuple[Decimal, Fraction]] = {}
        self.dt_used = FZERO
        self.id = str(uuid.uuid5(_ASSET_NS, "account:" + key))
        self.account_number = f"PA{zlib.crc32(key.encode()) % 10**10:010d}"
        self.created_at = utcnow()
        self.positions: dict[str, SimPosition] = {}
        self.orders: dict[str, SimOrder] = {}
        #: Every execution, oldest first, as ``GET /v2/account/activities`` reports it.
        self.activities: list[FillActivity] = []

    # ----------------------------------------------------------------- queries

    def position_qty(self, symbol: str) -> Decimal:
        """Return the signed position in a symbol.

        Args:
            symbol: The ticker.

        Returns:
            Shares held (negative for a short, 0 if flat).
        """
        pos = self.positions.get(symbol)
        return pos.qty if pos else ZERO

    def market_values(self, price_of: PriceOf) -> tuple[Decimal, Decimal]:
        """Return the long and short market values.

        Args:
            price_of: Current price per symbol.

        Returns:
            ``(long_market_value, short_market_value)`` in USD; the short one is ≤ 0.
        """
        long_mv = ZERO
        short_mv = ZERO
        for pos in self.positions.values():
            mv = pos.qty * price_of(pos.symbol)
            if mv >= 0:
                long_mv += mv
            else:
                short_mv += mv
        return long_mv, short_mv

    def equity(self, price_of: PriceOf) -> Decimal:
        """Return the equity: cash + long market value + short market value.

        Args:
            price_of: Current price per symbol.

        Returns:
            The equity in USD.
        """
        long_mv, short_mv = self.market_values(price_of)
        return self.cash + long_mv + short_mv

    def gross_market_value(self, price_of: PriceOf) -> Decimal:
        """Return long market value plus the absolute short market value, in USD.

        Args:
            price_of: Current price per symbol.

        Returns:
            ``long_market_value - short_market_value`` (the short one is ≤ 0).
        """
        long_mv, short_mv = self.market_values(price_of)
        return long_mv - short_mv

    def regt_buying_power(self, price_of: PriceOf) -> Decimal:
        """Return the Reg T buying power: ``2 * equity - gross`` for margin accounts, else cash.

        Args:
            price_of: Current price per symbol.

        Returns:
            USD, never below 0.
        """
        if self.multiplier == 1:
            return max(ZERO, self.cash)
        return max(ZERO, 2 * self.equity(price_of) - self.gross_market_value(price_of))

    def daytrading_buying_power(self) -> Decimal:
        """Return the day-trading buying power left: ``bod_dtbp`` minus today's opening use.

        Returns:
            USD, never below 0; 0 for accounts that are not pattern day traders.
        """
        if self.multiplier != 4:
            return ZERO
        return max(ZERO, _dec(Fraction(self.bod_dtbp) - self.dt_used))

    def buying_power(self, price_of: PriceOf) -> Decimal:
        """Return Alpaca's ``buying_power`` for this account type (see the class docstring).

        Args:
            price_of: Current price per symbol.

        Returns:
            USD, never below 0.
        """
        if self.multiplier == 4:
            return self.daytrading_buying_power()
        return self.regt_buying_power(price_of)

    def roll_day(self, price_of: PriceOf, next_day: date) -> None:
        """Start the next trading day: ``last_equity`` becomes today's closing equity.

        Also sets ``last_maintenance_margin`` (30 % of the gross market value), a pattern day
        trader's ``bod_dtbp = 4 * (last_equity - last_maintenance_margin)``, and forgets which
        shares were opened today.

        Args:
            price_of: Closing price per symbol.
            next_day: The new trading day (``balance_asof``).
        """
        self.last_equity = self.equity(price_of)
        self.last_maintenance_margin = MAINTENANCE_MARGIN * self.gross_market_value(price_of)
        if self.multiplier == 4:
            self.bod_dtbp = max(ZERO, 4 * (self.last_equity - self.last_maintenance_margin))
        self.day_open = {}
        self.dt_used = FZERO
        self.trading_day = next_day

    def reserved_buying_power(self, price_of: PriceOf) -> Decimal:
        """Return the cash held for open buy orders (remaining shares at limit or current price).

        Args:
            price_of: Current price per symbol.

        Returns:
            USD reserved.
        """
        total = ZERO
        for order in self.orders.values():
            if order.is_open and order.side == "buy":
                total += order.remaining * (order.limit_price or price_of(order.symbol))
        return total

    def account_json(self, price_of: PriceOf) -> dict[str, Any]:
        """Render Alpaca's ``TradeAccount`` JSON.

        Args:
            price_of: Current price per symbol.

        Returns:
            The account dict: ``buying_power`` per the account type (class docstring),
            ``last_equity`` the equity at the last :meth:`roll_day` (or the starting cash) and
            ``balance_asof`` the current trading day.
        """
        long_mv, short_mv = self.market_values(price_of)
        equity = self.cash + long_mv + short_mv
        gross = long_mv - short_mv
        cash = fmt_money(self.cash)
        buying_power = fmt_money(self.buying_power(price_of))
        initial = gross if self.multiplier == 1 else INITIAL_MARGIN * gross
        return {
            "id": self.id,
            "account_number": self.account_number,
            "status": "ACTIVE",
            "crypto_status": "ACTIVE",
            "currency": "USD",
            "buying_power": buying_power,
            "regt_buying_power": fmt_money(self.regt_buying_power(price_of)),
            "daytrading_buying_power": fmt_money(self.daytrading_buying_power()),
            "effective_buying_power": buying_power,
            "non_marginable_buying_power": fmt_money(max(ZERO, self.cash)),
            "options_buying_power": fmt_money(max(ZERO, self.cash)),
            "bod_dtbp": fmt_money(self.bod_dtbp),
            "cash": cash,
            "accrued_fees": "0",
            "pending_transfer_in": "0",
            "pending_transfer_out": "0",
            "portfolio_value": fmt_money(equity),
            "pattern_day_trader": self.multiplier == 4,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "created_at": iso(self.created_at),
            "trade_suspended_by_user": False,
            "multiplier": str(self.multiplier),
            "shorting_enabled": True,
            "equity": fmt_money(equity),
            "last_equity": fmt_money(self.last_equity),
            "long_market_value": fmt_money(long_mv),
            "short_market_value": fmt_money(short_mv),
            "position_market_value": fmt_money(gross),
            "initial_margin": fmt_money(initial),
            "maintenance_margin": fmt_money(MAINTENANCE_MARGIN * gross),
            "last_maintenance_margin": fmt_money(self.last_maintenance_margin),
            "sma": "0",
            "daytrade_count": 0,
            "balance_asof": self.trading_day.isoformat(),
            "crypto_tier": 1,
            "options_approved_level": 0,
            "options_trading_level": 0,
            "intraday_adjustments": "0",
            "pending_reg_taf_fees": "0",
        }

    def positions_json(self, price_of: PriceOf, lastday_of: PriceOf) -> list[dict[str, Any]]:
        """Render all open positions, sorted by symbol.

        Args:
            price_of: Current price per symbol.
            lastday_of: Previous close per symbol.

        Returns:
            A list of Alpaca ``Position`` dicts.
        """
        return [
            self.positions[s].to_json(price_of(s), lastday_of(s), self._day_open(s))
            for s in sorted(self.positions)
        ]

    def _day_open(self, symbol: str) -> tuple[Decimal, Fraction]:
        return self.day_open.get(symbol, (ZERO, FZERO))

    def position_json(self, symbol: str, price_of: PriceOf, lastday_of: PriceOf) -> dict[str, Any]:
        """Render one position.

        Args:
            symbol: The ticker (any case).
            price_of: Current price per symbol.
            lastday_of: Previous close per symbol.

        Returns:
            The Alpaca ``Position`` dict.

        Raises:
            SimAPIError: 404 (code 40410000) if there is no position in the symbol.
        """
        pos = self.positions.get(symbol.upper())
        if pos is None:
            raise SimAPIError(404, 40410000, "position does not exist")
        return pos.to_json(price_of(pos.symbol), lastday_of(pos.symbol), self._day_open(pos.symbol))

    def get_order(self, order_id: str) -> SimOrder:
        """Look an order up by its id.

        Args:
            order_id: Alpaca's order id.

        Returns:
            The order.

        Raises:
            SimAPIError: 404 (code 40410000) if there is no such order.
        """
        order = self.orders.get(order_id)
        if order is None:
            raise SimAPIError(404, 40410000, "order not found")
        return order

    def get_order_by_client_id(self, client_order_id: str) -> SimOrder:
        """Look an order up by its client order id.

        Args:
            client_order_id: The caller's id.

        Returns:
            The order.

        Raises:
            SimAPIError: 404 (code 40410000) if there is no such order.
        """
        for order in self.orders.values():
            if order.client_order_id == client_order_id:
                return order
        raise SimAPIError(404, 40410000, "order not found")

    def list_orders(
        self,
        status: str = "open",
        limit: int = 50,
        direction: str = "desc",
        symbols: set[str] | None = None,
        side: str | None = None,
        after: datetime | None = None,
        until: datetime | None = None,
    ) -> list[SimOrder]:
        """List orders like ``GET /v2/orders``.

        Args:
            status: ``open``, ``closed`` or ``all``.
            limit: Maximum number of orders returned.
            direction: ``desc`` (newest first) or ``asc``.
            symbols: Only these symbols, or all.
            side: Only ``buy`` or ``sell`` orders, or both.
            after: Only orders submitted after this time.
            until: Only orders submitted until this time.

        Returns:
            The matching orders.
        """
        result = []
        for order in self.orders.values():
            if status == "open" and not order.is_open:
                continue
            if status == "closed" and order.is_open:
                continue
            if symbols and order.symbol not in symbols:
                continue
            if side and order.side != side:
                continue
            if after and order.created_at <= after:
                continue
            if until and order.created_at > until:
                continue
            result.append(order)
        if direction == "desc":
            result.reverse()
        return result[:limit]

    # ----------------------------------------------------------------- changes

    def create_order(self, spec: OrderSpec, price_of: PriceOf) -> SimOrder:
        """Accept a validated order (status ``new``) after checking buying power.

        Args:
            spec: The validated request.
            price_of: Current price per symbol.

        Returns:
            The new order.

        Raises:
            SimAPIError: 422 for a duplicate client order id, 403 (code 40310000)
                ``insufficient buying power`` if the buying power (minus what open buy
                orders hold) cannot pay for the shares bought or sold short.
        """
        client_order_id = spec.client_order_id or str(uuid.uuid4())
        if any(o.client_order_id == client_order_id for o in self.orders.values()):
            raise unprocessable("client_order_id must be unique")
        price = price_of(spec.symbol)
        if spec.limit_price is not None and spec.side == "buy":
            price = spec.limit_price
        held = self.position_qty(spec.symbol)
        if spec.side == "buy":
            opening = spec.qty
        else:
            opening = max(spec.qty - max(held, ZERO), ZERO)
        available = self.buying_power(price_of) - self.reserved_buying_power(price_of)
        if opening * price > available:
            raise SimAPIError(403, 40310000, "insufficient buying power")
        if spec.side == "buy":
            intent = "buy_to_close" if held < 0 else "buy_to_open"
        else:
            intent = "sell_to_close" if held > 0 else "sell_to_open"
        now = utcnow()
        order = SimOrder(
            id=str(uuid.uuid4()),
            client_order_id=client_order_id,
            symbol=spec.symbol,
            qty=spec.qty,
            side=spec.side,
            type=spec.type,
            time_in_force=spec.time_in_force,
            limit_price=spec.limit_price,
            position_intent=intent,
            extended_hours=spec.extended_hours,
            created_at=now,
            updated_at=now,
        )
        self.orders[order.id] = order
        return order

    def cancel_order(self, order_id: str) -> SimOrder:
        """Cancel an open order.

        Args:
            order_id: Alpaca's order id.

        Returns:
            The canceled order.

        Raises:
            SimAPIError: 404 if unknown, 422 (code 42210000) if it is no longer open.
        """
        order = self.get_order(order_id)
        if not order.is_open:
            raise SimAPIError(422, 42210000, f'order is already in "{order.status}" state')
        now = utcnow()
        order.status = "canceled"
        order.canceled_at = now
        order.updated_at = now
        return order

    def execute(self, order: SimOrder, qty: Decimal, price: Decimal) -> Execution:
        """Execute part or all of an order and update cash and position.

        Buys add to a long position at the volume-weighted average entry price; sells
        reduce it (the average entry price is unchanged); an execution that crosses zero
        opens the opposite side at the execution price. Shorts work symmetrically.

        Args:
            order: An open order of this account.
            qty: Shares to execute (0 < qty ≤ remaining).
            price: Execution price in USD per share.

        Returns:
            The execution, with the order and position already updated; it is also recorded
            in :attr:`activities` (a ``FILL`` activity with the same execution id).

        Raises:
            ValueError: If the order is not open or qty is out of range.
        """
        if not order.is_open:
            raise ValueError(f"order {order.id} is {order.status}")
        if qty <= 0 or qty > order.remaining:
            raise ValueError(f"bad execution qty {qty} for remaining {order.remaining}")
        delta = qty if order.side == "buy" else -qty
        pos = self.positions.get(order.symbol)
        old_qty = pos.qty if pos else ZERO
        old_cost = pos.cost_basis if pos else ZERO
        new_qty = old_qty + delta
        if old_qty == 0 or (old_qty > 0) == (delta > 0):
            new_cost = old_cost + delta * price
        elif abs(delta) <= abs(old_qty):
            new_cost = old_cost * new_qty / old_qty
        else:
            new_cost = new_qty * price
        if new_qty == 0:
            self.positions.pop(order.symbol, None)
        else:
            self.positions[order.symbol] = SimPosition(order.symbol, new_qty, new_cost)
        self.cash -= delta * price
        closing = min(qty, abs(old_qty)) if old_qty != 0 and (old_qty > 0) != (delta > 0) else ZERO
        self._count_day_trade(order.symbol, closing, qty - closing, price)
        now = utcnow()
        order.filled_qty += qty
        order.filled_notional += qty * price
        order.updated_at = now
        if order.remaining == 0:
            order.status = "filled"
            order.filled_at = now
        else:
            order.status = "partially_filled"
        execution_id = str(uuid.uuid4())
        self.activities.append(
            FillActivity(
                execution_id=execution_id,
                order_id=order.id,
                symbol=order.symbol,
                side=order.side,
                qty=qty,
                price=price,
                cum_qty=order.filled_qty,
                leaves_qty=order.remaining,
                order_status=order.status,
                transaction_time=now,
            )
        )
        return Execution(
            order=order,
            qty=qty,
            price=price,
            position_qty=new_qty,
            execution_id=execution_id,
            timestamp=now,
        )

    def _count_day_trade(
        self, symbol: str, closing: Decimal, opening: Decimal, price: Decimal
    ) -> None:
        """Track day-trading buying power: opening shares use it, closing today's give it back.

        Closing shares close today's shares first; what they give back is their share of the
        cost of today's shares (average cost).
        """
        open_qty, open_cost = self.day_open.get(symbol, (ZERO, FZERO))
        restored = FZERO
        if closing and open_qty:
            matched = min(closing, open_qty)
            restored = open_cost * Fraction(matched) / Fraction(open_qty)
            open_qty -= matched
            open_cost -= restored
        used = Fraction(opening) * Fraction(price)
        self.day_open[symbol] = (open_qty + opening, open_cost + used)
        self.dt_used += used - restored

    def set_position(self, symbol: str, qty: Decimal, avg_entry_price: Decimal) -> None:
        """Seed or replace a position directly (for tests and demos; cash is untouched).

        Args:
            symbol: The ticker.
            qty: Signed shares; 0 removes the position.
            avg_entry_price: Average entry price in USD per share.
        """
        symbol = symbol.upper()
        if qty == 0:
            self.positions.pop(symbol, None)
        else:
            self.positions[symbol] = SimPosition(symbol, Decimal(qty), qty * avg_entry_price)


def trade_update(
    event: str, order: SimOrder, when: datetime, execution: Execution | None = None
) -> dict[str, Any]:
    """Build a trading-stream message ``{"stream": "trade_updates", "data": {...}}``.

    Args:
        event: ``new``, ``partial_fill``, ``fill``, ``canceled``, …
        order: The order after the event.
        when: The event time.
        execution: The execution for ``fill``/``partial_fill`` events; adds
            ``execution_id``, ``price``, ``qty`` and ``position_qty``.

    Returns:
        The message dict, ready for JSON encoding.
    """
    data: dict[str, Any] = {"event": event, "timestamp": iso(when)}
    if execution is not None:
        data["execution_id"] = execution.execution_id
        data["price"] = fmt_price(execution.price)
        data["qty"] = fmt_qty(execution.qty)
        data["position_qty"] = fmt_qty(execution.position_qty)
    data["order"] = order.to_json()
    return {"stream": "trade_updates", "data": data}
