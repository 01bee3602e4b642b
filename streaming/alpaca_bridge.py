"""Bridge from Alpaca (or the bundled simulator) to the portfolio service, with real ``alpaca-py``.

Three alpaca-py clients, the same code against Alpaca and against the simulator (only the URLs
differ, see ``ALPACA_*_URL``):

- one :class:`alpaca.trading.stream.TradingStream` per linked trader (``trade_updates``: order
  events and fills), with the trader's own key pair;
- one :class:`alpaca.data.live.StockDataStream` (market-data trades for the symbols held),
  started only once a symbol is held — started empty it spins a core (see
  ``../shared/alpaca-protocol.md``) — and re-subscribed as positions open and close;
- :class:`alpaca.trading.client.TradingClient` for the REST reconciliation
  (``syncPositionsFromAlpaca``: account, positions, open orders) at start and every
  ``SYNC_INTERVAL_S``.

Threading: each stream's ``run()`` calls ``asyncio.run`` itself, so each runs in its own daemon
thread and hands messages to the IOLoop with ``loop.call_soon_threadsafe``. ``subscribe_trades``
/ ``unsubscribe_trades`` block on the stream's own loop, so they are called from an executor
thread, never from the stream's thread (that deadlocks). Reconnection with exponential backoff
is alpaca-py's own (``_run_forever``); a stream thread that dies anyway is restarted with
backoff by :class:`_StreamThread`. Synchronous REST calls run in the default executor.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tornado.ioloop import PeriodicCallback

from streaming.service import PortfolioService
from streaming.tasks import spawn

__all__ = ["AlpacaBridge", "BridgeAccount", "Endpoints"]

log = logging.getLogger(__name__)

#: Seconds before the market calendar is loaded again after it failed.
CALENDAR_RETRY_S = 60.0

#: How many recently closed orders a sync reads (newest first) to learn which executions the
#: REST view already counts.
_CLOSED_ORDERS_READ = 200


def _default_calendar() -> Any:
    """Build the NYSE calendar (imported here: it loads pandas; call it off the IOLoop)."""
    from streaming.market_calendar import MarketCalendar

    return MarketCalendar("XNYS")


@dataclass(frozen=True)
class BridgeAccount:
    """One trader's broker account as the bridge needs it (never log ``secret``)."""

    user_id: str
    key: str
    secret: str
    paper: bool = True

    def __repr__(self) -> str:
        return f"BridgeAccount(user_id={self.user_id!r}, key=***)"


@dataclass(frozen=True)
class Endpoints:
    """URL overrides; None means Alpaca's own endpoints (paper or live per account).

    Attributes:
        trading_url: REST base URL (``http://host:port``; the client appends ``/v2/...``).
        stream_url: trading stream URL (``ws://host:port/stream``).
        data_url: market-data stream URL (``ws://host:port/v2/iex``).
    """

    trading_url: str | None = None
    stream_url: str | None = None
    data_url: str | None = None


