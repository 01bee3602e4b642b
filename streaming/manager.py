"""The portfolio stream manager: from portfolio changes to frames on the right sockets.

Flow of one update::

    producer ─ Publisher.emit ─ batcher ─ outbox ─ Broker.publish   (streaming/publisher.py)
        engine fan-out (this process, or every process holding the user's tabs with Redis)
            └─ StreamManager._on_publication ─ Hub.deliver (filter per connection, send)

It also answers client messages (:meth:`StreamManager.handle`): ``subscribe`` (then a
``snapshot`` or, when the client gives ``lastSeq``+``epoch`` still in history, a replay),
``unsubscribe`` and ``ping``; and it runs the heartbeat: a ping every ``heartbeat_interval_s``
and a close with 4000 when a ping sent at least ``heartbeat_timeout_s`` ago is still unanswered
(no frame at all from the client since) *and* the time the event loop itself stood still
(:meth:`LoopLagMonitor.longest_stall_since`) is not what made it late: a stall is subtracted from
the wait, so a server pause (GC, SIGSTOP, a long callback) never disconnects healthy clients.
(Tornado's own ``websocket_ping_timeout`` is capped at the ping interval since 6.5, so 15 s / 30 s
needs this accounting.)

Pings are spread, not sent in waves. Every ping costs a write and the pong a read, and tabs open
in crowds (a deploy, a reconnect storm): pinging every due tab at once would add, every
``heartbeat_interval_s``, a burst of that many writes and reads to the loop (at 10,000 tabs,
~0.5 s of work arriving in one go, which every trader saw as late updates). So each session's
next heartbeat check (its next ping, or its ping's timeout) sits in a heap; the heartbeat ticks
:data:`HEARTBEAT_TICKS_PER_INTERVAL` times per interval, takes only the sessions that are due
(never a scan of every tab), and sends at most twice the steady rate of pings per tick
(:meth:`StreamManager.ping_budget`); tabs beyond the budget are checked again at the next tick,
and since each tab's next ping follows its last, a crowd that opened together is spread over
the interval after its first round and stays so. Session expiry (4001) is checked by a scan of
every session every third of the interval, with the engine's slots renewal.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from tornado.ioloop import PeriodicCallback

from streaming.broker import Broker, Publication
from streaming.closecodes import CloseCode
from streaming.events import Channel, EventType, NoticeCode, encode, envelope
from streaming.frames import PreparedMessage
from streaming.hub import Hub
from streaming.looplag import LoopLagMonitor
from streaming.metrics import Metrics
from streaming.pacing import TimeSlicer
from streaming.portfolio import CLOSED_ORDER_STATUSES
from streaming.protocol import ClientMessage
from streaming.publisher import Publisher
from streaming.session import Sent, Session
from streaming.subscription import Subscription, filter_data

__all__ = ["StreamManager", "PortfolioReader"]

log = logging.getLogger(__name__)


class PortfolioReader(Protocol):
    """Where a trader's current view comes from: this process's memory or the Redis state."""

    async def view(self, user_id: str) -> dict[str, Any]:
        """Return the trader's whole view in wire shape, pushed state laid over the broker's.

        Returns:
            ``{"positions", "orders" (all remembered, newest first), "account", "trades"}``,
            plus ``"status"`` (``{"code", "message", "stale"}``) while the trader's broker feed
            is stale.
        """
        ...


class _NoPortfolio:
    async def view(self, user_id: str) -> dict[str, Any]:
        return {"positions": [], "orders": [], "account": None, "trades": []}


def _filter_snapshot(sub: Subscription, full: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if Channel.POSITIONS in sub.channels:
        out["positions"] = [p for p in full.get("positions", []) if sub.wants_symbol(p["symbol"])]
    if Channel.ORDERS in sub.channels:  # a snapshot lists open orders only
        out["orders"] = [
            o
            for o in full.get("orders", [])
            if o.get("status") not in CLOSED_ORDER_STATUSES and sub.wants_symbol(o["symbol"])
        ]
    if Channel.ACCOUNT in sub.channels:
        out["account"] = full.get("account")
    if Channel.TRADES in sub.channels:
        out["trades"] = [t for t in full.get("trades", []) if sub.wants_symbol(t["symbol"])]
    return out


#: ``notice`` data per engine state (``Broker.connected``): code, one-line message, degraded.
_ENGINE_NOTICE: dict[bool, dict[str, Any]] = {
    False: {
        "code": NoticeCode.ENGINE_DOWN.value,
        "message": "Live updates paused: this server cannot reach its message bus (Redis); "
        "retrying",
        "degraded": True,
    },
    True: {
        "code": NoticeCode.ENGINE_OK.value,
        "message": "Live updates resumed: resubscribe with lastSeq and epoch to replay what "
        "was missed",
        "degraded": False,
    },
}


#: Heartbeat ticks per ping interval (0.1 s at the default 15 s): how finely pings are spread
#: (each tick's pongs come back together and are read in one loop iteration: at 10,000 tabs a
#: 0.25 s tick's ~330 pongs made 15–20 ms iterations) and how soon a timeout or an engine status
#: change is noticed.
HEARTBEAT_TICKS_PER_INTERVAL = 150

#: A tick may always send this many pings, whatever the number of tabs.
MIN_PINGS_PER_TICK = 100


class StreamManager:
    """Owns the hub, the connections' sessions and the fan-out handler; one per web process.

    Args:
        broker: the bus (memory or Redis engine).
        batch_window_ms: batching window (0: no batching).
        max_connections_per_user: REQ-3 limit.
        heartbeat_interval_s: seconds between pings.
        heartbeat_timeout_s: seconds of client silence before closing with 4000.
        source: where snapshots are read from (default: nobody has a portfolio).
        publisher: where this process's own events go (default: a new one on ``broker`` with
            ``batch_window_ms`` and ``outbox_max_events``).
        clock: monotonic clock in seconds (tests may replace it).
        wall_clock: unix time in seconds, for session expiry (tests may replace it).
    """

    def __init__(
        self,
        broker: Broker,
        *,
        batch_window_ms: int = 250,
        max_connections_per_user: int = 5,
        heartbeat_interval_s: float = 15.0,
        heartbeat_timeout_s: float = 30.0,
        source: PortfolioReader | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        outbox_max_events: int = 10_000,
        publisher: Publisher | None = None,
    ) -> None:
        self.broker = broker
        self.hub = Hub(max_connections_per_user)
        self.metrics = publisher.metrics if publisher is not None else Metrics()
        #: Where this process's own events go (the stale status at subscribe).
        self.publisher = publisher or Publisher(
            broker,
            metrics=self.metrics,
            batch_window_ms=batch_window_ms,
            outbox_max_events=outbox_max_events,
            clock=clock,
        )
        self.loop_lag = LoopLagMonitor(self.metrics.loop_lag, clock=clock)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self._source: PortfolioReader = source or _NoPortfolio()
        self._clock = clock
        self._wall_clock = wall_clock
        self._timers: list[PeriodicCallback] = []
        #: Seconds between heartbeat ticks; slots are renewed every third of the shorter of
        #: interval and timeout, as before the ticks were made finer.
        self.heartbeat_tick_s = max(
            0.01, min(heartbeat_interval_s, heartbeat_timeout_s) / HEARTBEAT_TICKS_PER_INTERVAL
        )
        self._slots_every_s = max(0.01, min(heartbeat_interval_s, heartbeat_timeout_s) / 3.0)
        self._slots_refreshed_at = clock()
        #: ``(when, order, session)``: each open session's next heartbeat check (its live entry
        #: is the one whose ``when`` equals ``session.heartbeat_due``; others are stale).
        self._heartbeats: list[tuple[float, int, Session]] = []
        self._heartbeat_order = itertools.count()
        self._process_id = secrets.token_hex(6)
        self._slot_counter = itertools.count(1)
        #: ``broker.connected`` as the clients were last told it (see the module docstring).
        self._engine_up = True
        broker.set_handler(self._on_publication)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the publisher's batch timer and the heartbeat :class:`PeriodicCallback`."""
        self.publisher.start()
        self._timers.append(PeriodicCallback(self.sweep_paced, self.heartbeat_tick_s * 1000.0))
        for timer in self._timers:
            timer.start()
        self.loop_lag.start()

    async def stop(self, grace_s: float = 1.0, drain_s: float = 2.0) -> None:
        """Flush pending batches, deliver them, close every socket with 1001, stop timers.

        Args:
            drain_s: seconds to wait for the outbox to be published (longer only matters
                while the engine is unreachable).
            grace_s: seconds to wait for clients to answer the close frame (RFC 6455 §7.1.2)
                before returning; connections still open then are left to be aborted.
        """
        for timer in self._timers:
            timer.stop()
        self._timers.clear()
        self.loop_lag.stop()
        await self.publisher.stop(drain_s)
        self.hub.close_all(CloseCode.GOING_AWAY, "Server shutting down")
        for _ in range(max(1, int(grace_s / 0.02))):  # real time, whatever the injected clock
            if not self.hub.count():
                break
            await asyncio.sleep(0.02)

    async def wait_idle(self) -> None:
        """Wait until everything emitted so far has been published and delivered."""
        await self.publisher.wait_idle()

    def _on_publication(self, pub: Publication) -> None:
        self.metrics.published.labels(type=pub.type).inc()
        sent, overloaded = self.hub.deliver(pub)
        for client in overloaded:  # after the hub's loop: it never sees its sets change
            self._close_slow(client)
        if sent and pub.emitted_at:
            self.metrics.observe_latency(max(0.0, self._clock() - pub.emitted_at))

    def _send(self, client: Session, message: PreparedMessage) -> None:
        """Send one message to one connection, closing it with 4002 if it stopped reading."""
        if client.send(message) is Sent.OVERLOADED:
            self._close_slow(client)

    def _close_slow(self, client: Session) -> None:
        log.warning(
            "user %s is not reading: closing with 4002",
            client.user_id,
            extra={"userId": client.user_id, "connId": client.conn_id},
        )
        client.close(CloseCode.SLOW_CONSUMER, "Too slow: reconnect and take a snapshot")
        # It will not read our close frame either: free its slot now.
        self.disconnect(client, CloseCode.SLOW_CONSUMER)

    # -- connections --------------------------------------------------------------------------
    async def admit(self, client: Session) -> bool:
        """Take a deployment-wide slot for ``client`` (REQ-3 across processes), then connect.

        Returns:
            False when its user already holds ``MAX_CONNECTIONS_PER_USER`` connections here or
            on any other process sharing the engine.
        """
        slot = f"{self._process_id}:{next(self._slot_counter)}"
        if not await self.broker.acquire_slot(client.user_id, slot, self.hub.max_per_user):
            self.metrics.rejects.labels(reason="max_connections").inc()
            return False
        if not self.connect(client):
            self.broker.release_slot(client.user_id, slot)
            return False
        client.slot = slot
        return True

    def connect(self, client: Session) -> bool:
        """Register a new connection; False when its user already has the maximum (REQ-3)."""
        if not self.hub.add(client):
            self.metrics.rejects.labels(reason="max_connections").inc()
            return False
        now = self._clock()
        client.last_seen = client.last_ping = client.opened_at = now
        self._schedule(client, now + self.heartbeat_interval_s)
        self.metrics.connects.inc()
        self.metrics.connections.set(self.hub.count())
        return True

    def disconnect(self, client: Session, code: int | None) -> None:
        """Unregister a closed connection and record why it closed (idempotent)."""
        opened, client.opened_at = client.opened_at, None
        client.ping_unanswered = None
        slot, client.slot = client.slot, None
        if slot is not None:
            self.broker.release_slot(client.user_id, slot)
        if opened is None:
            return
        self.hub.remove(client)
        if not self.hub.holds(client.user_id):
            self.broker.unwatch(client.user_id)
        self.metrics.duration.observe(self._clock() - opened)
        self.metrics.observe_disconnect(code)
        self.metrics.connections.set(self.hub.count())

    def seen(self, client: Session) -> None:
        """Record that a frame (message or pong) arrived from ``client``."""
        client.last_seen = self._clock()

    def sweep(self) -> None:
        """Heartbeat tick: 4000 for unresponsive connections, 4001 for expired sessions, pings.

        A connection is unresponsive when its oldest unanswered ping was sent at least
        ``heartbeat_timeout_s`` ago, not counting the longest stall of the event loop since then
        (during a stall the client's answer may be waiting, unread, in our socket buffer).
        Only the sessions whose heartbeat check is due are looked at; expiry is checked for all.
        """
        now, wall = self._clock(), self._wall_clock()
        budget = [self.ping_budget()]
        for client in self._due_heartbeats(now):
            self._check(client, now, budget)
        for client in self.hub.all():
            self._expire(client, wall)

    async def sweep_paced(self) -> None:
        """:meth:`sweep`, giving the loop back every few ms (:mod:`streaming.pacing`).

        The heartbeat timer runs this one, every :attr:`heartbeat_tick_s`; the expiry scan
        and the slots renewal run every third of the interval.
        """
        await self._tell_engine_status()
        now, wall = self._clock(), self._wall_clock()
        budget = [self.ping_budget()]
        slicer = TimeSlicer()
        for client in self._due_heartbeats(now):
            if client.opened_at is not None:  # not closed while we yielded
                self._check(client, now, budget)
            await slicer.pause_if_due()
        if now - self._slots_refreshed_at >= self._slots_every_s:
            self._slots_refreshed_at = now
            for client in self.hub.all():
                if client.opened_at is not None:
                    self._expire(client, wall)
                await slicer.pause_if_due()
            await self._refresh_slots()

    def _schedule(self, client: Session, when: float) -> None:
        """Make ``when`` (monotonic seconds) ``client``'s next heartbeat check."""
        client.heartbeat_due = when
        heapq.heappush(self._heartbeats, (when, next(self._heartbeat_order), client))

    def _due_heartbeats(self, now: float) -> list[Session]:
        """Take the open sessions whose heartbeat check is due at ``now``, earliest first."""
        heap, due = self._heartbeats, []
        while heap and heap[0][0] <= now:
            when, _, client = heapq.heappop(heap)
            if client.opened_at is not None and client.heartbeat_due == when:
                due.append(client)
        return due

    def ping_budget(self) -> int:
        """Most pings one heartbeat tick sends: twice the steady rate, at least 100.

        Steady rate: every open tab once per ``heartbeat_interval_s``, i.e. tabs × tick /
        interval per tick (67 per 0.1 s tick at 10,000 tabs and 15 s). Twice that lets a backlog
        clear within a few ticks while a crowd of tabs that all became due together is spread
        over half an interval instead of pinged (and answered) in one burst.
        """
        steady = self.hub.count() * self.heartbeat_tick_s / self.heartbeat_interval_s
        return max(MIN_PINGS_PER_TICK, math.ceil(2 * steady))

    async def _tell_engine_status(self) -> None:
        """Send every connection a ``notice`` when ``broker.connected`` changed since last told.

        Read-only towards the engine (no callback planted in it); runs on each heartbeat tick,
        so clients learn of an engine outage or its end within one tick. Paced like the sweep.
        """
        up = self.broker.connected
        if up == self._engine_up:
            return
        self._engine_up = up
        clients = self.hub.all()
        log.warning(
            "engine fan-out %s: telling %d connections",
            "back" if up else "down (live updates paused)",
            len(clients),
        )
        slicer = TimeSlicer()
        prepared: dict[str, PreparedMessage] = {}  # one message per user, framed once
        for client in clients:
            if client.opened_at is None:  # closed while we yielded
                continue
            message = prepared.get(client.user_id)
            if message is None:
                message = prepared[client.user_id] = self._engine_notice(client.user_id, up)
            self._send(client, message)
            await slicer.pause_if_due()

    @staticmethod
    def _engine_notice(user_id: str, up: bool) -> PreparedMessage:
        """The ``notice`` telling ``user_id``'s connections the engine fan-out is ``up`` or not.

        It carries no stream position (``seq`` 0, ``epoch`` ``""``): it is about this process's
        connection to the engine, not the user's stream (docs/protocol.md, ``notice``).
        """
        data = _ENGINE_NOTICE[up]
        return PreparedMessage(encode(envelope(EventType.NOTICE, user_id, data, seq=0, epoch="")))

    async def _refresh_slots(self) -> None:
        """Renew this process's connection slots with the engine (they expire otherwise)."""
        if not self.broker.shares_slots:  # the memory engine: nothing expires
            return
        slots = [(c.user_id, c.slot) for c in self.hub.all() if c.slot is not None]
        try:
            await self.broker.refresh_slots(slots)
        except Exception as exc:
            log.warning("connection slots not renewed (%s)", exc)

    def _expire(self, client: Session, wall: float) -> None:
        """Close ``client`` with 4001 once its login session has expired (``wall``: unix s)."""
        if client.expires_at and wall >= client.expires_at:
            client.close(CloseCode.SESSION_REVOKED, "Session expired")
            self.disconnect(client, CloseCode.SESSION_REVOKED)

    def _check(self, client: Session, now: float, budget: list[int]) -> None:
        """One due connection's heartbeat accounting (see :meth:`sweep`), then its next check.

        ``budget``: ``[pings this tick may still send]``, decremented here; a due ping beyond it
        waits for the next tick (the timeout runs from when a ping is actually sent).
        """
        pinged = client.ping_unanswered
        if pinged is not None and client.last_seen >= pinged:
            pinged = client.ping_unanswered = None  # answered (any frame counts)
        if (
            pinged is not None
            and now - pinged - self._loop_stall_since(pinged, now) >= self.heartbeat_timeout_s
        ):
            log.info("heartbeat timeout for user %s", client.user_id)
            client.close(CloseCode.HEARTBEAT_TIMEOUT, "Heartbeat timeout")
            # A silent peer may never complete the closing handshake: free the slot now.
            self.disconnect(client, CloseCode.HEARTBEAT_TIMEOUT)
            return
        if now - client.last_ping >= self.heartbeat_interval_s and budget[0] > 0:
            budget[0] -= 1
            client.last_ping = now
            if pinged is None:
                pinged = client.ping_unanswered = now
            client.ping()
        if client.opened_at is None:  # the ping found it closed
            return
        when = client.last_ping + self.heartbeat_interval_s
        if pinged is not None:
            when = min(when, pinged + self.heartbeat_timeout_s)
        # over the budget, or a timeout deferred by a loop stall: look again next tick
        self._schedule(client, when if when > now else now + self.heartbeat_tick_s)

    def _loop_stall_since(self, since: float, now: float) -> float:
        """Longest event-loop stall (seconds) since ``since``, the one in progress included.

        A stall that just ended may not be recorded yet (the lag probe's wake-up can run after
        this sweep): the time since the probe's last wake-up, beyond its interval, counts too.
        """
        lag = self.loop_lag
        stall = lag.longest_stall_since(since)
        if lag.last_tick:
            stall = max(stall, now - max(lag.last_tick, since) - lag.interval_s)
        return max(0.0, stall)

    def close_session(self, sid: str) -> int:
        """Close every socket of a revoked session with 4001; return how many."""
        return self.hub.close_session(sid, CloseCode.SESSION_REVOKED, "Session revoked")

    def close_user(self, user_id: str, reason: str = "Session revoked") -> int:
        """Close every socket of ``user_id`` with 4001 and free their slots; return how many."""
        clients = list(self.hub.connections(user_id))
        for client in clients:
            client.close(CloseCode.SESSION_REVOKED, reason)
            self.disconnect(client, CloseCode.SESSION_REVOKED)
        return len(clients)

    def connected_users(self) -> list[dict[str, Any]]:
        """Return one row per connected user for the admin page.

        Returns:
            ``[{"userId", "connections", "connectedSeconds" (age of the oldest socket),
            "lastSeenSeconds" (since the most recent frame from any of them)}]``, seconds as
            floats, most connections first.
        """
        now = self._clock()
        rows: list[dict[str, Any]] = []
        for user_id in self.hub.users():
            clients = self.hub.connections(user_id)
            opened = [c.opened_at if c.opened_at is not None else now for c in clients]
            rows.append(
                {
                    "userId": user_id,
                    "connections": len(clients),
                    "connectedSeconds": round(now - min(opened), 3),
                    "lastSeenSeconds": round(now - max(c.last_seen for c in clients), 3),
                }
            )
        rows.sort(key=lambda r: (-r["connections"], r["userId"]))
        return rows

    # -- client messages ----------------------------------------------------------------------
    async def control(
        self,
        client: Session,
        type_: str,
        data: Mapping[str, Any],
        position: tuple[int, str] | None = None,
    ) -> None:
        """Send a per-connection message (``subscribed``, ``snapshot``, ``pong``, ``error``).

        (A ``notice`` is built without a stream position: :meth:`_engine_notice`.)

        Args:
            client: the connection.
            type_: the message type.
            data: its data.
            position: the user's ``(seq, epoch)`` when the caller already has it; otherwise it
                is read from the broker (a Redis round trip with the Redis engine).
        """
        seq, epoch = position or await self.broker.position(client.user_id)
        message = encode(envelope(type_, client.user_id, data, seq=seq, epoch=epoch))
        self._send(client, PreparedMessage(message))

    async def error(self, client: Session, code: str, message: str) -> None:
        """Send an ``error`` message to one connection (it stays open)."""
        self.metrics.client_errors.labels(code=code).inc()
        await self.control(client, EventType.ERROR, {"code": code, "message": message})

    async def handle(self, client: Session, msg: ClientMessage) -> None:
        """Act on one parsed client message.

        ``subscribe`` adds channels (and replaces the symbol filter when ``symbols`` is given;
        ``null`` clears it),
        answers ``subscribed``, then replays missed events when ``lastSeq``/``epoch`` are still
        in history, or sends a ``snapshot`` of the subscribed channels. ``unsubscribe`` removes
        channels and answers ``subscribed`` with what remains. ``ping`` answers ``pong``.
        A ``subscribe`` while the engine fan-out is down first gets a ``notice`` ``engine_down``.
        """
        sub = client.subscription
        if msg.type == "ping":
            await self.control(client, EventType.PONG, {})
            return
        if msg.type == "unsubscribe":
            sub.channels -= set(msg.channels)
            await self.control(client, EventType.SUBSCRIBED, self._sub_data(sub, False))
            return
        if not self.broker.connected:  # told at once, before waiting on the engine
            self._send(client, self._engine_notice(client.user_id, False))
        sub.channels |= set(msg.channels)
        if msg.symbols_given:  # a key present replaces the filter; null clears it
            sub.symbols = msg.symbols
        # Live events published while we answer (a Redis round trip can take a while) are held
        # and released afterwards, minus those the snapshot or replay already covers.
        sub.held = []
        last = 0
        try:
            # The engine delivers this user's publications here before the position is read
            # (a Redis SUBSCRIBE confirmed), so nothing after the snapshot or replay is missed.
            await self.broker.watch(client.user_id)
            last = await self._answer_subscribe(client, msg)
        finally:
            held, sub.held = sub.held or [], None
            for seq_held, message in held:
                if seq_held > last:
                    self._send(client, message)

    async def _answer_subscribe(self, client: Session, msg: ClientMessage) -> int:
        """Send ``subscribed`` then a replay or a snapshot; return the last seq they cover."""
        sub = client.subscription
        replay: list[Publication] | None = None
        if msg.last_seq is not None and msg.epoch is not None:
            replay = await self.broker.recover(client.user_id, msg.last_seq, msg.epoch)
        seq, epoch = await self.broker.position(client.user_id)
        await self.control(
            client, EventType.SUBSCRIBED, self._sub_data(sub, replay is not None), (seq, epoch)
        )
        if replay is not None:
            last = msg.last_seq or 0
            for pub in replay:
                last = max(last, pub.seq)
                data = filter_data(sub, pub.type, pub.data)
                if data is not None:
                    self._send(client, PreparedMessage(encode(pub.message(data))))
            return last
        full = await self._source.view(client.user_id)
        await self.control(client, EventType.SNAPSHOT, _filter_snapshot(sub, full), (seq, epoch))
        status = full.get("status")  # the broker feed's, while it is stale
        if status is not None and status["stale"] and full.get("account") is not None:
            # A trader arriving while the broker feed is stale learns it at once, as a stream
            # event (seq after the snapshot's), so clients that drop seq <= lastSeq keep it.
            self.publisher.emit(client.user_id, EventType.STATUS, dict(status))
        return seq

    @staticmethod
    def _sub_data(sub: Subscription, recovered: bool) -> dict[str, Any]:
        return {
            "channels": sorted(c.value for c in sub.channels),
            "symbols": sorted(sub.symbols) if sub.symbols is not None else None,
            "recovered": recovered,
        }

    # -- status and stats ---------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Return connection and delivery statistics for the admin JSON endpoint."""
        now = self._clock()
        durations = [now - c.opened_at for c in self.hub.all() if c.opened_at is not None]
        return {
            "activeConnections": self.hub.count(),
            "activeUsers": len(self.hub.users()),
            "connectionsPerUser": {u: len(self.hub.connections(u)) for u in self.hub.users()},
            "averageConnectionSeconds": (sum(durations) / len(durations)) if durations else 0.0,
            "eventsDelivered": self.hub.delivered,
            "loopLagMs": self.loop_lag.lag_ms(),
            **self.publisher.stats(),
            **self.metrics.summary(),
        }
