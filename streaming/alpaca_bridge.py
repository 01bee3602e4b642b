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

Catch-up on a hand-over (issue 9, item 2; ``docs/catchup.md``). Given a ``fills_ledger`` (the
engine's :meth:`streaming.broker.Broker.published_fills`), every account the bridge starts — at
:meth:`AlpacaBridge.start` and when :meth:`AlpacaBridge.set_accounts` adds one — is brought up
in this order: its trading stream starts with its trade updates *held* (a per-account queue on
the IOLoop); the ledger is read (what the previous owner published); the REST sync runs; the
executions after the ledger's newest fill (:func:`streaming.catchup.catch_up`, in an executor)
are applied through :meth:`PortfolioService.on_trade_update`, in broker order; the held updates
are released, minus the executions the catch-up already applied; the account is live.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tornado.ioloop import PeriodicCallback

from streaming.broker import PublishedFills
from streaming.catchup import CatchUpEvent, catch_up, fill_key
from streaming.service import PortfolioService
from streaming.tasks import spawn

__all__ = ["AlpacaBridge", "BridgeAccount", "Endpoints", "FillsLedger"]

FillsLedger = Callable[[str], Awaitable[PublishedFills]]
"""Reads a user's fills ledger: the engine's ``published_fills`` (``userId → PublishedFills``)."""

#: Seconds subtracted from the ledger's newest fill time to get the catch-up's ``since``: the
#: stream's event time and the broker's REST times may differ by a little (the catch-up reads
#: fills from a further ``overlap_s`` before it anyway and drops what the ledger holds).
CATCH_UP_SLACK_S = 2.0
#: Trade updates applied between two yields to the IOLoop while a catch-up is published.
_APPLY_SLICE = 200

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
        if self._thread.ident is not None:  # a stop right after start() may come first
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
        fills_ledger: reads what the engine has published for a user (the engine's
            ``published_fills``); when given, every account started is caught up before it
            streams (module docstring, ``docs/catchup.md``). None: no catch-up, streams go
            live at once (one process, no hand-over).
        catch_up_attempts: tries of sync + catch-up before the account goes live anyway
            (its gap stays pending and is retried at every periodic sync until it succeeds).
        catch_up_backoff_s: seconds before the second try, doubled before each next one.
        catch_up_timeout_s: seconds one catch-up's REST reads may take before it counts as
            failed.
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
        fills_ledger: FillsLedger | None = None,
        catch_up_attempts: int = 4,
        catch_up_backoff_s: float = 1.0,
        catch_up_timeout_s: float = 60.0,
    ) -> None:
        if catch_up_attempts < 1:
            raise ValueError("catch_up_attempts must be at least 1")
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
        self.fills_ledger = fills_ledger
        self.catch_up_attempts = catch_up_attempts
        self.catch_up_backoff_s = catch_up_backoff_s
        self.catch_up_timeout_s = catch_up_timeout_s
        #: userId → trade updates held while the account is caught up (present = holding).
        self._held: dict[str, deque[Mapping[str, Any]]] = {}
        #: userId → ``(since, floor)`` of a catch-up that failed; retried at every sync.
        self._pending: dict[str, tuple[datetime, datetime | None]] = {}
        self.catch_ups = 0
        self.caught_up_fills = 0
        self.catch_up_errors = 0
        self.held_duplicates = 0

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every trading stream, run the first REST sync, start the periodic sync."""
        self._loop = asyncio.get_running_loop()
        self.service.symbols_listener = self._on_symbols
        for account in self.accounts:
            self._start_trading(account)
        await asyncio.gather(*(self._bring_up(a) for a in self.accounts))
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
        if self.fills_ledger is not None:  # held until caught up (before the first message)
            self._held[account.user_id] = deque()
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
            self._held.pop(user_id, None)
            self._pending.pop(user_id, None)
        self.accounts = list(new.values())
        started = [a for u, a in new.items() if old.get(u) != a]
        for account in started:
            log.info("trader %s linked: starting its trading stream", account.user_id)
            self._start_trading(account)
        await asyncio.gather(*(self._bring_up(a) for a in started))
        return [a.user_id for a in started]

    async def _refresh_and_sync(self) -> None:
        if self.accounts_provider is not None:
            try:
                await self.set_accounts(await self.accounts_provider())
            except Exception:
                log.exception("could not refresh the linked accounts")
        await self.sync_all()
        if self._pending:
            await asyncio.gather(*(self._retry_pending(u) for u in list(self._pending)))

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
        deliver = self._on_trade_update

        async def on_trade_update(message: Mapping[str, Any]) -> None:
            data = message.get("data", message)
            loop.call_soon_threadsafe(deliver, account.user_id, data)

        stream.subscribe_trade_updates(on_trade_update)
        return stream

    def _on_trade_update(self, user_id: str, data: Mapping[str, Any]) -> None:
        """A trade update from the stream (on the IOLoop): held while catching up, else applied."""
        held = self._held.get(user_id)
        if held is not None:
            held.append(data)
        else:
            self.service.on_trade_update(user_id, data)

    # -- catch-up on a hand-over ------------------------------------------------------------------
    async def _bring_up(self, account: BridgeAccount) -> bool:
        """Sync and catch up one account whose stream was just started (held), then release it.

        Tries ``catch_up_attempts`` times with doubling backoff; each failure is one warning
        line naming the cause. If every try fails the account goes live anyway: its held updates
        are released, and the gap (when the ledger could be read) stays pending, retried at
        every periodic sync (:meth:`_retry_pending`).

        Returns:
            True when the account was caught up (or needed nothing), False when it went live
            without (or was unlinked meanwhile).
        """
        user_id = account.user_id
        if self.fills_ledger is None:
            return await self.sync_account(account)
        thread = self._trading.get(user_id)
        ledger: PublishedFills | None = None
        seen: Collection[str] = ()
        for attempt in range(self.catch_up_attempts):
            if attempt:
                await asyncio.sleep(self.catch_up_backoff_s * 2 ** (attempt - 1))
            if self._stopped or self._trading.get(user_id) is not thread:
                return False  # stopped, unlinked or re-keyed meanwhile: that one takes over
            stage = "reading the fills ledger"
            try:
                if ledger is None:
                    ledger = await self.fills_ledger(user_id)
                seen = ledger.ids
                stage = "REST sync"
                if not await self.sync_account(account):
                    raise RuntimeError("the REST sync did not complete")
                stage = "catch-up"
                start = self._catch_up_start(ledger)
                if start is not None:
                    since, floor = start
                    seen = await self._catch_up(account, since, floor, ledger.ids, thread)
                self._release(user_id, thread, seen)
                return True
            except Exception as exc:
                self.catch_up_errors += 1
                log.warning(
                    "catch-up of trader %s failed at %s (try %d of %d): %s: %s",
                    user_id,
                    stage,
                    attempt + 1,
                    self.catch_up_attempts,
                    type(exc).__name__,
                    exc,
                )
        start = None if ledger is None else self._catch_up_start(ledger)
        if start is not None and self._trading.get(user_id) is thread:
            self._pending[user_id] = start
        log.warning(
            "trader %s streams live without catch-up after %d tries; %s",
            user_id,
            self.catch_up_attempts,
            "the missed executions will be published when a retry at a later sync succeeds"
            if start is not None
            else "nothing to compare against (fills ledger unreadable or empty)",
        )
        self._release(user_id, thread, seen)
        return False

    @staticmethod
    def _catch_up_start(ledger: PublishedFills) -> tuple[datetime, datetime | None] | None:
        """Return ``(since, floor)`` of the catch-up a ledger calls for, None when none does.

        ``since`` is the newest published fill time minus :data:`CATCH_UP_SLACK_S`; without
        any fill in the epoch, the epoch's start, and then ``floor`` = that start (nothing from
        before the stream began is published: clients took a snapshot of it). A ledger with no
        publication at all: None.
        """
        if ledger.newest is not None:
            return ledger.newest - timedelta(seconds=CATCH_UP_SLACK_S), None
        if ledger.started_at is not None:
            return ledger.started_at, ledger.started_at
        return None

    async def _catch_up(
        self,
        account: BridgeAccount,
        since: datetime,
        floor: datetime | None,
        seen: Collection[str],
        thread: _StreamThread | None,
    ) -> set[str]:
        """Read the executions after ``since`` and apply them in order; return the ids/keys seen.

        Raises:
            Exception: the REST reads failed (alpaca-py ``APIError``, network,
                :class:`streaming.catchup.CatchUpError`, a timeout); nothing was applied.
        """
        loop = asyncio.get_running_loop()
        client = self._client(account)
        read = functools.partial(catch_up, client, since=since, seen=seen)
        result = await asyncio.wait_for(loop.run_in_executor(None, read), self.catch_up_timeout_s)
        events: list[CatchUpEvent] = result.events
        if floor is not None:
            events = [e for e in events if e.timestamp >= floor]
        if self._trading.get(account.user_id) is not thread:
            return result.seen  # unlinked while reading: its successor catches up instead
        for index, event in enumerate(events):
            self.service.on_trade_update(account.user_id, event.trade_update())
            if index % _APPLY_SLICE == _APPLY_SLICE - 1:
                await asyncio.sleep(0)  # the loop breathes; stream updates are still held
        fills = sum(1 for e in events if e.fill is not None)
        self.catch_ups += 1
        self.caught_up_fills += fills
        if events:
            log.info(
                "trader %s caught up: %d execution(s), %d order update(s) since %s",
                account.user_id,
                fills,
                len(events) - fills,
                since.isoformat(),
            )
        return result.seen

    def _release(self, user_id: str, thread: _StreamThread | None, seen: Collection[str]) -> None:
        """Apply the held trade updates in arrival order and go live (synchronously).

        An execution the catch-up already applied — same ``execution_id``, or same fill key
        (:func:`streaming.catchup.fill_key` of ``order.id`` and ``order.filled_qty``: Alpaca
        does not document that an activity's id carries the stream's ``execution_id``) — is
        dropped; the rest go to the service, which drops repeated order versions itself.
        """
        if self._trading.get(user_id) is not thread:
            return
        held = self._held.pop(user_id, None)
        for data in held or ():
            if seen and _already_applied(data, seen):
                self.held_duplicates += 1
                continue
            self.service.on_trade_update(user_id, data)

    async def _retry_pending(self, user_id: str) -> None:
        """Retry the catch-up of an account that went live without it (one warning if it fails).

        ``since`` is the one of the hand-over; ``seen`` is the ledger now, which holds every
        execution published since, live ones included. What it finds is published late (after
        live executions) but once.
        """
        start = self._pending.get(user_id)
        account = next((a for a in self.accounts if a.user_id == user_id), None)
        if start is None or account is None or self.fills_ledger is None:
            self._pending.pop(user_id, None)
            return
        thread = self._trading.get(user_id)
        try:
            ledger = await self.fills_ledger(user_id)
            await self._catch_up(account, start[0], start[1], ledger.ids, thread)
        except Exception as exc:
            self.catch_up_errors += 1
            log.warning(
                "catch-up of trader %s still failing (%s: %s); retrying at the next sync",
                user_id,
                type(exc).__name__,
                exc,
            )
            return
        if self._pending.get(user_id) == start:
            del self._pending[user_id]

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
            "catchUp": {
                "runs": self.catch_ups,
                "executions": self.caught_up_fills,
                "errors": self.catch_up_errors,
                "duplicatesDropped": self.held_duplicates,
                "holding": sorted(self._held),
                "pending": sorted(self._pending),
            },
        }


def _already_applied(data: Mapping[str, Any], seen: Collection[str]) -> bool:
    """True for a fill whose execution id or fill key is in ``seen`` (malformed: False)."""
    if not isinstance(data, Mapping) or data.get("event") not in ("fill", "partial_fill"):
        return False
    execution_id = data.get("execution_id")
    if isinstance(execution_id, str) and execution_id in seen:
        return True
    order = data.get("order")
    if not isinstance(order, Mapping):
        return False
    order_id, filled = order.get("id"), order.get("filled_qty")
    if not isinstance(order_id, str) or filled is None:
        return False
    try:
        return fill_key(order_id, filled) in seen
    except (ValueError, TypeError, ArithmeticError):
        return False
