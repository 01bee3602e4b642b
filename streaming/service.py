"""The portfolio service: one :class:`PortfolioState` per trader, fed by the broker bridge.

The bridge calls the ``on_*`` methods on the IOLoop thread with Alpaca's own JSON (alpaca-py
``raw_data=True``); each resulting change is emitted to that trader's stream through the
:class:`~streaming.publisher.Publisher`, with the trader's whole view (saved to Redis before the
event is published when web processes read it from there). In a single process the service is
also the :class:`~streaming.manager.PortfolioReader` for snapshots and REST. It watches broker
silence: ``stale_after_s`` without a broker message → a ``status`` event to its traders saying
the data may be stale; the next message → a ``status`` saying it is live again (design doc,
Risk 5).

It holds the traders whose broker account this process streams: all of them in a single
process, those whose lease it holds in a cluster's bridge (:mod:`streaming.leases`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from streaming.events import EventType
from streaming.portfolio import PortfolioState
from streaming.publisher import Publisher
from streaming.pushed import PushedState

__all__ = ["PortfolioService"]

log = logging.getLogger(__name__)


class PortfolioService:
    """Holds every linked trader's portfolio and turns broker events into stream events.

    Args:
        publisher: where changes are emitted.
        stale_after_s: seconds of broker silence before clients are told data may be stale.
        clock: monotonic clock in seconds.
    """

    def __init__(
        self,
        publisher: Publisher,
        *,
        stale_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.publisher = publisher
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._states: dict[str, PortfolioState] = {}
        self._symbols: set[str] = set()
        self.last_message_at = clock()
        #: The last feed status told to the traders (``{"code", "message", "stale"}``).
        self._status: dict[str, Any] | None = None
        self.rejected_updates = 0
        self._fills: dict[str, int] = {}
        #: State carried by events other services pushed (hook, ingest): see streaming/pushed.py.
        self._pushed: dict[str, PushedState] = {}

    # -- accounts -----------------------------------------------------------------------------
    def add_account(self, user_id: str) -> PortfolioState:
        """Create (or return) the portfolio state of trader ``user_id``."""
        state = self._states.get(user_id)
        if state is None:
            state = self._states[user_id] = PortfolioState(user_id)
        return state

    def remove_account(self, user_id: str) -> None:
        """Forget trader ``user_id``'s broker state (another bridge streams the account now)."""
        self._states.pop(user_id, None)
        self._fills.pop(user_id, None)
        if user_id not in self._pushed:
            self.publisher.forget(user_id)
        self._check_symbols()

    def state_users(self) -> list[str]:
        """Return the userIds whose broker account this process streams."""
        return list(self._states)

    def state(self, user_id: str) -> PortfolioState | None:
        """Return trader ``user_id``'s state, or None if no broker account is linked."""
        return self._states.get(user_id)

    # -- broker events (called on the IOLoop) -------------------------------------------------
    def _emit(
        self, user_id: str, changes: Sequence[tuple[str, Mapping[str, Any]]], at: float
    ) -> None:
        view = functools.partial(self.current_view, user_id)
        for type_, data in changes:
            self.publisher.emit(user_id, type_, data, at, view=view)

    def _broker_alive(self) -> float:
        now = self._clock()
        self.last_message_at = now
        self.publisher.metrics.broker_last_message.set(time.time())
        if self.stale:
            self.broadcast_status("broker_ok", "Live data restored", stale=False)
        return now

    def on_trade_update(self, user_id: str, update: Mapping[str, Any]) -> None:
        """Apply one ``trade_updates`` message ``data`` for trader ``user_id``."""
        at = self._broker_alive()
        state = self._states.get(user_id)
        if state is None:
            log.warning("trade update for unknown trader %s ignored", user_id)
            return
        try:
            changes = state.apply_trade_update(update)
        except ValueError as exc:
            self.rejected_updates += 1
            log.warning("rejected trade update for trader %s: %s", user_id, exc)
            return
        if any(type_ == "trade_executed" for type_, _ in changes):
            self._fills[user_id] = self._fills.get(user_id, 0) + 1
        self._emit(user_id, changes, at)
        self._check_symbols()

    def fill_count(self, user_id: str) -> int:
        """Return how many executions trader ``user_id`` has had (to detect sync races)."""
        return self._fills.get(user_id, 0)

    def on_price(
        self, symbol: str, price: Decimal | str | float, at: datetime | None = None
    ) -> None:
        """Apply a market-data trade price to every trader holding ``symbol``."""
        now = self._broker_alive()
        for user_id, state in self._states.items():
            try:
                changes = state.apply_price(symbol, price, at)
            except ValueError as exc:
                log.warning("rejected price for %s (trader %s): %s", symbol, user_id, exc)
                continue
            self._emit(user_id, changes, now)

    def on_sync(
        self,
        user_id: str,
        account: Mapping[str, Any] | None,
        positions: Sequence[Mapping[str, Any]],
        orders: Sequence[Mapping[str, Any]] | None,
        *,
        closed_orders: Sequence[Mapping[str, Any]] | None = None,
        fills_before: int | None = None,
    ) -> bool:
        """Reconcile trader ``user_id`` with the broker's REST view (start and every 60 s).

        Args:
            user_id: the trader.
            account: Alpaca ``GET /v2/account`` JSON.
            positions: Alpaca ``GET /v2/positions`` JSON.
            orders: Alpaca ``GET /v2/orders?status=open`` JSON.
            closed_orders: Alpaca ``GET /v2/orders?status=closed`` JSON (recent ones), read
                only for which executions the view already counts (see ``PortfolioState.sync``).
            fills_before: :meth:`fill_count` taken before the REST calls started. If a fill
                arrived while they were in flight, the REST view may predate it, and applying
                it would roll the fill back; the sync is then skipped (the caller retries).

        Returns:
            False when the sync was skipped because of such a race, else True.
        """
        if fills_before is not None and fills_before != self.fill_count(user_id):
            log.debug("sync for trader %s skipped: a fill arrived during the REST calls", user_id)
            return False
        state = self.add_account(user_id)
        try:
            changes = state.sync(account, positions, orders, closed_orders)
        except ValueError as exc:
            log.warning("rejected REST sync for trader %s: %s", user_id, exc)
            return True
        if changes:
            log.info("sync for trader %s corrected %d item(s)", user_id, len(changes))
        self._emit(user_id, changes, self._clock())
        self._check_symbols()
        return True

    def _check_symbols(self) -> None:
        held: set[str] = set()
        for state in self._states.values():
            held |= state.symbols()
        self._symbols = held

    def symbols(self) -> set[str]:
        """Return every symbol some trader holds (market data is watched for these)."""
        return set(self._symbols)

    def check_staleness(self) -> None:
        """Periodic check: tell connected clients when the broker has gone silent."""
        if self.stale or not self._states:
            return
        if self._clock() - self.last_message_at >= self.stale_after_s:
            silent = int(self._clock() - self.last_message_at)
            log.warning("no broker message for %d s: telling clients data may be stale", silent)
            self.broadcast_status(
                "broker_stale", f"No broker data for {silent} s; prices may be stale", stale=True
            )

    @property
    def stale(self) -> bool:
        """True while clients are told the broker feed may be stale."""
        return self._status is not None and bool(self._status["stale"])

    def broadcast_status(self, code: str, message: str, *, stale: bool) -> None:
        """Tell every trader of this feed about it with a ``status`` stream event.

        The status is also part of each trader's view (``"status"``, while stale), so a trader
        subscribing later, on any web process, is told at once.

        Args:
            code: ``broker_stale`` or ``broker_ok``.
            message: human-readable explanation.
            stale: whether data may be stale from now on.
        """
        self._status = {"code": code, "message": message, "stale": stale}
        for user_id in self._states:
            view = functools.partial(self.current_view, user_id)
            self.publisher.emit(user_id, EventType.STATUS, self._status, view=view)

    # -- reads ----------------------------------------------------------------------------------
    def current_view(self, user_id: str) -> dict[str, Any]:
        """Return the trader's whole view now (see :meth:`view`)."""
        return {
            "positions": self.positions(user_id),
            "orders": self.orders(user_id),
            "account": self.account(user_id),
            "trades": self.trades(user_id),
            "status": self._status if self.stale else None,
        }

    async def view(self, user_id: str) -> dict[str, Any]:
        """Return ``{"positions", "orders" (all remembered, newest first), "account", "trades"}``.

        The :class:`~streaming.manager.PortfolioReader` of a single process.
        """
        return self.current_view(user_id)

    # -- pushed events (internal hook, Redis ingest) ------------------------------------------
    async def accept_pushed(self, user_id: str, type_: str, data: dict[str, Any]) -> None:
        """Take an event another service pushed: keep its state, then relay it.

        Args:
            user_id: an existing user (the caller checked).
            type_: a hook type; ``position_update``/``order_update``/``account_update`` carry
                state and are kept (:mod:`streaming.pushed`), ``trade_executed`` is relayed only.
            data: data already validated by :func:`streaming.events.validate_pushed_event`.
        """
        pushed = self._pushed.get(user_id)
        if pushed is None:
            pushed = self._pushed[user_id] = PushedState()
        pushed.apply(type_, data)
        view = functools.partial(self.current_view, user_id)
        self.publisher.emit(user_id, type_, data, view=view)

    # -- reads: the broker's state with pushed state laid over ---------------------------------
    def positions(self, user_id: str) -> list[dict[str, Any]]:
        """Return the trader's open positions (``PositionUpdate`` dicts, by symbol)."""
        state = self._states.get(user_id)
        broker = state.positions() if state else []
        pushed = self._pushed.get(user_id)
        return pushed.positions(broker) if pushed else broker

    def orders(self, user_id: str) -> list[dict[str, Any]]:
        """Return the trader's remembered orders, newest first."""
        state = self._states.get(user_id)
        broker = state.orders() if state else []
        pushed = self._pushed.get(user_id)
        return pushed.orders(broker) if pushed else broker

    def account(self, user_id: str) -> dict[str, Any] | None:
        """Return the trader's ``AccountUpdate``, or None when none is known."""
        state = self._states.get(user_id)
        broker = state.account() if state else None
        pushed = self._pushed.get(user_id)
        return pushed.account(broker) if pushed else broker

    def trades(self, user_id: str) -> list[dict[str, Any]]:
        """Return the trader's recent executions (the broker's; pushed ones are notifications)."""
        state = self._states.get(user_id)
        return state.trades() if state else []

    def accounts(self) -> list[tuple[str, dict[str, Any] | None]]:
        """Return ``(user_id, AccountUpdate wire dict or None)`` for every trader (history)."""
        users = dict.fromkeys([*self._states, *self._pushed])
        return [(user_id, self.account(user_id)) for user_id in users]

    def status(self) -> dict[str, Any]:
        """Return the broker-feed status for the admin stats."""
        return {
            "stale": self.stale,
            "secondsSinceBrokerMessage": round(self._clock() - self.last_message_at, 3),
            "traders": len(self._states),
            "symbolsWatched": sorted(self._symbols),
            "rejectedUpdates": self.rejected_updates,
        }
