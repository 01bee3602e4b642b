"""Per-account leases: exactly one bridge process streams each broker account.

Alpaca limits stream connections per key, and two streams of one account would publish every
fill twice. So in a cluster (``REDIS_URL``) each account's trading stream runs in the bridge
process that holds that account's lease:

* a lease is a redis-py :class:`redis.asyncio.lock.Lock` named ``<prefix>:lease:<userId>`` with a
  timeout of ``lease_s`` seconds, renewed (``reacquire``) every ``lease_s / 3``; a bridge that dies
  stops renewing, and another takes the account over once the lease expires (≤ ``lease_s``);
* bridges announce themselves in the sorted set ``<prefix>:bridges`` (score = expiry in ms), so
  each knows how many are alive and takes at most its fair share, ``ceil(accounts / bridges)``;
  a bridge holding more than its share (another one started) gives the surplus up, gracefully:
  the caller stops those streams and publishes what they produced *before* the lease is released,
  so the next owner's catch-up (:mod:`streaming.catchup`) starts where it ended.

A bridge that cannot reach Redis for a whole lease stops every stream it holds (another bridge
may own them by then). This module only decides ownership; :class:`streaming.ownership`-style
wiring in ``server.py`` starts and stops the streams.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Collection
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

__all__ = ["AccountLeases"]

log = logging.getLogger(__name__)


class AccountLeases:
    """The leases this bridge holds on broker accounts (by userId).

    Args:
        url: ``redis://…``.
        prefix: key prefix (the engine's).
        lease_s: seconds a lease lasts without renewal; renew at least every third of it.
        identity: this bridge's name in Redis (default ``host:pid:random``).
        clock: unix time in seconds (tests may replace it).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "folio",
        lease_s: float = 6.0,
        identity: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.lease_s = lease_s
        self.identity = identity or (f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}")
        self._clock = clock
        self._redis: Any = None
        self._locks: dict[str, Lock] = {}
        #: unix time of the last renewal that Redis confirmed, per held account.
        self._renewed: dict[str, float] = {}
        self.bridges_alive = 1

    @property
    def owned(self) -> frozenset[str]:
        """The userIds whose lease this bridge holds."""
        return frozenset(self._locks)

    def _lock(self, user_id: str) -> Lock:
        return Lock(
            self._redis,
            f"{self.prefix}:lease:{user_id}",
            timeout=self.lease_s,
            blocking=False,
            thread_local=False,
            raise_on_release_error=False,
        )

    async def start(self) -> None:
        """Connect (lazily: nothing is sent before the first :meth:`renew`)."""
        self._redis = aioredis.from_url(self.url, decode_responses=False)

    async def close(self) -> None:
        """Release every lease held (best effort) and close the connection."""
        await self.release(list(self._locks))
        try:
            await self._redis.zrem(f"{self.prefix}:bridges", self.identity)
        except Exception as exc:  # Redis away: the entry expires by itself
            log.debug("bridge entry not removed: %s", exc)
        await self._redis.aclose()

    async def renew(self, wanted: Collection[str]) -> set[str]:
        """Announce this bridge and renew its leases; return those no longer held or wanted.

        Args:
            wanted: the userIds with a linked broker account now.

        Returns:
            The accounts to stop streaming: leases lost (expired, taken) or no longer
            linked. Leases not confirmed for a whole ``lease_s`` (Redis unreachable) count
            as lost. Those still held but unlinked stay held until :meth:`release`.
        """
        now = self._clock()
        key = f"{self.prefix}:bridges"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {self.identity: int((now + self.lease_s) * 1000)})
                pipe.zremrangebyscore(key, "-inf", int(now * 1000))
                pipe.zcard(key)
                _, _, alive = await pipe.execute()
            self.bridges_alive = max(1, int(alive))
        except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            log.warning("bridge registry not updated (Redis: %s)", exc)
        stop: set[str] = set()
        for user_id, lock in list(self._locks.items()):
            if user_id not in wanted:
                stop.add(user_id)
                continue
            try:
                await lock.reacquire()
                self._renewed[user_id] = now
            except LockError:
                log.warning("lease on account of user %s lost: another bridge has it", user_id)
                self._drop(user_id)
                stop.add(user_id)
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                if now - self._renewed.get(user_id, now) >= self.lease_s:
                    log.warning(
                        "lease on account of user %s not renewed for %.0f s (Redis: %s): "
                        "stopping its stream",
                        user_id,
                        self.lease_s,
                        exc,
                    )
                    self._drop(user_id)
                    stop.add(user_id)
        return stop

    def surplus(self, wanted: Collection[str]) -> list[str]:
        """Return the accounts to give up so every live bridge gets its fair share."""
        share = math.ceil(len(wanted) / self.bridges_alive) if wanted else 0
        held = sorted(u for u in self._locks if u in wanted)
        return held[share:] if len(held) > share else []

    async def acquire(self, wanted: Collection[str]) -> list[str]:
        """Take free leases among ``wanted`` up to this bridge's fair share.

        Returns:
            The userIds newly held (their streams should start).
        """
        share = math.ceil(len(wanted) / self.bridges_alive) if wanted else 0
        held = sum(1 for u in self._locks if u in wanted)
        # Start at a different place per bridge, so two starting together do not race for the
        # same accounts first.
        order = sorted(wanted, key=lambda u: hash((self.identity, u)))
        taken: list[str] = []
        for user_id in order:
            if held >= share:
                break
            if user_id in self._locks:
                continue
            lock = self._lock(user_id)
            try:
                got = await lock.acquire(token=self.identity.encode())
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                log.warning("lease not taken (Redis: %s)", exc)
                break
            if got:
                self._locks[user_id] = lock
                self._renewed[user_id] = self._clock()
                taken.append(user_id)
                held += 1
        if taken:
            log.info("bridge %s took the account(s) of user(s) %s", self.identity, taken)
        return taken

    async def release(self, user_ids: Collection[str]) -> None:
        """Give these leases up (after their streams stopped and their events went out)."""
        for user_id in list(user_ids):
            lock = self._locks.get(user_id)
            self._drop(user_id)
            if lock is None:
                continue
            try:
                await lock.release()
            except LockError:  # expired, or another bridge has it by now
                log.info("lease of user %s had already expired", user_id)
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                log.warning(
                    "lease of user %s not released (%s); it expires by itself", user_id, exc
                )

    def _drop(self, user_id: str) -> None:
        self._locks.pop(user_id, None)
        self._renewed.pop(user_id, None)
