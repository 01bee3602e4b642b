"""Traders' portfolio views in Redis, so any web process can answer snapshots and REST.

In a cluster (``REDIS_URL``) the broker accounts are streamed by bridge processes
(:mod:`streaming.leases`), and web processes never import alpaca-py. A bridge's
:class:`~streaming.publisher.Publisher` saves a trader's whole view here *before* publishing the
first event that follows a change (so a snapshot is never older than the sequence number sent
with it); web processes read it back. Events other services push (hook, ingest) that carry state
are kept here too, by whichever web process accepted them, and laid over the broker's view on
every read with the rules of :mod:`streaming.pushed`.

Keys (``{user}`` is a Redis Cluster hash tag, as for the engine's keys of that user):

* ``<prefix>:{<user>}:view`` — JSON ``{"positions", "orders" (all remembered, newest first),
  "account", "trades"}`` in wire shape, the broker's view; no expiry (the bridge replaces it);
* ``<prefix>:{<user>}:pushed`` — hash ``p:<symbol>`` / ``o:<orderId>`` / ``a`` → pushed data;
* ``<prefix>:{<user>}:pushed:order`` — sorted set of those fields by arrival (µs), capped at
  :data:`MAX_PUSHED_ITEMS` (oldest out first).

A Redis restarted empty loses the views with everything else: bridges notice their marker key is
gone and save every trader's view again (:meth:`SharedPortfolio.ensure_marker`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
import ujson
from redis.exceptions import ConnectionError as RedisConnectionError

from streaming.broker import BrokerUnavailable
from streaming.publisher import Publisher, ViewFn
from streaming.pushed import MAX_PUSHED_ORDERS, MAX_PUSHED_POSITIONS, PushedState
from streaming.tasks import spawn

__all__ = ["RedisViews", "SharedPortfolio", "MAX_PUSHED_ITEMS"]

log = logging.getLogger(__name__)

#: Pushed items kept per trader in Redis (positions, orders and the account together).
MAX_PUSHED_ITEMS = MAX_PUSHED_ORDERS + MAX_PUSHED_POSITIONS + 1

# KEYS: pushed hash, order zset. ARGV: field, data JSON, max items.
_PUSH_LUA = """
local t = redis.call('TIME')
local score = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], score, ARGV[1])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if extra > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], extra)
  for i = 1, #old, 2 do redis.call('HDEL', KEYS[1], old[i]) end
