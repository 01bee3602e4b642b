"""The publisher: from portfolio changes to numbered publications in the engine.

Flow of one update (the broker side of :mod:`streaming.manager`, as Centrifuge splits its node
from its client sessions)::

    producer (broker bridge via PortfolioService, internal hook, Redis ingest)
        └─ Publisher.emit(user_id, type, data, view=…)
             └─ Batcher.add ─ held (position/account) or released (order/trade, in order)
                  └─ outbox ─ [StateStore.save(view())] ─ Broker.publish (seq, history, fan-out)

Every process that produces events has one publisher: a ``bridge`` for broker events, a ``web``
process for what the hook and the ingest accept, the single process for both. It never touches
a socket: the engine's fan-out hands publications to whichever processes hold the user's tabs.

**Outbox.** Events are published one at a time, in order. While the engine is unreachable they
wait (bounded by ``outbox_max_events``; past it the oldest replaceable one goes first and its
user is re-announced when the engine is back: issue 9, item 3).

**State before sequence.** With a :class:`StateStore` (Redis: web processes read snapshots and
REST answers from it), the user's portfolio view is saved *before* the first publication that
follows a change, from the ``view`` function the producer passed with the event. A snapshot read
after ``position(user)`` is therefore never older than the sequence number it is sent with;
it may be newer, which only repeats complete position/account snapshots.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from tornado.ioloop import IOLoop

from streaming.batching import Batcher, Outgoing
from streaming.broker import Broker, BrokerUnavailable
from streaming.events import EventType
from streaming.metrics import Metrics
from streaming.pacing import TimeSlicer

__all__ = ["Publisher", "StateStore", "ViewFn"]

log = logging.getLogger(__name__)

#: Event types whose loss a later complete snapshot repairs (outbox eviction order).
_REPLACEABLE = frozenset({EventType.POSITION_UPDATE, EventType.ACCOUNT_UPDATE, EventType.BATCH})

ViewFn = Callable[[], dict[str, Any]]
"""Returns a trader's whole current view: ``{"positions", "orders" (all remembered, newest
first), "account", "trades"}`` in wire shape (:meth:`PortfolioService.view`)."""


class StateStore(Protocol):
    """Where web processes read a trader's view from (:class:`streaming.shared.SharedPortfolio`)."""

    async def save(self, user_id: str, view: Mapping[str, Any]) -> None:
        """Store ``view`` for ``user_id``; raise :class:`BrokerUnavailable` when unreachable."""
        ...


