"""The :class:`Simulator`: a local server speaking Alpaca's REST, trading-stream and data protocols.

It runs on the current asyncio/Tornado loop. The real alpaca-py clients work against it with
``url_override`` (see :attr:`Simulator.trading_url`, :attr:`Simulator.trading_stream_url` and
:attr:`Simulator.data_stream_url`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from datetime import date, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets

from streaming.simulator.book import (
    ZERO,
    Execution,
    OrderSpec,
    SimAccount,
    SimAPIError,
    SimOrder,
    parse_order_request,
    trade_update,
)
from streaming.simulator.data_ws import DataStreamHandler
from streaming.simulator.fmt import to_cents, utcnow
from streaming.simulator.prices import PriceReplay
from streaming.simulator.rest import NotFoundHandler, rest_routes
from streaming.simulator.trading_ws import TradingStreamHandler

log = logging.getLogger(__name__)

#: Seconds before the simulator tries again to load the market calendar after a failure.
CALENDAR_RETRY_S = 60.0

_SPLIT_QTY = Decimal(10)
_AUTO_BUY_SIZES = (1, 2, 3, 4, 5, 8, 10, 12, 15)


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Log simulator requests at DEBUG (errors at WARNING), so they do not drown the server's."""
    status = handler.get_status()
    level = logging.WARNING if status >= 500 else logging.DEBUG
    request = handler.request
    log.log(
        level,
        "%d %s %s %.2fms",
        status,
        request.method,
        request.uri,
        1000.0 * request.request_time(),
    )