end
return 1
"""


def _empty_view() -> dict[str, Any]:
    """A trader with no view saved yet (fresh lists: callers may keep them)."""
    return {"positions": [], "orders": [], "account": None, "trades": []}


def _dumps(value: Any) -> str:
    return ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False)


def _pushed_field(type_: str, data: Mapping[str, Any]) -> str | None:
    if type_ == "position_update":
        return f"p:{data['symbol']}"
    if type_ == "order_update":
        return f"o:{data['orderId']}"
    if type_ == "account_update":
        return "a"
    return None  # a notification (trade_executed): relayed only


_FIELD_TYPES = {"p": "position_update", "o": "order_update", "a": "account_update"}


class RedisViews:
    """The traders' views and pushed state in Redis: the publisher's state store.

    Args:
        url: ``redis://…``.
        prefix: key prefix (the engine's).
    """

    def __init__(self, url: str, *, prefix: str = "folio") -> None:
        self.url = url
        self.prefix = prefix
        self._redis: Any = None
        self._push: Any = None

    def _key(self, user_id: str, suffix: str) -> str:
        return f"{self.prefix}:{{{user_id}}}:{suffix}"

    async def start(self) -> None:
        """Connect (lazily: nothing is sent before the first call)."""
        # A pooled connection that died with a Redis restart is retried on a new socket.
        self._redis = aioredis.from_url(
            self.url, decode_responses=True, retry_on_error=[RedisConnectionError]
        )
        self._push = self._redis.register_script(_PUSH_LUA)

    async def close(self) -> None:
        """Close the connection pool."""
        if self._redis is not None:
            await self._redis.aclose()

    # -- the bridge's side ------------------------------------------------------------------------
    async def save(self, user_id: str, view: Mapping[str, Any]) -> None:
        """Replace ``user_id``'s broker view.

        Raises:
            BrokerUnavailable: Redis does not answer (the publisher keeps the event and retries).
        """
        try:
            await self._redis.set(self._key(user_id, "view"), _dumps(view))
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            raise BrokerUnavailable(f"Redis unreachable: {exc}") from exc

    async def ensure_marker(self, marker: str, users: Mapping[str, ViewFn]) -> bool:
        """Save every view again when ``marker`` is gone (Redis restarted empty or was flushed).

        Args:
            marker: a key name unique to the calling bridge.
            users: userId → how to read that trader's view, for every trader the bridge streams.

        Returns:
            True when the views were saved again.

        Raises:
            BrokerUnavailable: Redis does not answer.
        """
        key = f"{self.prefix}:marker:{marker}"
        try:
            if await self._redis.exists(key):
                return False
            for user_id, view in users.items():
                await self.save(user_id, view())
            await self._redis.set(key, "1")
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            raise BrokerUnavailable(f"Redis unreachable: {exc}") from exc
        return True

    async def forget_marker(self, marker: str) -> None:
        """Delete the caller's marker (it stops; best effort)."""
        try:
            await self._redis.delete(f"{self.prefix}:marker:{marker}")
        except Exception as exc:  # Redis away: nothing to tidy
            log.debug("marker not deleted: %s", exc)

    # -- the web's side ---------------------------------------------------------------------------
    async def view(self, user_id: str) -> dict[str, Any]:
        """Return the trader's view: the bridge's, with the pushed state laid over it.

        Returns:
            ``{"positions", "orders" (all, newest first), "account", "trades"}``; empty lists
            and a null account when no bridge has saved a view for this trader.

        Raises:
            BrokerUnavailable: Redis does not answer.
        """
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(self._key(user_id, "view"))
                pipe.hgetall(self._key(user_id, "pushed"))
                pipe.zrange(self._key(user_id, "pushed:order"), 0, -1)
                raw, pushed_items, order = await pipe.execute()
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            raise BrokerUnavailable(f"Redis unreachable: {exc}") from exc
        broker = ujson.loads(raw) if raw else _empty_view()
        if not pushed_items:
            return broker
        pushed = PushedState()
        for field in order:
            value = pushed_items.get(field)
            if value is not None:
                pushed.apply(_FIELD_TYPES[field[0]], ujson.loads(value))
        return {
            "positions": pushed.positions(broker.get("positions", [])),
            "orders": pushed.orders(broker.get("orders", [])),
            "account": pushed.account(broker.get("account")),
            "trades": broker.get("trades", []),
            "status": broker.get("status"),
        }

    async def keep_pushed(self, user_id: str, type_: str, data: Mapping[str, Any]) -> None:
        """Keep a pushed event's state, if it carries any (a notification is not kept).

        Raises:
            BrokerUnavailable: Redis does not answer; nothing was kept.
        """
        field = _pushed_field(type_, data)
        if field is None:
            return
        keys = [self._key(user_id, "pushed"), self._key(user_id, "pushed:order")]
        try:
            await self._push(keys=keys, args=[field, _dumps(data), MAX_PUSHED_ITEMS])
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            raise BrokerUnavailable(f"Redis unreachable: {exc}") from exc


class SharedPortfolio:
    """A web process's :class:`~streaming.manager.PortfolioReader`: the views in Redis.

    Pushed events are accepted while Redis is unreachable, as broker events are: the event waits
    in the publisher's outbox, and its state in a bounded queue here (``max_unkept``, oldest
    dropped first with a warning), both written in order once Redis answers again.

    Args:
        views: the Redis views.
        publisher: where accepted pushed events are published.
        max_unkept: pushed states held while Redis is unreachable.
    """

    def __init__(self, views: RedisViews, publisher: Publisher, *, max_unkept: int = 10_000):
        self.views = views
        self.publisher = publisher
        self._unkept: deque[tuple[str, str, dict[str, Any]]] = deque(maxlen=max_unkept)
        self._retrying: asyncio.Task[None] | None = None

    async def view(self, user_id: str) -> dict[str, Any]:
        """Return the trader's view (:meth:`RedisViews.view`)."""
        return await self.views.view(user_id)

    async def accept_pushed(self, user_id: str, type_: str, data: dict[str, Any]) -> None:
        """Keep a pushed event's state (if it carries any), then publish it.

        Args:
            user_id: an existing user (the caller checked).
            type_: a hook type (:data:`streaming.pushed.STATE_TYPES` are kept).
            data: validated by :func:`streaming.events.validate_pushed_event`.
        """
        if _pushed_field(type_, data) is not None:
            if self._unkept:  # keep the order: behind those still waiting
                self._hold(user_id, type_, data)
            else:
                try:
                    await self.views.keep_pushed(user_id, type_, data)
                except BrokerUnavailable:
                    self._hold(user_id, type_, data)
        self.publisher.emit(user_id, type_, data)

    def _hold(self, user_id: str, type_: str, data: dict[str, Any]) -> None:
        if len(self._unkept) == self._unkept.maxlen:
            log.warning("Redis away too long: the oldest waiting pushed state was dropped")
        self._unkept.append((user_id, type_, data))
        if self._retrying is None or self._retrying.done():
            self._retrying = spawn(self._keep_waiting(), "pushed-state-retry")

    async def _keep_waiting(self) -> None:
        delay = 0.1
        while self._unkept:
            user_id, type_, data = self._unkept[0]
            try:
                await self.views.keep_pushed(user_id, type_, data)
            except BrokerUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._unkept.popleft()
            delay = 0.1

    async def close(self) -> None:
        """Stop retrying (what still waits is lost with the process)."""
        if self._retrying is not None:
            self._retrying.cancel()