class Publisher:
    """Batches, queues and publishes stream events into the engine, in order.

    Args:
        engine: the memory or Redis engine.
        metrics: the process's metrics (outbox gauges, broker silence).
        batch_window_ms: batching window in milliseconds (0: no batching).
        outbox_max_events: events held while the engine is unreachable before the oldest
            replaceable ones are dropped (their users re-announced).
        state: where each changed user's view is saved before its next publication (None:
            snapshots are read from this process's memory).
        clock: monotonic clock in seconds.
    """

    def __init__(
        self,
        engine: Broker,
        *,
        metrics: Metrics | None = None,
        batch_window_ms: int = 250,
        outbox_max_events: int = 10_000,
        state: StateStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.metrics = metrics or Metrics()
        self.batcher = Batcher(batch_window_ms)
        self.outbox_max_events = outbox_max_events
        self.outbox_dropped = 0
        self.engine_down_since: float | None = None
        self._state = state
        self._clock = clock
        self._outbox: deque[Outgoing] = deque()
        #: user → how to read their whole view (the latest given with one of their events).
        self._views: dict[str, ViewFn] = {}
        #: users whose view changed since it was last saved to ``state``.
        self._unsaved: set[str] = set()
        #: users whose events the outbox dropped: re-announced when the engine is back.
        self._resync: set[str] = set()
        self._draining: asyncio.Task[None] | None = None
        self._slicer = TimeSlicer()
        self._idle = asyncio.Event()
        self._idle.set()
        #: The timer armed for the earliest due batch, and when that is (monotonic seconds).
        self._timer: object | None = None
        self._timer_due = 0.0
        self._ioloop: IOLoop | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start releasing batches when their window ends (if batching), on the current IOLoop.

        No periodic tick: one timer is armed for the earliest due batch (each user's windows
        have their own phase, :mod:`streaming.batching`) and re-armed after each release, so a
        batch leaves when its window ends, not at the next tick after it (a 25 ms tick added up
        to 25 ms to every batched update and released several users' batches in one burst).
        """
        if self.batcher.window_ms > 0 and self._ioloop is None:
            self._ioloop = IOLoop.current()
            self._arm()

    async def stop(self, drain_s: float = 2.0) -> None:
        """Flush pending batches and wait up to ``drain_s`` seconds for the outbox to empty."""
        ioloop, self._ioloop = self._ioloop, None
        if ioloop is not None and self._timer is not None:
            ioloop.remove_timeout(self._timer)
        self._timer = None
        self.flush()
        try:
            await asyncio.wait_for(self.wait_idle(), drain_s)
        except TimeoutError:  # the engine is unreachable: what it could not take is lost
            log.error("shutting down with %d events not published", len(self._outbox))
            if self._draining is not None:
                self._draining.cancel()

    async def wait_idle(self) -> None:
        """Wait until everything emitted so far has been published (and delivered locally)."""
        await self._idle.wait()

    # -- producing ----------------------------------------------------------------------------
    def emit(
        self,
        user_id: str,
        type_: str,
        data: Mapping[str, Any],
        at: float | None = None,
        *,
        view: ViewFn | None = None,
    ) -> None:
        """Send one stream event to ``user_id`` (through batching). Never blocks.

        Args:
            user_id: wire userId.
            type_: ``position_update``, ``order_update``, ``account_update``, ``trade_executed``
                or ``status``.
            data: event data in wire shape.
            at: monotonic seconds the update entered the server (default: now).
            view: how to read the user's whole view after this change; saved to the state store
                before the event is published, and used to re-announce the user after an outbox
                overflow.
        """
        if view is not None:
            self._views[user_id] = view
            if self._state is not None:
                self._unsaved.add(user_id)
        out = self.batcher.add(user_id, type_, data, self._clock() if at is None else at)
        if out:
            self._enqueue(out)
        elif self._ioloop is not None:
            self._arm()

    def flush_due(self) -> None:
        """Release the batches whose window has ended, then re-arm the batch timer."""
        out = self.batcher.drain_due(self._clock())
        if out:
            self._enqueue(out)
        if self._ioloop is not None:
            self._arm()

    def _arm(self) -> None:
        """Arm the batch timer for the earliest due batch, unless it is armed for earlier."""
        due = self.batcher.next_due()
        ioloop = self._ioloop
        if due is None or ioloop is None:
            return
        if self._timer is not None:
            if self._timer_due <= due:
                return
            ioloop.remove_timeout(self._timer)
        self._timer_due = due
        self._timer = ioloop.call_later(max(0.0, due - self._clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self.flush_due()
        except Exception:  # logged once; the next batch re-arms the timer
            log.exception("releasing due batches failed")
            self._arm()

    def flush(self) -> None:
        """Release every pending batch now, due or not (shutdown; tests)."""
        out = self.batcher.drain()
        if out:
            self._enqueue(out)

    def forget(self, user_id: str) -> None:
        """Drop what is kept to read ``user_id``'s view (their account moved elsewhere)."""
        self._views.pop(user_id, None)
        self._unsaved.discard(user_id)

    # -- the outbox -----------------------------------------------------------------------------
    def _enqueue(self, out: list[Outgoing]) -> None:
        """Append to the outbox, keeping it within ``outbox_max_events``.

        The outbox only grows while the engine is unreachable. Past the bound the oldest
        position/account snapshot (or batch) goes first — a later snapshot or the re-announce
        replaces it — and an order or execution only when nothing else is left; each drop is
        counted and its user re-announced when the engine is back.
        """
        self._outbox.extend(out)
        while len(self._outbox) > self.outbox_max_events:
            # The first event may be in the middle of a publish: never take that one.
            first = 1 if self._draining is not None and not self._draining.done() else 0
            victim = next(
                (i for i in range(first, len(self._outbox)) if self._outbox[i][1] in _REPLACEABLE),
                first,
            )
            user_id, type_, _, _ = self._outbox[victim]
            del self._outbox[victim]
            self.outbox_dropped += 1
            self.metrics.outbox_dropped.inc()
            self._resync.add(user_id)
            if self.outbox_dropped == 1 or self.outbox_dropped % 1000 == 0:
                log.warning(
                    "outbox full (%d events): dropped a %s of user %s (%d dropped so far); "
                    "positions and account will be announced again",
                    self.outbox_max_events,
                    type_,
                    user_id,
                    self.outbox_dropped,
                )
        self.metrics.outbox.set(len(self._outbox))
        self._kick()

    def _kick(self) -> None:
        if self._draining is None or self._draining.done():
            self._idle.clear()
            self._draining = asyncio.ensure_future(self._drain())

    async def _publish(self, user_id: str, type_: str, data: dict[str, Any], at: float) -> None:
        """Save the user's view if it changed (state before sequence), then publish."""
        if user_id in self._unsaved and self._state is not None:
            view = self._views.get(user_id)
            self._unsaved.discard(user_id)
            if view is not None:
                try:
                    await self._state.save(user_id, view())
                except BaseException:
                    self._unsaved.add(user_id)
                    raise
        await self.engine.publish(user_id, type_, data, emitted_at=at)

    async def _drain(self) -> None:
        """Publish the outbox in order; while the engine is unreachable, wait and retry."""
        self._slicer.start()
        delay = 0.1
        try:
            while self._outbox:
                head = self._outbox[0]
                user_id, type_, data, at = head
                try:
                    await self._publish(user_id, type_, data, at)
                except BrokerUnavailable as exc:
                    if self.engine_down_since is None:
                        self.engine_down_since = self._clock()
                        log.warning("engine unreachable (%s): holding events in the outbox", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue  # the same event, still first in line
                except Exception:
                    log.exception("publish failed for user %s (%s); event dropped", user_id, type_)
                if self._outbox and self._outbox[0] is head:
                    self._outbox.popleft()
                if self.engine_down_since is not None or self._resync:
                    self._engine_back()
                delay = 0.1
                self.metrics.outbox.set(len(self._outbox))
                # A flush to thousands of tabs gives the loop back every few ms (pacing.py).
                await self._slicer.pause_if_due()
        finally:
            self._idle.set()

    def _engine_back(self) -> None:
        """The engine answers again: re-announce the users whose events were dropped.

        Their complete positions and account (from the view given with their events) replace
        whatever snapshots of theirs still wait in the outbox; orders and executions keep their
        place.
        """
        if self.engine_down_since is not None:
            down = self._clock() - self.engine_down_since
            self.engine_down_since = None
            log.warning(
                "engine reachable again after %.1f s; %d events waiting", down, len(self._outbox)
            )
        users, self._resync = self._resync, set()
        # Their queued snapshots are older than the state announced now: replace, not add
        # (so an outbox at its bound shrinks instead of dropping again).
        self._outbox = deque(
            e for e in self._outbox if not (e[0] in users and e[1] in _REPLACEABLE)
        )
        for user_id in users:
            view = self._views.get(user_id)
            if view is None:
                continue
            full = view()
            for position in full.get("positions", []):
                self.emit(user_id, EventType.POSITION_UPDATE, position, view=view)
            if full.get("account") is not None:
                self.emit(user_id, EventType.ACCOUNT_UPDATE, full["account"], view=view)

    # -- stats ----------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Return ``{"outbox": {"events", "dropped", "engineDown"}, "batching": {...}}``."""
        return {
            "outbox": {
                "events": len(self._outbox),
                "dropped": self.outbox_dropped,
                "engineDown": self.engine_down_since is not None,
            },
            "batching": {
                "windowMs": self.batcher.window_ms,
                "updatesCoalesced": self.batcher.absorbed,
                "batchesSent": self.batcher.batches,
            },
        }