class Simulator:
    """A local Alpaca: recorded prices replayed live, accounts, an order book and fills.

    Runs on the current Tornado/asyncio loop: create it, :meth:`add_account`, ``await``
    :meth:`start`, point alpaca-py's clients at the URLs, ``await`` :meth:`stop`.
    """

    def __init__(
        self,
        *,
        tick_s: float = 0.5,
        month_s: float = 20.0,
        auto_trade: bool = True,
        auto_trade_every_s: float = 8.0,
        fill_delay_s: float = 0.3,
        seed: int = 7,
        accept_any_key: bool = False,
        jitter_bps: float = 5.0,
        day_s: float | None = None,
    ) -> None:
        """Configure the simulator (nothing runs until :meth:`start`).

        Args:
            tick_s: Seconds between price ticks (one trade per symbol per tick).
            month_s: Seconds of replay one recorded month lasts.
            auto_trade: Default for accounts: whether the auto trader places orders for them.
            auto_trade_every_s: Seconds between the auto trader's orders (per account).
            fill_delay_s: Seconds from acceptance to a market order's (first) execution, and
                between the partial fill and the fill of orders of 10 shares or more.
            seed: Seed of the deterministic jitter, trade sizes and auto trader.
            accept_any_key: If True, an unknown key pair gets a fresh account (100 000 USD)
                instead of being refused.
            jitter_bps: Maximum price jitter in basis points (0 = pure interpolation).
            day_s: Seconds per simulated trading day: every ``day_s`` the accounts roll to the
                next trading day (:meth:`roll_day`). None (the default) rolls at each real NYSE
                close, as Alpaca's ``last_equity`` does (holidays and early closes included).

        Raises:
            ValueError: If a duration is not positive.
        """
        for name, value in (
            ("tick_s", tick_s),
            ("month_s", month_s),
            ("auto_trade_every_s", auto_trade_every_s),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be > 0")
        if fill_delay_s < 0:
            raise ValueError("fill_delay_s must be >= 0")
        if day_s is not None and day_s <= 0:
            raise ValueError("day_s must be > 0")
        self.day_s = day_s
        self.tick_s = tick_s
        self.month_s = month_s
        self.auto_trade = auto_trade
        self.auto_trade_every_s = auto_trade_every_s
        self.fill_delay_s = fill_delay_s
        self.seed = seed
        self.accept_any_key = accept_any_key
        self.replay = PriceReplay(month_s=month_s, jitter_bps=jitter_bps, seed=seed)
        self.symbols: list[str] = self.replay.symbols
        self.tick = 0
        self._prices: dict[str, Decimal] = {s: self.replay.price_at(s, 0.0) for s in self.symbols}
        self._lastday: dict[str, Decimal] = dict(self._prices)
        self._paused_symbols: set[str] = set()
        self._accounts: dict[str, SimAccount] = {}
        self._rngs: dict[str, random.Random] = {}
        self._data_rng = random.Random(seed)
        self._trade_id = 52_983_525_029_461
        self._in_flight: set[str] = set()
        self._open_limits: dict[str, tuple[SimAccount, SimOrder]] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Future[None]] = set()
        self._trading_conns: set[TradingStreamHandler] = set()
        self._data_conns: set[DataStreamHandler] = set()
        self._streams_paused = False
        self._server: HTTPServer | None = None
        self._tick_cb: PeriodicCallback | None = None
        self._auto_cb: PeriodicCallback | None = None
        self._day_cb: PeriodicCallback | None = None
        self._close_handle: asyncio.TimerHandle | None = None
        self._calendar: Any = None
        self._host = "127.0.0.1"
        self._port: int | None = None

    # ------------------------------------------------------------ lifecycle

    def make_app(self) -> tornado.web.Application:
        """Build the Tornado application with every route.

        Returns:
            The application (REST under ``/v2``, ``/stream``, ``/v2/iex``, ``/v2/sip``).
        """
        routes: list[Any] = [
            (r"/stream", TradingStreamHandler, {"sim": self}),
            (r"/v2/(iex|sip)", DataStreamHandler, {"sim": self}),
            *rest_routes(self),
        ]
        return tornado.web.Application(
            routes,
            default_handler_class=NotFoundHandler,
            default_handler_args={"sim": self},
            log_function=_log_request,
        )

    async def start(self, port: int = 0, address: str = "127.0.0.1") -> int:
        """Bind the server and start the price replay and the auto trader.

        Args:
            port: TCP port; 0 picks a free one.
            address: Address to bind.

        Returns:
            The bound port.

        Raises:
            RuntimeError: If already started.
            OSError: If the port cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError("simulator already started")
        sockets = bind_sockets(port, address)
        self._server = HTTPServer(self.make_app())
        self._server.add_sockets(sockets)
        self._port = sockets[0].getsockname()[1]
        self._host = "127.0.0.1" if address in ("", "0.0.0.0", "::") else address
        self._tick_cb = PeriodicCallback(self._on_tick, self.tick_s * 1000)
        self._tick_cb.start()
        self._auto_cb = PeriodicCallback(self._auto_trade_all, self.auto_trade_every_s * 1000)
        self._auto_cb.start()
        if self.day_s is not None:
            self._day_cb = PeriodicCallback(self.roll_day, self.day_s * 1000)
            self._day_cb.start()
        else:
            self._schedule_close()
        log.info("Alpaca simulator listening on %s", self.trading_url)
        return self._port

    async def stop(self) -> None:
        """Close every socket and stop all timers. Safe to call twice."""
        for cb in (self._tick_cb, self._auto_cb, self._day_cb):
            if cb is not None:
                cb.stop()
        self._tick_cb = self._auto_cb = self._day_cb = None
        if self._close_handle is not None:
            self._close_handle.cancel()
            self._close_handle = None
        for task in list(self._tasks):
            task.cancel()
        for handle in list(self._timers):
            handle.cancel()
        self._timers.clear()
        self._in_flight.clear()
        for conn in [*self._trading_conns, *self._data_conns]:
            conn.close(1001, "simulator shutting down")
        self._trading_conns.clear()
        self._data_conns.clear()
        if self._server is not None:
            self._server.stop()
            try:
                await asyncio.wait_for(self._server.close_all_connections(), 5)
            except TimeoutError:
                log.warning("simulator: HTTP connections did not close in time")
            self._server = None

    def _base(self, scheme: str) -> str:
        if self._port is None:
            raise RuntimeError("simulator not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self._port}"

    @property
    def port(self) -> int | None:
        """The bound port, or None before :meth:`start`.

        Returns:
            The TCP port.
        """
        return self._port

    @property
    def trading_url(self) -> str:
        """Base URL for ``TradingClient(url_override=...)``, e.g. ``http://127.0.0.1:5555``.

        Returns:
            The URL.

        Raises:
            RuntimeError: Before :meth:`start`.
        """
        return self._base("http")

    @property
    def trading_stream_url(self) -> str:
        """URL for ``TradingStream(url_override=...)``, e.g. ``ws://127.0.0.1:5555/stream``.

        Returns:
            The URL.

        Raises:
            RuntimeError: Before :meth:`start`.
        """
        return self._base("ws") + "/stream"

    @property
    def data_stream_url(self) -> str:
        """URL for ``StockDataStream(url_override=...)``, e.g. ``ws://127.0.0.1:5555/v2/iex``.

        Returns:
            The URL (``/v2/sip`` works the same).

        Raises:
            RuntimeError: Before :meth:`start`.
        """
        return self._base("ws") + "/v2/iex"

    # ------------------------------------------------------------ accounts

    def add_account(
        self,
        key: str,
        secret: str,
        cash: Decimal = Decimal("100000"),
        *,
        auto_trade: bool | None = None,
        multiplier: int = 1,
    ) -> SimAccount:
        """Create an account reachable with an API key pair.

        Args:
            key: The API key id.
            secret: The API secret.
            cash: Starting cash in USD (also ``last_equity``).
            auto_trade: Whether the auto trader trades for it; None uses the simulator default.
            multiplier: 1 cash account, 2 Reg T margin, 4 pattern day trader (as Alpaca's
                paper accounts can be).

        Returns:
            The account.

        Raises:
            ValueError: If the key is empty or already used, or the multiplier is not 1, 2 or 4.
        """
        if not key or not secret:
            raise ValueError("key and secret must be non-empty")
        if key in self._accounts:
            raise ValueError(f"account {key!r} already exists")
        account = SimAccount(
            key,
            secret,
            Decimal(cash),
            auto_trade=self.auto_trade if auto_trade is None else auto_trade,
            multiplier=multiplier,
            trading_day=self._trading_day(),
        )
        self._accounts[key] = account
        self._rngs[key] = random.Random(f"{self.seed}:{key}")
        return account

    def account(self, key: str) -> SimAccount:
        """Return an account by key id.

        Args:
            key: The API key id.

        Returns:
            The account.

        Raises:
            KeyError: If there is no such account.
        """
        return self._accounts[key]

    @property
    def accounts(self) -> list[SimAccount]:
        """All accounts, in creation order.

        Returns:
            The accounts.
        """
        return list(self._accounts.values())

    def _trading_day(self) -> date:
        existing = next(iter(self._accounts.values()), None)
        return existing.trading_day if existing is not None else utcnow().date()

    def roll_day(self) -> None:
        """End the trading day for every account: ``last_equity`` := equity now, new day.

        Also sets each account's ``last_maintenance_margin`` and (pattern day traders) the new
        ``bod_dtbp`` (see :meth:`SimAccount.roll_day`), and makes the current prices the
        symbols' previous close (``lastday_price``). The new trading day (``balance_asof``) is
        the next weekday, or with real closes (``day_s`` None) the next NYSE session.
        """
        today = self._trading_day()
        if self._calendar is not None:
            next_day = self._calendar.session_after(today)
        else:
            next_day = today + timedelta(days=1)
            while next_day.weekday() >= 5:
                next_day += timedelta(days=1)
        for account in self._accounts.values():
            account.roll_day(self.price, next_day)
        self._lastday = dict(self._prices)
        log.info("simulator: trading day %s ended; accounts now on %s", today, next_day)

    def _schedule_close(self) -> None:
        """Roll the day at the next real NYSE close (calendar loaded lazily, in a thread)."""
        loop = asyncio.get_running_loop()

        async def schedule() -> None:
            try:
                if self._calendar is None:
                    from streaming.market_calendar import MarketCalendar

                    self._calendar = await loop.run_in_executor(None, MarketCalendar)
                close = await loop.run_in_executor(None, self._calendar.next_close, utcnow())
            except Exception as exc:  # noqa: BLE001 - one line, retried (e.g. out of descriptors)
                if self._tick_cb is None:  # stopped meanwhile
                    return
                log.warning(
                    "simulator: no market calendar (%s: %s); last_equity will not roll until it "
                    "loads, retrying in %g s",
                    type(exc).__name__,
                    exc,
                    CALENDAR_RETRY_S,
                )
                self._close_handle = loop.call_later(CALENDAR_RETRY_S, self._schedule_close)
                return
            if self._tick_cb is None:  # stopped meanwhile
                return
            delay = max(0.0, (close - utcnow()).total_seconds())
            self._close_handle = loop.call_later(delay, self._at_close)

        task = asyncio.ensure_future(schedule())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _at_close(self) -> None:
        self._close_handle = None
        self.roll_day()
        self._schedule_close()

    def authenticate(self, key: Any, secret: Any) -> SimAccount | None:
        """Check an API key pair (REST headers or stream auth message).

        Args:
            key: The key id as received.
            secret: The secret as received.

        Returns:
            The account, or None if refused. With ``accept_any_key`` an unknown non-empty
            key pair gets a fresh account.
        """
        if not isinstance(key, str) or not isinstance(secret, str) or not key or not secret:
            return None
        account = self._accounts.get(key)
        if account is None:
            if not self.accept_any_key:
                return None
            return self.add_account(key, secret)
        return account if account.secret == secret else None

    # ------------------------------------------------------------ prices

    def _symbol(self, symbol: str) -> str:
        sym = symbol.upper()
        if sym not in self._prices:
            raise KeyError(f"unknown symbol {symbol!r}")
        return sym

    def price(self, symbol: str) -> Decimal:
        """Return the current price of a symbol.

        Args:
            symbol: The ticker (any case).

        Returns:
            The price in USD per share (cents).

        Raises:
            KeyError: If the symbol is not simulated.
        """
        return self._prices[self._symbol(symbol)]

    def lastday_price(self, symbol: str) -> Decimal:
        """Return the symbol's "previous close": its price when the simulator was created.

        Args:
            symbol: The ticker (any case).

        Returns:
            The price in USD per share.

        Raises:
            KeyError: If the symbol is not simulated.
        """
        return self._lastday[self._symbol(symbol)]

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Set a price, publish a trade for it at once, and pause its replay.

        The replay of that symbol stays paused until :meth:`resume_replay`. Open limit
        orders that the new price crosses start filling.

        Args:
            symbol: The ticker (any case).
            price: The new price in USD per share (rounded to cents, > 0).

        Raises:
            KeyError: If the symbol is not simulated.
            ValueError: If the price is not positive.
        """
        sym = self._symbol(symbol)
        value = to_cents(Decimal(price))
        if value <= 0:
            raise ValueError("price must be > 0")
        self._paused_symbols.add(sym)
        self._prices[sym] = value
        self._publish_market_data([sym])
        self._check_limit_orders()

    def resume_replay(self, symbol: str | None = None) -> None:
        """Resume the replay of one symbol (or all) after :meth:`set_price`.

        The price jumps back to the replay position at once (published on the next tick).

        Args:
            symbol: The ticker, or None for every symbol.

        Raises:
            KeyError: If the symbol is not simulated.
        """
        syms = [self._symbol(symbol)] if symbol is not None else list(self._paused_symbols)
        for sym in syms:
            self._paused_symbols.discard(sym)
            self._prices[sym] = self.replay.price_at(sym, self.tick * self.tick_s)

    def _on_tick(self) -> None:
        self.tick += 1
        elapsed = self.tick * self.tick_s
        for sym in self.symbols:
            if sym not in self._paused_symbols:
                self._prices[sym] = self.replay.price_at(sym, elapsed)
        self._publish_market_data([s for s in self.symbols if s not in self._paused_symbols])
        self._check_limit_orders()

    # ------------------------------------------------------------ orders

    def submit_order(
        self,
        key: str,
        *,
        symbol: str,
        qty: Decimal,
        side: str,
        type: str = "market",
        limit_price: Decimal | None = None,
        client_order_id: str | None = None,
        time_in_force: str = "day",
    ) -> dict[str, Any]:
        """Place an order for an account, exactly like ``POST /v2/orders``.

        Publishes ``new`` on the trading stream; fills follow after ``fill_delay_s``.

        Args:
            key: The account's API key id.
            symbol: The ticker.
            qty: Shares (> 0).
            side: ``"buy"`` or ``"sell"``.
            type: ``"market"`` or ``"limit"``.
            limit_price: Limit in USD per share (limit orders only).
            client_order_id: Optional unique id; generated if omitted.
            time_in_force: Alpaca's time in force.

        Returns:
            The Alpaca order JSON dict.

        Raises:
            KeyError: If there is no account with that key.
            SimAPIError: As the REST endpoint would answer (422 validation, 403 buying power).
        """
        account = self._accounts[key]
        body: dict[str, Any] = {
            "symbol": symbol,
            "qty": str(qty),
            "side": side,
            "type": type,
            "time_in_force": time_in_force,
        }
        if limit_price is not None:
            body["limit_price"] = str(limit_price)
        if client_order_id is not None:
            body["client_order_id"] = client_order_id
        return self.place_order(account, body)

    def place_order(self, account: SimAccount, body: Any) -> dict[str, Any]:
        """Validate and accept a raw ``POST /v2/orders`` body for an account.

        Args:
            account: The authenticated account.
            body: The decoded JSON body.

        Returns:
            The Alpaca order JSON dict.

        Raises:
            SimAPIError: 422 for validation errors, 403 for insufficient buying power.
        """
        spec: OrderSpec = parse_order_request(body, self.symbols)
        order = account.create_order(spec, self.price)
        self._publish_trade_update(account, trade_update("new", order, order.created_at))
        if order.type == "limit":
            self._open_limits[order.id] = (account, order)
        if order.type == "market" or self._crossed(order):
            self._schedule_execution(account, order)
        return order.to_json()

    def cancel_order(self, account: SimAccount, order_id: str) -> SimOrder:
        """Cancel an open order and publish ``canceled``.

        Args:
            account: The order's account.
            order_id: Alpaca's order id.

        Returns:
            The canceled order.

        Raises:
            SimAPIError: 404 if unknown, 422 if no longer open.
        """
        order = account.cancel_order(order_id)
        self._in_flight.discard(order.id)
        self._publish_trade_update(account, trade_update("canceled", order, order.updated_at))
        return order

    def _crossed(self, order: SimOrder) -> bool:
        price = self._prices[order.symbol]
        if order.type == "market" or order.limit_price is None:
            return True
        if order.side == "buy":
            return price <= order.limit_price
        return price >= order.limit_price

    def _later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def run() -> None:
            if handle is not None:
                self._timers.discard(handle)
            fn(*args)

        handle = loop.call_later(delay, run)
        self._timers.add(handle)

    def _schedule_execution(self, account: SimAccount, order: SimOrder) -> None:
        if order.id in self._in_flight:
            return
        self._in_flight.add(order.id)
        self._later(self.fill_delay_s, self._execute_step, account, order)

    def _execute_step(self, account: SimAccount, order: SimOrder) -> None:
        self._in_flight.discard(order.id)
        if not order.is_open or not self._crossed(order):
            return
        price = self._prices[order.symbol]
        qty = order.remaining
        if order.filled_qty == 0 and order.qty >= _SPLIT_QTY:
            qty = (order.qty / 2).to_integral_value(rounding=ROUND_FLOOR)
        execution: Execution = account.execute(order, qty, price)
        self._publish_trade_update(
            account, trade_update(execution.event, order, execution.timestamp, execution)
        )
        if order.is_open and self._crossed(order):
            self._schedule_execution(account, order)

    def _check_limit_orders(self) -> None:
        for order_id, (account, order) in list(self._open_limits.items()):
            if not order.is_open:
                del self._open_limits[order_id]
            elif order_id not in self._in_flight and self._crossed(order):
                self._schedule_execution(account, order)

    # ------------------------------------------------------------ auto trader

    def _auto_trade_all(self) -> None:
        for account in list(self._accounts.values()):
            if account.auto_trade:
                try:
                    self.auto_trade_once(account)
                except SimAPIError as exc:
                    log.debug("auto trader: %s", exc)

    def auto_trade_once(self, account: SimAccount) -> dict[str, Any] | None:
        """Let the auto trader place one small market order for an account now.

        Mostly buys (1–15 shares of a random symbol, within a third of the free cash);
        about a third of the time, when long somewhere, it sells part or all of a position.

        Args:
            account: The account.

        Returns:
            The order JSON, or None if it decided not to trade.

        Raises:
            SimAPIError: If the order is refused.
        """
        rng = self._rngs.setdefault(account.key, random.Random(f"{self.seed}:{account.key}"))
        sellable: dict[str, Decimal] = {}
        for sym, pos in account.positions.items():
            pending = sum(
                (
                    o.remaining
                    for o in account.orders.values()
                    if o.is_open and o.symbol == sym and o.side == "sell"
                ),
                ZERO,
            )
            free = pos.qty - pending
            if free >= 1:
                sellable[sym] = free
        if sellable and rng.random() < 0.35:
            sym = rng.choice(sorted(sellable))
            held = int(sellable[sym])
            qty = held if rng.random() < 0.4 else max(1, int(held * rng.uniform(0.2, 0.6)))
            body = {"symbol": sym, "qty": str(qty), "side": "sell"}
        else:
            sym = rng.choice(self.symbols)
            qty = rng.choice(_AUTO_BUY_SIZES)
            budget = (account.cash - account.reserved_buying_power(self.price)) / 3
            price = self._prices[sym]
            qty = min(qty, int(budget / price)) if price > 0 else 0
            if qty < 1:
                return None
            body = {"symbol": sym, "qty": str(qty), "side": "buy"}
        body.update(type="market", time_in_force="day")
        return self.place_order(account, body)

    # ------------------------------------------------------------ streams

    def register_trading(self, conn: TradingStreamHandler) -> None:
        """Track an open trading-stream connection.

        Args:
            conn: The handler.
        """
        self._trading_conns.add(conn)

    def unregister_trading(self, conn: TradingStreamHandler) -> None:
        """Forget a closed trading-stream connection.

        Args:
            conn: The handler.
        """
        self._trading_conns.discard(conn)

    def register_data(self, conn: DataStreamHandler) -> None:
        """Track an open market-data connection.

        Args:
            conn: The handler.
        """
        self._data_conns.add(conn)

    def unregister_data(self, conn: DataStreamHandler) -> None:
        """Forget a closed market-data connection.

        Args:
            conn: The handler.
        """
        self._data_conns.discard(conn)

    def trading_listeners(self, key: str | None = None) -> int:
        """Count trading-stream connections listening to ``trade_updates``.

        Args:
            key: Only connections authenticated with this API key, or all.

        Returns:
            The number of listening connections.
        """
        return sum(
            1
            for c in self._trading_conns
            if "trade_updates" in c.streams
            and c.account is not None
            and (key is None or c.account.key == key)
        )

    def data_subscriptions(self) -> list[dict[str, set[str]]]:
        """Return the subscriptions of every authenticated market-data connection.

        Returns:
            One ``{"trades": {...}, "quotes": {...}, ...}`` dict (copies) per connection.
        """
        return [
            {ch: set(syms) for ch, syms in c.subs.items()}
            for c in self._data_conns
            if c.account is not None
        ]

    @property
    def streams_paused(self) -> bool:
        """Whether stream output is suppressed (see :meth:`pause_streams`).

        Returns:
            The flag.
        """
        return self._streams_paused

    def pause_streams(self, paused: bool) -> None:
        """Stop (or resume) sending any stream message, to simulate a silent broker.

        While paused, messages are dropped, not queued (control replies too); sockets stay
        open and prices, orders and fills go on.

        Args:
            paused: True to mute every stream, False to resume.
        """
        self._streams_paused = paused

    async def drop_stream_connections(self) -> None:
        """Abruptly close every trading and data stream socket (no close handshake)."""
        conns = [*self._trading_conns, *self._data_conns]
        for conn in conns:
            conn.abort()
        self._trading_conns.clear()
        self._data_conns.clear()
        await asyncio.sleep(0)

    def _publish_trade_update(self, account: SimAccount, msg: dict[str, Any]) -> None:
        if self._streams_paused:
            return
        payload = json.dumps(msg).encode()
        for conn in list(self._trading_conns):
            if conn.account is account and "trade_updates" in conn.streams:
                conn.send_raw(payload)

    def next_trade_id(self) -> int:
        """Return a fresh trade id for the data stream.

        Returns:
            An increasing integer.
        """
        self._trade_id += 1
        return self._trade_id

    def _publish_market_data(self, symbols: list[str]) -> None:
        if self._streams_paused or not self._data_conns:
            return
        now = utcnow()
        sizes = {s: self._data_rng.randint(1, 400) for s in symbols}
        for conn in list(self._data_conns):
            conn.send_ticks(symbols, self._prices, sizes, now)