class _StreamThread:
    """Runs one alpaca-py stream's ``run()`` in a daemon thread, restarting it if it returns."""

    def __init__(self, name: str, factory: Callable[[], Any]) -> None:
        self.name = name
        self._factory = factory
        self.stream: Any = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(5.0)

    def _main(self) -> None:
        delay = 1.0
        while not self._stopping.is_set():
            self.stream = self._factory()
            self._ready.set()
            try:
                asyncio.run(self.stream._run_forever())
            except Exception:
                log.exception("%s crashed", self.name)
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, 30.0)
            log.warning("%s ended; restarting", self.name)

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the stream to stop and close its socket; wait up to ``timeout`` seconds."""
        self._stopping.set()
        stream = self.stream
        loop = getattr(stream, "_loop", None)
        if stream is not None and loop is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(stream), loop).result(timeout)
            except Exception:  # the loop may already be gone
                log.debug("%s: stop signal not delivered", self.name, exc_info=True)
        self._thread.join(timeout)

    @staticmethod
    async def _shutdown(stream: Any) -> None:
        await stream.stop_ws()
        await stream.close()

    def is_alive(self) -> bool:
        return self._thread.is_alive()


class AlpacaBridge:
    """Feeds :class:`PortfolioService` from Alpaca's streams and REST API.

    Args:
        service: receives trade updates, prices and REST syncs (on the IOLoop).
        accounts: the linked traders.
        data_key: key pair used for the market-data stream (the operator's, or in demo mode
            the simulator's data account).
        data_secret: its secret.
        endpoints: URL overrides (simulator, or any Alpaca-compatible endpoint).
        sync_interval_s: seconds between REST reconciliations.
        paper: use Alpaca's paper endpoints for the market-data/REST defaults.
        accounts_provider: coroutine function returning the current linked accounts; when
            given, it is asked before every periodic sync, so traders linked (``adduser``) or
            re-linked while the server runs get their stream without a restart.
        calendar_factory: builds the exchange calendar used to sync right after each market
            close and open (when the broker's ``last_equity`` and day change); None disables
            those syncs. Called once, in an executor thread (loading it imports pandas).
    """

    def __init__(
        self,
        service: PortfolioService,
        accounts: list[BridgeAccount],
        *,
        data_key: str,
        data_secret: str,
        endpoints: Endpoints | None = None,
        sync_interval_s: float = 60.0,
        paper: bool = True,
        accounts_provider: Callable[[], Awaitable[list[BridgeAccount]]] | None = None,
        calendar_factory: Callable[[], Any] | None = _default_calendar,
    ) -> None:
        self.service = service
        self.accounts = list(accounts)
        self.endpoints = endpoints or Endpoints()
        self.sync_interval_s = sync_interval_s
        self.paper = paper
        self.accounts_provider = accounts_provider
        self._data_key, self._data_secret = data_key, data_secret
        self._loop: asyncio.AbstractEventLoop | None = None
        self._trading: dict[str, _StreamThread] = {}
        self._data: _StreamThread | None = None
        self._data_symbols: set[str] = set()
        self._symbol_lock = asyncio.Lock()
        self._timers: list[PeriodicCallback] = []
        self._clients: dict[str, Any] = {}
        self.syncs = 0
        self.sync_errors = 0
        self._calendar_factory = calendar_factory
        self._calendar: Any = None
        self._boundary: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._stopped = False
        #: Seconds after a close/open at which the boundary sync runs (the broker needs a moment
        #: to roll its day).
        self.boundary_delay_s = 10.0
        #: Time (UTC) of the next close/open sync, None until known.
        self.next_boundary_sync: datetime | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every trading stream, run the first REST sync, start the periodic sync."""
        self._loop = asyncio.get_running_loop()
        self.service.symbols_listener = self._on_symbols
        for account in self.accounts:
            self._start_trading(account)
        await self.sync_all()
        self._timers.append(PeriodicCallback(self._sync_soon, self.sync_interval_s * 1000.0))
        stale_tick = min(self.service.stale_after_s / 3.0, 5.0) * 1000.0
        self._timers.append(PeriodicCallback(self.service.check_staleness, stale_tick))
        for timer in self._timers:
            timer.start()
        if self._calendar_factory is not None:
            self._schedule_boundary()

    # -- trading-day boundaries -----------------------------------------------------------------
    def _schedule_boundary(self) -> None:
        """Sync every trader shortly after the next market close or open (NYSE calendar).

        Alpaca's ``last_equity`` is the equity at the previous close; the day P&L base and the
        realized P&L today change with the broker's trading day, which a periodic sync would
        only notice up to ``sync_interval_s`` late.
        """
        task = asyncio.ensure_future(self._plan_boundary())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _plan_boundary(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._calendar is None:
                assert self._calendar_factory is not None
                self._calendar = await loop.run_in_executor(None, self._calendar_factory)
            calendar = self._calendar
            now = datetime.now(UTC)
            close, opening = await loop.run_in_executor(
                None, lambda: (calendar.next_close(now), calendar.next_open(now))
            )
        except Exception as exc:  # e.g. out of descriptors while it loads: try again later
            log.warning(
                "no market calendar (%s: %s): close/open syncs off, retrying in %.0f s",
                type(exc).__name__,
                exc,
                CALENDAR_RETRY_S,
            )
            if not self._stopped:
                self._boundary = loop.call_later(CALENDAR_RETRY_S, self._schedule_boundary)
            return
        if self._stopped:
            return
        at = min(close, opening) + timedelta(seconds=self.boundary_delay_s)
        self.next_boundary_sync = at
        delay = max(0.0, (at - datetime.now(UTC)).total_seconds())
        log.info("next close/open sync at %s", at.isoformat())
        self._boundary = loop.call_later(delay, self._at_boundary)

    def _at_boundary(self) -> None:
        self._boundary = None
        log.info("market close/open: syncing every trader for the broker's new day")
        self._sync_soon()
        self._schedule_boundary()

    def _start_trading(self, account: BridgeAccount) -> None:
        self.service.add_account(account.user_id)
        thread = _StreamThread(
            f"trading-stream-{account.user_id}", functools.partial(self._trading_stream, account)
        )
        self._trading[account.user_id] = thread
        thread.start()

    async def set_accounts(self, accounts: list[BridgeAccount]) -> list[str]:
        """Bring the running streams in line with ``accounts`` (linked, unlinked, re-keyed).

        Args:
            accounts: every trader that should have a trading stream now.

        Returns:
            The userIds whose stream was (re)started.
        """
        new = {a.user_id: a for a in accounts}
        old = {a.user_id: a for a in self.accounts}
        gone = [u for u, a in old.items() if new.get(u) != a]
        loop = asyncio.get_running_loop()
        threads = [self._trading.pop(u) for u in gone if u in self._trading]
        await asyncio.gather(*(loop.run_in_executor(None, t.stop) for t in threads))
        for user_id in gone:
            self._clients.pop(user_id, None)
        self.accounts = list(new.values())
        started = [a for u, a in new.items() if old.get(u) != a]
        for account in started:
            log.info("trader %s linked: starting its trading stream", account.user_id)
            self._start_trading(account)
        await asyncio.gather(*(self.sync_account(a) for a in started))
        return [a.user_id for a in started]

    async def _refresh_and_sync(self) -> None:
        if self.accounts_provider is not None:
            try:
                await self.set_accounts(await self.accounts_provider())
            except Exception:
                log.exception("could not refresh the linked accounts")
        await self.sync_all()

    async def stop(self) -> None:
        """Stop timers and every stream (each given up to 2 s), in executor threads."""
        for timer in self._timers:
            timer.stop()
        self._timers.clear()
        if self._boundary is not None:
            self._boundary.cancel()
            self._boundary = None
        for task in list(self._tasks):
            task.cancel()
        self._stopped = True
        threads = list(self._trading.values()) + ([self._data] if self._data else [])
        loop = asyncio.get_running_loop()
        # alpaca-py reports the normal close (1000) we cause here as a "websocket error" WARNING;
        # keep the shutdown log readable by muting its stream loggers below ERROR meanwhile.
        muted = [logging.getLogger(n) for n in ("alpaca.trading.stream", "alpaca.data.live")]
        levels = [logger.level for logger in muted]
        for logger in muted:
            logger.setLevel(logging.ERROR)
        try:
            await asyncio.gather(*(loop.run_in_executor(None, t.stop) for t in threads))
        finally:
            for logger, level in zip(muted, levels, strict=True):
                logger.setLevel(level)
        self._trading.clear()
        self._data = None

    # -- trading stream ---------------------------------------------------------------------------
    def _trading_stream(self, account: BridgeAccount) -> Any:
        from alpaca.trading.stream import TradingStream

        stream = TradingStream(
            account.key,
            account.secret,
            paper=account.paper,
            raw_data=True,
            url_override=self.endpoints.stream_url,  # type: ignore[arg-type]  # None = Alpaca
        )
        loop = self._loop
        assert loop is not None
        service = self.service

        async def on_trade_update(message: Mapping[str, Any]) -> None:
            data = message.get("data", message)
            loop.call_soon_threadsafe(service.on_trade_update, account.user_id, data)

        stream.subscribe_trade_updates(on_trade_update)
        return stream

    # -- market data ------------------------------------------------------------------------------
    def _data_stream(self) -> Any:
        from alpaca.data.enums import DataFeed
        from alpaca.data.live import StockDataStream

        stream = StockDataStream(
            self._data_key,
            self._data_secret,
            raw_data=True,
            feed=DataFeed.IEX,
            url_override=self.endpoints.data_url,
        )
        if self._data_symbols:
            stream.subscribe_trades(self._on_trade, *sorted(self._data_symbols))
        return stream

    async def _on_trade(self, trade: Any) -> None:
        # Runs on the data stream's thread: hand over to the IOLoop.
        symbol, price, stamp = trade.get("S"), trade.get("p"), trade.get("t")
        if not symbol or price is None or self._loop is None:
            return
        at: datetime | None = None
        if stamp is not None and hasattr(stamp, "to_datetime"):
            at = stamp.to_datetime()
        self._loop.call_soon_threadsafe(self.service.on_price, symbol, str(price), at)

    def _on_symbols(self, symbols: set[str]) -> None:
        spawn(self._resubscribe(symbols), "bridge-resubscribe")

    async def _resubscribe(self, symbols: set[str]) -> None:
        """Subscribe market data for new symbols and unsubscribe closed ones (in an executor)."""
        async with self._symbol_lock:
            loop = asyncio.get_running_loop()
            added = sorted(symbols - self._data_symbols)
            removed = sorted(self._data_symbols - symbols)
            self._data_symbols = set(symbols)
            if self._data is None:
                if symbols:
                    self._data = _StreamThread("market-data-stream", self._data_stream)
                    await loop.run_in_executor(None, self._data.start)
                return
            stream = self._data.stream
            try:
                if added:
                    await loop.run_in_executor(
                        None, stream.subscribe_trades, self._on_trade, *added
                    )
                if removed:
                    await loop.run_in_executor(None, stream.unsubscribe_trades, *removed)
            except Exception:
                log.exception(
                    "market-data resubscription failed (added %s, removed %s)", added, removed
                )
            log.info("market data now watches %s", ", ".join(sorted(symbols)) or "nothing")

    @property
    def data_symbols(self) -> set[str]:
        """Symbols the market-data stream is subscribed to."""
        return set(self._data_symbols)

    # -- REST reconciliation ----------------------------------------------------------------------
    def _client(self, account: BridgeAccount) -> Any:
        client = self._clients.get(account.user_id)
        if client is None:
            from alpaca.trading.client import TradingClient

            client = TradingClient(
                account.key,
                account.secret,
                paper=account.paper,
                raw_data=True,
                url_override=self.endpoints.trading_url,
            )
            self._clients[account.user_id] = client
        return client

    def _fetch(self, account: BridgeAccount) -> tuple[Any, Any, Any, Any] | None:
        """Read one trader's broker view so that no fill can fall between its reads.

        Reads ``GET /v2/account``, ``/v2/positions``, the open orders, the recently closed
        orders (their ``filled_qty`` tells the portfolio which executions the view already
        counts), then the account again. Every execution moves cash, so equal cash in the two
        account reads means no fill landed in between (two fills whose cash exactly cancels are
        the one blind spot: the next sync corrects them).

        Returns:
            ``(account, positions, open orders, closed orders)`` as Alpaca JSON, or ``None``
            when a fill landed between the reads (the caller retries).

        Raises:
            Exception: whatever alpaca-py raises for a failed request.
        """
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        client = self._client(account)
        before = client.get_account()
        positions = client.get_all_positions()
        orders = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500))
        closed = client.get_orders(
            GetOrdersRequest(status=QueryOrderStatus.CLOSED, limit=_CLOSED_ORDERS_READ)
        )
        after = client.get_account()
        if before.get("cash") != after.get("cash"):
            return None
        return after, positions, orders, closed

    async def sync_account(self, account: BridgeAccount, attempts: int = 3) -> bool:
        """Fetch one trader's account, positions and orders and reconcile; False on error.

        A sync whose REST reads saw a fill land between them (:meth:`_fetch`), or whose REST
        calls overlapped a fill event arriving on the stream (the service discards it: it could
        roll the fill back), is retried up to ``attempts`` times, 0.5 s apart.
        """
        loop = asyncio.get_running_loop()
        for attempt in range(attempts):
            before = self.service.fill_count(account.user_id)
            try:
                view = await loop.run_in_executor(None, self._fetch, account)
            except Exception as exc:
                self.sync_errors += 1
                log.warning("REST sync for trader %s failed: %s", account.user_id, exc)
                return False
            if view is not None:
                acct, positions, orders, closed = view
                if self.service.on_sync(
                    account.user_id,
                    acct,
                    positions,
                    orders,
                    closed_orders=closed,
                    fills_before=before,
                ):
                    self.syncs += 1
                    return True
            if attempt + 1 < attempts:
                await asyncio.sleep(0.5)
        log.info(
            "REST sync for trader %s raced fills %d times; next interval", account.user_id, attempts
        )
        return False

    async def sync_all(self) -> None:
        """Reconcile every linked trader, concurrently."""
        await asyncio.gather(*(self.sync_account(a) for a in self.accounts))

    def _sync_soon(self) -> None:
        spawn(self._refresh_and_sync(), "bridge-sync-soon")

    def status(self) -> dict[str, Any]:
        """Return the bridge's state for the admin stats."""
        return {
            "tradingStreams": {u: t.is_alive() for u, t in self._trading.items()},
            "marketData": self._data.is_alive() if self._data else False,
            "syncs": self.syncs,
            "syncErrors": self.sync_errors,
        }
