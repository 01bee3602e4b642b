"""The portfolio stream manager: from portfolio changes to frames on the right sockets.

Flow of one update::

    producer (broker bridge, internal hook)
        └─ StreamManager.emit(user_id, type, data)
             └─ Batcher.add ─ held (position/account) or released (order/trade, in order)
                  └─ outbox ─ Broker.publish (assigns seq, saves history)  [in order, one at a time]
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
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from tornado.ioloop import PeriodicCallback

from streaming.batching import Batcher, Outgoing
from streaming.broker import Broker, BrokerUnavailable, Publication
from streaming.closecodes import CloseCode
from streaming.events import Channel, EventType, encode, envelope
from streaming.frames import PreparedMessage
from streaming.hub import Client, Hub, Sent
from streaming.looplag import LoopLagMonitor
from streaming.metrics import Metrics
from streaming.pacing import TimeSlicer
from streaming.protocol import ClientMessage
from streaming.subscription import Subscription, filter_data

__all__ = ["StreamManager", "SnapshotSource"]

#: Event types whose loss a later complete snapshot repairs (outbox eviction order).
_REPLACEABLE = frozenset({EventType.POSITION_UPDATE, EventType.ACCOUNT_UPDATE, EventType.BATCH})

log = logging.getLogger(__name__)


class SnapshotSource(Protocol):
    """Where the current state for a ``snapshot`` comes from (the portfolio service)."""

    def snapshot(self, user_id: str) -> dict[str, Any]:
        """Return ``{"positions", "orders" (open only), "account", "trades"}`` in wire shape."""
        ...


class _EmptySource:
    def snapshot(self, user_id: str) -> dict[str, Any]:
        return {"positions": [], "orders": [], "account": None, "trades": []}


def _filter_snapshot(sub: Subscription, full: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if Channel.POSITIONS in sub.channels:
        out["positions"] = [p for p in full.get("positions", []) if sub.wants_symbol(p["symbol"])]
    if Channel.ORDERS in sub.channels:
        out["orders"] = [o for o in full.get("orders", []) if sub.wants_symbol(o["symbol"])]
    if Channel.ACCOUNT in sub.channels:
        out["account"] = full.get("account")
    if Channel.TRADES in sub.channels:
        out["trades"] = [t for t in full.get("trades", []) if sub.wants_symbol(t["symbol"])]
    return out


class StreamManager:
    """Owns the hub, the batcher and the broker handler; one per server process.

    Args:
        broker: the bus (memory or Redis engine).
        batch_window_ms: batching window (0: no batching).
        max_connections_per_user: REQ-3 limit.
        heartbeat_interval_s: seconds between pings.
        heartbeat_timeout_s: seconds of client silence before closing with 4000.
        source: snapshot provider; can be set later with :meth:`set_source`.
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
        source: SnapshotSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        outbox_max_events: int = 10_000,
    ) -> None:
        self.broker = broker
        self.outbox_max_events = outbox_max_events
        #: Users whose events the outbox had to drop while the engine was down: their positions
        #: and account are announced again (complete snapshots) once it is back.
        self._resync: set[str] = set()
        self.outbox_dropped = 0
        self.engine_down_since: float | None = None
        self.hub = Hub(max_connections_per_user)
        self.batcher = Batcher(batch_window_ms)
        self.metrics = Metrics()
        self.loop_lag = LoopLagMonitor(self.metrics.loop_lag, clock=clock)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self._source: SnapshotSource = source or _EmptySource()
        self._clock = clock
        self._wall_clock = wall_clock
        self.current_status: dict[str, Any] | None = None
        self._outbox: deque[Outgoing] = deque()
        self._draining: asyncio.Task[None] | None = None
        self._slicer = TimeSlicer()
        self._idle = asyncio.Event()
        self._idle.set()
        self._timers: list[PeriodicCallback] = []
        self._opened_at: dict[int, float] = {}
        #: id(client) → its deployment-wide connection slot (:meth:`admit`).
        self._slots: dict[int, str] = {}
        self._process_id = secrets.token_hex(6)
        self._slot_counter = itertools.count(1)
        #: id(client) → monotonic time of its oldest ping not answered yet (heartbeat).
        self._ping_unanswered: dict[int, float] = {}
        broker.set_handler(self._on_publication)

    def set_source(self, source: SnapshotSource) -> None:
        """Set the snapshot provider."""
        self._source = source

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the batch-flush and heartbeat :class:`PeriodicCallback` s on the current IOLoop."""
        if self.batcher.window_ms > 0:
            self._timers.append(PeriodicCallback(self.flush, self.batcher.window_ms))
        tick = min(self.heartbeat_interval_s, self.heartbeat_timeout_s) / 3.0
        self._timers.append(PeriodicCallback(self.sweep_paced, max(tick, 0.01) * 1000.0))
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
        self.flush()
        try:
            await asyncio.wait_for(self.wait_idle(), drain_s)
        except TimeoutError:  # the engine is unreachable: what it could not take is lost
            log.error("shutting down with %d events not published", len(self._outbox))
            if self._draining is not None:
                self._draining.cancel()
        self.hub.close_all(CloseCode.GOING_AWAY, "Server shutting down")
        for _ in range(max(1, int(grace_s / 0.02))):  # real time, whatever the injected clock
            if not self.hub.count():
                break
            await asyncio.sleep(0.02)

    async def wait_idle(self) -> None:
        """Wait until everything emitted so far has been published and delivered."""
        await self._idle.wait()

    # -- producing ----------------------------------------------------------------------------
    def emit(
        self, user_id: str, type_: str, data: Mapping[str, Any], at: float | None = None
    ) -> None:
        """Send one stream event to ``user_id`` (through batching). Never blocks.

        Args:
            user_id: wire userId.
            type_: ``position_update``, ``order_update``, ``account_update``, ``trade_executed``
                or ``status``.
            data: event data in wire shape.
            at: monotonic seconds the update entered the server (default: now).
        """
        out = self.batcher.add(user_id, type_, data, self._clock() if at is None else at)
        if out:
            self._enqueue(out)

    def flush(self) -> None:
        """Release every pending batch (the batch window's PeriodicCallback)."""
        out = self.batcher.drain()
        if out:
            self._enqueue(out)

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

    async def _drain(self) -> None:
        """Publish the outbox in order; while the engine is unreachable, wait and retry."""
        self._slicer.start()
        delay = 0.1
        try:
            while self._outbox:
                head = self._outbox[0]
                user_id, type_, data, at = head
                try:
                    await self.broker.publish(user_id, type_, data, emitted_at=at)
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

        Their complete positions and account (from the snapshot source) replace whatever
        snapshots of theirs still wait in the outbox; orders and executions keep their place.
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
            full = self._source.snapshot(user_id)
            for position in full.get("positions", []):
                self.emit(user_id, EventType.POSITION_UPDATE, position)
            if full.get("account") is not None:
                self.emit(user_id, EventType.ACCOUNT_UPDATE, full["account"])

    def _on_publication(self, pub: Publication) -> None:
        self.metrics.published.labels(type=pub.type).inc()
        sent, overloaded = self.hub.deliver(pub)
        for client in overloaded:  # after the hub's loop: it never sees its sets change
            self._close_slow(client)
        if sent and pub.emitted_at:
            self.metrics.observe_latency(max(0.0, self._clock() - pub.emitted_at))

    def _send(self, client: Client, message: PreparedMessage) -> None:
        """Send one message to one connection, closing it with 4002 if it stopped reading."""
        if client.send(message) is Sent.OVERLOADED:
            self._close_slow(client)

    def _close_slow(self, client: Client) -> None:
        log.warning("user %s is not reading: closing with 4002", client.user_id)
        client.close(CloseCode.SLOW_CONSUMER, "Too slow: reconnect and take a snapshot")
        # It will not read our close frame either: free its slot now.
        self.disconnect(client, CloseCode.SLOW_CONSUMER)

    # -- connections --------------------------------------------------------------------------
    async def admit(self, client: Client) -> bool:
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
        self._slots[id(client)] = slot
        return True

    def connect(self, client: Client) -> bool:
        """Register a new connection; False when its user already has the maximum (REQ-3)."""
        if not self.hub.add(client):
            self.metrics.rejects.labels(reason="max_connections").inc()
            return False
        now = self._clock()
        client.last_seen = client.last_ping = now
        self._opened_at[id(client)] = now
        self.metrics.connects.inc()
        self.metrics.connections.set(self.hub.count())
        return True

    def disconnect(self, client: Client, code: int | None) -> None:
        """Unregister a closed connection and record why it closed (idempotent)."""
        opened = self._opened_at.pop(id(client), None)
        self._ping_unanswered.pop(id(client), None)
        slot = self._slots.pop(id(client), None)
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

    def seen(self, client: Client) -> None:
        """Record that a frame (message or pong) arrived from ``client``."""
        client.last_seen = self._clock()

    def sweep(self) -> None:
        """Heartbeat tick: 4000 for unresponsive connections, 4001 for expired sessions, pings.

        A connection is unresponsive when its oldest unanswered ping was sent at least
        ``heartbeat_timeout_s`` ago, not counting the longest stall of the event loop since then
        (during a stall the client's answer may be waiting, unread, in our socket buffer).
        """
        now, wall = self._clock(), self._wall_clock()
        for client in self.hub.all():
            self._check(client, now, wall)

    async def sweep_paced(self) -> None:
        """:meth:`sweep`, giving the loop back every few ms (:mod:`streaming.pacing`).

        With thousands of tabs a tick pings thousands of sockets; done in one go it would stall
        everything else for tens of milliseconds. The heartbeat timer runs this one.
        """
        now, wall = self._clock(), self._wall_clock()
        slicer = TimeSlicer()
        for client in self.hub.all():
            if id(client) in self._opened_at:  # not closed while we yielded
                self._check(client, now, wall)
            await slicer.pause_if_due()
        await self._refresh_slots()

    async def _refresh_slots(self) -> None:
        """Renew this process's connection slots with the engine (they expire otherwise)."""
        slots = [(c.user_id, self._slots[id(c)]) for c in self.hub.all() if id(c) in self._slots]
        try:
            await self.broker.refresh_slots(slots)
        except Exception as exc:
            log.warning("connection slots not renewed (%s)", exc)

    def _check(self, client: Client, now: float, wall: float) -> None:
        """One connection's heartbeat accounting (see :meth:`sweep`)."""
        expires = getattr(client, "expires_at", 0.0)
        pinged = self._ping_unanswered.get(id(client))
        if pinged is not None and client.last_seen >= pinged:
            pinged = None  # answered (any frame counts)
            del self._ping_unanswered[id(client)]
        if expires and wall >= expires:
            client.close(CloseCode.SESSION_REVOKED, "Session expired")
            self.disconnect(client, CloseCode.SESSION_REVOKED)
        elif (
            pinged is not None
            and now - pinged - self._loop_stall_since(pinged, now) >= self.heartbeat_timeout_s
        ):
            log.info("heartbeat timeout for user %s", client.user_id)
            client.close(CloseCode.HEARTBEAT_TIMEOUT, "Heartbeat timeout")
            # A silent peer may never complete the closing handshake: free the slot now.
            self.disconnect(client, CloseCode.HEARTBEAT_TIMEOUT)
        elif now - client.last_ping >= self.heartbeat_interval_s:
            client.last_ping = now
            if pinged is None:
                self._ping_unanswered[id(client)] = now
            client.ping()

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

    # -- client messages ----------------------------------------------------------------------
    async def control(
        self,
        client: Client,
        type_: str,
        data: Mapping[str, Any],
        position: tuple[int, str] | None = None,
    ) -> None:
        """Send a per-connection message (``subscribed``, ``snapshot``, ``pong``, ``error``).

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

    async def error(self, client: Client, code: str, message: str) -> None:
        """Send an ``error`` message to one connection (it stays open)."""
        self.metrics.client_errors.labels(code=code).inc()
        await self.control(client, EventType.ERROR, {"code": code, "message": message})

    async def handle(self, client: Client, msg: ClientMessage) -> None:
        """Act on one parsed client message.

        ``subscribe`` adds channels (and replaces the symbol filter when ``symbols`` is given),
        answers ``subscribed``, then replays missed events when ``lastSeq``/``epoch`` are still
        in history, or sends a ``snapshot`` of the subscribed channels. ``unsubscribe`` removes
        channels and answers ``subscribed`` with what remains. ``ping`` answers ``pong``.
        """
        sub = client.subscription
        if msg.type == "ping":
            await self.control(client, EventType.PONG, {})
            return
        if msg.type == "unsubscribe":
            sub.channels -= set(msg.channels)
            await self.control(client, EventType.SUBSCRIBED, self._sub_data(sub, False))
            return
        sub.channels |= set(msg.channels)
        if msg.symbols is not None:
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

    async def _answer_subscribe(self, client: Client, msg: ClientMessage) -> int:
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
        full = self._source.snapshot(client.user_id)
        await self.control(client, EventType.SNAPSHOT, _filter_snapshot(sub, full), (seq, epoch))
        stale = self.current_status is not None and self.current_status["stale"]
        if stale and full.get("account") is not None:
            # A trader arriving while the broker feed is stale learns it at once, as a stream
            # event (seq after the snapshot's), so clients that drop seq <= lastSeq keep it.
            self.emit(client.user_id, EventType.STATUS, dict(self.current_status or {}))
        return seq

    @staticmethod
    def _sub_data(sub: Subscription, recovered: bool) -> dict[str, Any]:
        return {
            "channels": sorted(c.value for c in sub.channels),
            "symbols": sorted(sub.symbols) if sub.symbols is not None else None,
            "recovered": recovered,
        }

    # -- status and stats ---------------------------------------------------------------------
    def broadcast_status(
        self, code: str, message: str, *, stale: bool, users: Iterable[str] | None = None
    ) -> None:
        """Publish a ``status`` event to these users (default: every user connected here).

        Args:
            code: ``broker_stale`` or ``broker_ok``.
            message: human-readable explanation.
            stale: whether data may be stale from now on.
            users: the userIds to tell (e.g. the traders with a broker account).
        """
        data = {"code": code, "message": message, "stale": stale}
        self.current_status = data
        targets = self.hub.users() if users is None else list(users)
        for user_id in targets:
            self.emit(user_id, EventType.STATUS, data)

    def stats(self) -> dict[str, Any]:
        """Return connection and delivery statistics for the admin JSON endpoint."""
        now = self._clock()
        durations = [now - t for t in self._opened_at.values()]
        return {
            "activeConnections": self.hub.count(),
            "activeUsers": len(self.hub.users()),
            "connectionsPerUser": {u: len(self.hub.connections(u)) for u in self.hub.users()},
            "averageConnectionSeconds": (sum(durations) / len(durations)) if durations else 0.0,
            "eventsDelivered": self.hub.delivered,
            "loopLagMs": self.loop_lag.lag_ms(),
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
            **self.metrics.summary(),
        }
