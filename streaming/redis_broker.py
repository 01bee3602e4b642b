"""Redis broker engine: per-user streams shared by every server process (``REDIS_URL``).

Keys per user ``u`` (hash-tagged ``{u}`` so one user's keys share a Redis Cluster slot):

- ``<prefix>:{u}:seq`` — the last sequence number (``INCR``);
- ``<prefix>:{u}:epoch`` — the stream epoch, created on first publish;
- ``<prefix>:{u}:hist`` — a Redis Stream holding the last ``history_size`` publications, entry id
  ``<seq>-0`` (``XADD … MAXLEN ~``), read back by :meth:`RedisBroker.recover` with ``XRANGE``;
- ``<prefix>:{u}:fills`` — the fills ledger: a sorted set of the execution ids of the published
  ``trade_executed`` events, score = fill time (ms since the Unix epoch), the newest
  ``fills_ledger_size`` kept (``ZREMRANGEBYRANK``);
- ``<prefix>:{u}:started`` — wall-clock ms of the epoch's first publication (``SET NX``);
- channel ``<prefix>:pub:<u>`` — every publication, fanned out by ``PUBLISH``.

One Lua script numbers, stores, records the fill and publishes (Redis runs scripts atomically),
which is the broker contract of :mod:`streaming.broker`: subscribers see a user's publications
in ``seq`` order, history and live fan-out agree, and a fill is in the ledger exactly when its
event was published; a new epoch starts with an empty ledger. If Redis loses the keys (restart
without persistence, eviction), the epoch key goes with them: the next publish creates a new
epoch and restarts ``seq`` at 1, so clients holding the old epoch take a snapshot instead of
silently skipping events.

Connection slots (REQ-3 across processes): ``<prefix>:{u}:conns`` is a sorted set of the user's
open connections, scored by the (Redis server) time their lease expires. :meth:`RedisBroker.
acquire_slot` drops expired members and adds one only while fewer than the limit remain (one Lua
script, so two processes cannot both take the last slot); each process renews its members every
heartbeat tick and removes them on close, so the slots of a process that died free themselves
after ``slot_ttl_s`` (the heartbeat timeout).

Targeted fan-out: a process subscribes to ``<prefix>:pub:<u>`` only while it holds a subscribed
connection of ``u`` (:meth:`RedisBroker.watch`, :meth:`RedisBroker.unwatch`), so it receives
only the traffic of its own users instead of every user's (a pattern subscription costs one
message per event per process). :meth:`RedisBroker.watch` returns once Redis has confirmed the
SUBSCRIBE, so a ``subscribe`` answered after it (position, snapshot or replay) cannot miss a
publication. Every process also listens on ``<prefix>:ctl``, which keeps the pub/sub connection
subscribed while it holds no user. While the subscription is down (Redis restart) live delivery
pauses; the reader reconnects with backoff and subscribes again to every watched user.

Reconnect catch-up: publications made while this process's subscription was down (Redis back,
the reader not yet subscribed again; or another process's outbox draining) never reach it by
``PUBLISH``. The reader remembers, per watched user, the ``(seq, epoch)`` of the last publication
it handed on; once Redis confirms the user's channel again it reads the user's history after that
``seq`` (:meth:`RedisBroker.recover`) and hands those on first, in order, then drops live
duplicates (``seq`` not above the mark). If the epoch changed (Redis lost the keys) it hands on
the new epoch's history from ``seq`` 1, so clients see the new epoch and take a snapshot; if the
history was trimmed past the mark, nothing is handed on and clients see the ``seq`` gap. Users
first watched during the outage have no mark: their clients resubscribe with ``lastSeq`` when
told ``engine_ok`` (docs/operations.md, "Redis outage").
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
import ujson
from redis.exceptions import ConnectionError as RedisConnectionError

from streaming.broker import (
    FILLS_LEDGER_SIZE,
    Broker,
    BrokerUnavailable,
    Publication,
    PublicationHandler,
    PublishedFills,
    fill_record,
    ms_to_datetime,
)
from streaming.events import utc_now_iso
from streaming.pacing import TimeSlicer
from streaming.tasks import spawn

__all__ = ["RedisBroker"]

log = logging.getLogger(__name__)

# KEYS: seq, epoch, hist, fills, started. ARGV: payload, candidate epoch, history size,
# channel, now (ms), execution id ('' when the event is not a recorded fill), fill time (ms),
# fills ledger size.
_PUBLISH_LUA = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[2]
  redis.call('SET', KEYS[2], epoch)
  redis.call('DEL', KEYS[1], KEYS[3], KEYS[4], KEYS[5])
end
redis.call('SET', KEYS[5], ARGV[5], 'NX')
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'p', ARGV[1])
if ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[6])
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(tonumber(ARGV[8]) + 1))
end
redis.call('PUBLISH', ARGV[4], seq .. '|' .. epoch .. '|' .. ARGV[1])
return {seq, epoch}
"""


