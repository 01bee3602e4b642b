"""The portfolio service: one :class:`PortfolioState` per trader, fed by the broker bridge.

The bridge calls the ``on_*`` methods on the IOLoop thread with Alpaca's own JSON (alpaca-py
``raw_data=True``); each resulting change is emitted to that trader's stream through the
:class:`~streaming.manager.StreamManager`. The service is also the snapshot source for new
subscriptions and the REST endpoints, and it watches broker silence: ``stale_after_s`` without a
broker message while clients are connected → a ``status`` event saying the data may be stale;
the next message → a ``status`` saying it is live again (design doc, Risk 5).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from streaming.manager import StreamManager
from streaming.portfolio import PortfolioState

__all__ = ["PortfolioService"]

log = logging.getLogger(__name__)


class PortfolioService:
    """Holds every linked trader's portfolio and turns broker events into stream events.

    Args:
        manager: where changes are emitted.
        stale_after_s: seconds of broker silence before clients are told data may be stale.
        clock: monotonic clock in seconds.
    """

    def __init__(
        self,
        manager: StreamManager,
        *,
        stale_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.manager = manager
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._states: dict[str, PortfolioState] = {}
        self._symbols: set[str] = set()
        self.symbols_listener: Callable[[set[str]], None] | None = None
        self.last_message_at = clock()
        self.stale = False
        self.rejected_updates = 0
        self._fills: dict[str, int] = {}
        #: Only the leader process publishes broker events (see :mod:`streaming.leader`); the
        #: others keep their state current for snapshots and REST but stay silent.
        self.publishing = True
        #: True when other processes serve connections too (Redis): status events then go to
        #: every trader, not only to those connected to this process.
        self.shared_fanout = False

    # -- accounts -----------------------------------------------------------------------------
    def add_account(self, user_id: str) -> PortfolioState:
        """Create (or return) the portfolio state of trader ``user_id``."""
        state = self._states.get(user_id)
        if state is None:
            state = self._states[user_id] = PortfolioState(user_id)
        return state

    def state(self, user_id: str) -> PortfolioState | None:
        """Return trader ``user_id``'s state, or None if no broker account is linked."""
        return self._states.get(user_id)

    # -- broker events (called on the IOLoop) -------------------------------------------------
    def _emit(
        self, user_id: str, changes: Sequence[tuple[str, Mapping[str, Any]]], at: float
    ) -> None:
        if not self.publishing:
            return
        for type_, data in changes:
            self.manager.emit(user_id, type_, data, at)

    def set_publishing(self, publishing: bool) -> None:
        """Start or stop publishing broker events (leadership change).

        On becoming the publisher, every trader's positions and account are announced as
        complete snapshots, so clients converge on anything missed during the hand-over.
        """
        self.publishing = publishing
        if not publishing:
            return
        at = self._clock()
        for user_id, state in self._states.items():
            changes: list[tuple[str, Mapping[str, Any]]] = [
                ("position_update", p) for p in state.positions()
            ]
            account = state.account()
            if account is not None:
                changes.append(("account_update", account))
            self._emit(user_id, changes, at)

    def _broker_alive(self) -> float:
        now = self._clock()
        self.last_message_at = now
        self.manager.metrics.broker_last_message.set(time.time())
        if self.stale:
            self.stale = False
            if not self.publishing:
                return now
            self.manager.broadcast_status(
                "broker_ok", "Live data restored", stale=False, users=self._status_targets()
            )
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
        if held != self._symbols:
            self._symbols = held
            if self.symbols_listener is not None:
                self.symbols_listener(set(held))

    def _status_targets(self) -> list[str]:
        """Traders to tell about the broker feed: all of them, or those connected here."""
        if self.shared_fanout:
            return list(self._states)
        connected = set(self.manager.hub.users())
        return [u for u in self._states if u in connected]

    def symbols(self) -> set[str]:
        """Return every symbol some trader holds (market data is watched for these)."""
        return set(self._symbols)

    def check_staleness(self) -> None:
        """Periodic check: tell connected clients when the broker has gone silent."""
        if not self.publishing:
            return
        if self.stale or not self._status_targets():
            return
        if self._clock() - self.last_message_at >= self.stale_after_s:
            self.stale = True
            silent = int(self._clock() - self.last_message_at)
            log.warning("no broker message for %d s: telling clients data may be stale", silent)
            self.manager.broadcast_status(
                "broker_stale",
                f"No broker data for {silent} s; prices may be stale",
                stale=True,
                users=self._status_targets(),
            )

    # -- reads ----------------------------------------------------------------------------------
    def snapshot(self, user_id: str) -> dict[str, Any]:
        """Return the trader's current positions, open orders, account and recent trades."""
        state = self._states.get(user_id)
        if state is None:
            return {"positions": [], "orders": [], "account": None, "trades": []}
        return {
            "positions": state.positions(),
            "orders": state.orders(open_only=True),
            "account": state.account(),
            "trades": state.trades(),
        }

    def status(self) -> dict[str, Any]:
        """Return the broker-feed status for the admin stats."""
        return {
            "stale": self.stale,
            "secondsSinceBrokerMessage": round(self._clock() - self.last_message_at, 3),
            "traders": len(self._states),
            "symbolsWatched": sorted(self._symbols),
            "rejectedUpdates": self.rejected_updates,
        }