# KEYS: conns. ARGV: limit, member, ttl ms. Returns 1 when the slot was taken.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
return 1
"""


class RedisBroker(Broker):
    """Broker whose streams live in Redis, shared by every process using the same ``prefix``.

    Args:
        url: ``redis://host:port/db``.
        prefix: key and channel prefix (several deployments can share one Redis).
        history_size: publications kept per user for recovery (approximate, ``MAXLEN ~``).
        slot_ttl_s: seconds a connection slot outlives its last renewal (the heartbeat timeout).
        fills_ledger_size: executions kept per user in the fills ledger (the newest).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "folio",
        history_size: int = 1000,
        slot_ttl_s: float = 30.0,
        fills_ledger_size: int = FILLS_LEDGER_SIZE,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.history_size = history_size
        self.fills_ledger_size = fills_ledger_size
        self.slot_ttl_ms = max(1, int(slot_ttl_s * 1000))
        self._releasing: set[asyncio.Task[Any]] = set()
        self._redis: Any = None
        self._sub_redis: Any = None
        self._script: Any = None
        self._handler: PublicationHandler | None = None
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.connected = False
        self._pubsub: Any = None
        #: userIds whose channel this process wants (subscribed, or to be on reconnect).
        self._watched: set[str] = set()
        #: watched userId → ``(seq, epoch)`` of the last publication handed on (catch-up mark).
        self._delivered: dict[str, tuple[int, str]] = {}
        #: channel → future resolved when Redis confirms the SUBSCRIBE.
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._unsubscribing: set[asyncio.Task[None]] = set()
        # SUBSCRIBE/UNSUBSCRIBE are sent one at a time, each deciding under the lock.
        self._sub_lock = asyncio.Lock()

    shares_slots = True

    def _channel(self, user_id: str) -> str:
        return f"{self.prefix}:pub:{user_id}"

    def _keys(self, user_id: str) -> list[str]:
        base = f"{self.prefix}:{{{user_id}}}"
        return [f"{base}:seq", f"{base}:epoch", f"{base}:hist"]

    def _ledger_keys(self, user_id: str) -> list[str]:
        base = f"{self.prefix}:{{{user_id}}}"
        return [f"{base}:fills", f"{base}:started"]

    def set_handler(self, handler: PublicationHandler) -> None:
        """Set the function called with every publication of every process."""
        self._handler = handler

    async def start(self) -> None:
        """Connect, load the script and start the fan-out reader.

        Raises:
            redis.exceptions.ConnectionError: Redis does not answer.
        """
        # Named, so operators can tell our connections apart in CLIENT LIST. After a Redis
        # restart every pooled connection is dead; redis-py 8 reports each one's first use as
        # "Connection closed by server" unless ConnectionError is retried (on a new socket).
        self._redis = aioredis.from_url(
            self.url,
            decode_responses=True,
            client_name=f"{self.prefix}-broker",
            retry_on_error=[RedisConnectionError],
        )
        # The fan-out reader's own pool, without that retry: a lost subscription must reach
        # the reader (which marks the fan-out down and resubscribes every watched user).
        self._sub_redis = aioredis.from_url(
            self.url, decode_responses=True, client_name=f"{self.prefix}-broker"
        )
        await self._redis.ping()
        self._script = self._redis.register_script(_PUBLISH_LUA)
        self._acquire = self._redis.register_script(_ACQUIRE_LUA)
        self._reader = spawn(self._read_forever(), "redis-fanout-reader")
        await asyncio.wait_for(self._subscribed.wait(), 5.0)

    async def ping(self) -> None:
        """Check Redis answers ``PING`` and the fan-out subscription is up (for ``/readyz``).

        Raises:
            ConnectionError: the fan-out subscription is down.
            redis.exceptions.RedisError: Redis does not answer.
        """
        await self._redis.ping()
        if not self.connected:
            raise ConnectionError("the fan-out subscription is down (reconnecting)")

    async def close(self) -> None:
        """Stop the reader and close the connections."""
        if self._releasing:  # slots of a clean shutdown are freed now, not after the TTL
            await asyncio.wait(list(self._releasing), timeout=1.0)
        for task in list(self._unsubscribing):
            task.cancel()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
        if self._redis is not None:
            await self._redis.aclose()
        if self._sub_redis is not None:
            await self._sub_redis.aclose()

    async def publish(
        self, user_id: str, type_: str, data: Mapping[str, Any], *, emitted_at: float = 0.0
    ) -> Publication:
        """Number, store and fan out one event atomically (one Lua script call)."""
        timestamp = utc_now_iso()
        # Monotonic clocks do not cross processes: carry the wall-clock emission time.
        emitted_wall = time.time() - (time.monotonic() - emitted_at) if emitted_at else 0.0
        payload = ujson.dumps(
            {"u": user_id, "type": type_, "data": data, "ts": timestamp, "at": emitted_wall},
            ensure_ascii=False,
            escape_forward_slashes=False,
        )
        record = fill_record(type_, data)
        try:
            seq, epoch = await self._publish_script(user_id, payload, record)
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            raise BrokerUnavailable(f"Redis unreachable: {exc}") from exc
        return Publication(user_id, int(seq), epoch, type_, data, timestamp, emitted_at)

    async def _publish_script(
        self, user_id: str, payload: str, record: tuple[str, int] | None = None
    ) -> Any:
        execution_id, fill_ms = record if record is not None else ("", 0)
        return await self._script(
            keys=self._keys(user_id) + self._ledger_keys(user_id),
            args=[
                payload,
                secrets.token_urlsafe(6),
                self.history_size,
                self._channel(user_id),
                int(time.time() * 1000),
                execution_id,
                fill_ms,
                self.fills_ledger_size,
            ],
        )

    async def published_fills(self, user_id: str) -> PublishedFills:
        """Read ``user_id``'s fills ledger (one ``MULTI``: the set and the start agree).

        Raises:
            BrokerUnavailable: Redis is unreachable.
        """
        fills_key, started_key = self._ledger_keys(user_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.zrange(fills_key, 0, -1, withscores=True)
        pipe.get(started_key)
        try:
            members, started = await pipe.execute()
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            raise BrokerUnavailable(f"Redis unreachable: {exc}") from exc
        return PublishedFills(
            newest=ms_to_datetime(members[-1][1]) if members else None,
            ids=frozenset(member for member, _ in members),
            started_at=None if started is None else ms_to_datetime(int(started)),
        )

    def _decode(self, seq: int, epoch: str, payload: str) -> Publication:
        body = ujson.loads(payload)
        at = float(body.get("at") or 0.0)
        emitted = time.monotonic() - max(0.0, time.time() - at) if at else 0.0
        return Publication(body["u"], seq, epoch, body["type"], body["data"], body["ts"], emitted)

    def _conns_key(self, user_id: str) -> str:
        return f"{self.prefix}:{{{user_id}}}:conns"

    async def acquire_slot(self, user_id: str, slot: str, limit: int) -> bool:
        """Take a slot in the user's sorted set of connections (see the module docstring).

        While Redis is unreachable the answer is True (the process's own limit still holds):
        traders keep connecting during an outage, at the cost of the cluster-wide count.
        """
        try:
            taken = await self._acquire(
                keys=[self._conns_key(user_id)], args=[limit, slot, self.slot_ttl_ms]
            )
        except Exception as exc:
            log.warning("connection slot for user %s not checked (%s): admitted", user_id, exc)
            return True
        return bool(int(taken))

    def release_slot(self, user_id: str, slot: str) -> None:
        """Remove the slot (in a kept task; a failure is logged and the slot expires)."""
        task = spawn(self._release(user_id, slot), f"redis-release-slot-{user_id}")
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release(self, user_id: str, slot: str) -> None:
        try:
            await self._redis.zrem(self._conns_key(user_id), slot)
        except Exception as exc:
            log.info("releasing a slot of user %s failed (%s); it will expire", user_id, exc)

    async def refresh_slots(self, slots: list[tuple[str, str]]) -> None:
        """Renew this process's slots: one pipeline, expiry from Redis's own clock.

        Only members still present are renewed (``ZADD XX``): a slot that already expired (the
        process stalled past the TTL) is not resurrected over a newer connection's.
        """
        if not slots:
            return
        seconds, micros = await self._redis.time()
        now = seconds * 1000 + micros // 1000
        pipe = self._redis.pipeline(transaction=False)
        for user_id, slot in slots:
            key = self._conns_key(user_id)
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zadd(key, {slot: now + self.slot_ttl_ms}, xx=True)
            pipe.pexpire(key, self.slot_ttl_ms * 2)
        await pipe.execute()

    async def watch(self, user_id: str, timeout_s: float = 5.0) -> None:
        """Subscribe to ``user_id``'s channel; return once Redis confirmed it (see module doc).

        While Redis is unreachable it returns after ``timeout_s`` seconds with a warning: the
        reader subscribes again on reconnect, and the client sees the gap and refetches.
        """
        channel = self._channel(user_id)
        if user_id in self._watched and channel not in self._confirm:
            return  # already confirmed
        self._watched.add(user_id)
        confirmed = self._confirm.get(channel)
        if confirmed is None:
            confirmed = self._confirm[channel] = asyncio.get_running_loop().create_future()
            pubsub = self._pubsub
            if pubsub is not None and self.connected:
                try:
                    async with self._sub_lock:
                        await pubsub.subscribe(channel)
                except Exception as exc:  # the reader resubscribes when it reconnects
                    log.warning("subscribing to user %s failed (%s)", user_id, exc)
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), timeout_s)
        except TimeoutError:
            log.warning("Redis did not confirm the subscription for user %s", user_id)

    def unwatch(self, user_id: str) -> None:
        """Unsubscribe from ``user_id``'s channel (in a kept task; failures logged)."""
        if user_id not in self._watched:
            return
        self._watched.discard(user_id)
        self._delivered.pop(user_id, None)
        channel = self._channel(user_id)
        self._confirmed(channel)  # nobody needs to wait for it any more
        if self._pubsub is not None and self.connected:
            task = spawn(self._unsubscribe(self._pubsub, user_id), f"redis-unsubscribe-{user_id}")
            self._unsubscribing.add(task)
            task.add_done_callback(self._unsubscribing.discard)

    async def _unsubscribe(self, pubsub: Any, user_id: str) -> None:
        try:
            async with self._sub_lock:
                if user_id in self._watched:  # a new tab of the user came meanwhile
                    return
                await pubsub.unsubscribe(self._channel(user_id))
        except Exception as exc:  # a dead connection has no subscriptions left anyway
            log.info("unsubscribing from user %s failed (%s)", user_id, exc)

    def watched(self) -> frozenset[str]:
        """The userIds whose publications this process receives."""
        return frozenset(self._watched)

    def _confirmed(self, channel: str) -> None:
        future = self._confirm.pop(channel, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _hand_on(self, pub: Publication) -> None:
        """Give ``pub`` to the handler unless already given (a catch-up overlap); mark it."""
        mark = self._delivered.get(pub.user_id)
        if mark is not None and mark[1] == pub.epoch and pub.seq <= mark[0]:
            return
        if pub.user_id in self._watched:
            self._delivered[pub.user_id] = (pub.seq, pub.epoch)
        if self._handler is not None:
            try:
                self._handler(pub)
            except Exception:  # one bad delivery must not cost the subscription
                log.exception("delivering seq %s to user %s failed", pub.seq, pub.user_id)

    async def _catch_up(self, user_id: str) -> None:
        """Hand on what ``user_id`` published while the subscription was down (module doc)."""
        mark = self._delivered.get(user_id)
        if mark is None:
            return
        seq, epoch = mark
        try:
            missed = await self.recover(user_id, seq, epoch)
            if missed is None:
                current_epoch = (await self.position(user_id))[1]
                if current_epoch != epoch:  # Redis lost the keys: the new stream is all new
                    missed = await self.recover(user_id, 0, current_epoch)
        except Exception as exc:  # the next reconnect tries again
            log.warning("catching up user %s after a reconnect failed (%s)", user_id, exc)
            return
        if missed is None:
            log.warning(
                "user %s: history no longer reaches seq %d; clients will see the gap", user_id, seq
            )
            return
        if missed:
            log.info("user %s: %d publications caught up after a reconnect", user_id, len(missed))
        for pub in missed:
            self._hand_on(pub)

    async def _read_forever(self) -> None:
        delay = 0.5
        while True:
            pubsub = self._sub_redis.pubsub(ignore_subscribe_messages=False)
            try:
                # Users handed publications before: caught up once Redis confirms their channel.
                behind = {self._channel(u): u for u in self._watched if u in self._delivered}
                channels = [self._channel(u) for u in self._watched]
                for channel in channels:  # confirmed below as Redis answers
                    if channel not in self._confirm:
                        self._confirm[channel] = asyncio.get_running_loop().create_future()
                await pubsub.subscribe(f"{self.prefix}:ctl", *channels)
                self._pubsub = pubsub
                self.connected = True
                self._subscribed.set()
                delay = 0.5
                slicer = TimeSlicer()
                async for message in pubsub.listen():
                    kind = message.get("type")
                    if kind == "subscribe":
                        self._confirmed(message["channel"])
                        user_id = behind.pop(message["channel"], None)
                        if user_id is not None:
                            await self._catch_up(user_id)
                        continue
                    if kind != "message" or message["channel"] == f"{self.prefix}:ctl":
                        continue
                    seq, epoch, payload = message["data"].split("|", 2)
                    try:
                        pub = self._decode(int(seq), epoch, payload)
                    except (ValueError, KeyError):
                        log.warning("undecodable publication on %s dropped", message["channel"])
                        continue
                    self._hand_on(pub)
                    # Buffered messages are read without suspending: give the loop back.
                    await slicer.pause_if_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected = False
                self._pubsub = None
                log.warning("Redis fan-out interrupted (%s); reconnecting in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass

    async def position(self, user_id: str) -> tuple[int, str]:
        """Return ``(last seq, epoch)``; a user who never had an event gets one created."""
        seq_key, epoch_key, _ = self._keys(user_id)
        seq, epoch = await self._redis.mget(seq_key, epoch_key)
        if epoch is None:
            await self._redis.set(epoch_key, secrets.token_urlsafe(6), nx=True)
            seq, epoch = await self._redis.mget(seq_key, epoch_key)
        return int(seq or 0), epoch

    async def recover(self, user_id: str, since_seq: int, epoch: str) -> list[Publication] | None:
        """Return the publications after ``since_seq`` from the Redis Stream, or None."""
        current, current_epoch = await self.position(user_id)
        if epoch != current_epoch or since_seq > current:
            return None
        if since_seq == current:
            return []
        entries = await self._redis.xrange(self._keys(user_id)[2], min=f"{since_seq + 1}-0")
        if not entries or int(entries[0][0].split("-")[0]) != since_seq + 1:
            return None  # trimmed: history no longer reaches back far enough
        out = []
        for entry_id, fields in entries:
            out.append(self._decode(int(entry_id.split("-")[0]), current_epoch, fields["p"]))
        return out
