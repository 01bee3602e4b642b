"""Which process publishes broker events when several share one Redis (``REDIS_URL``).

Every process runs the broker bridge, so every process holds every trader's portfolio state
and can answer snapshots and REST from memory. Only one of them — the leader — turns broker
events into stream events; otherwise each event would be published once per process.

Leadership is a Redis key ``<prefix>:bridge-leader`` set with ``SET NX PX`` (a lease of
``lease_s`` seconds) and renewed every ``lease_s / 3`` by its holder with a compare-and-expire
script. A process that cannot renew (Redis down, stalled loop) steps down; another takes over
when the lease runs out. The new leader announces every trader's full state (positions and
account, complete snapshots) so clients converge on what they missed during the hand-over.
Without Redis, :class:`SoleLeader` says "always the leader".
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from streaming.tasks import spawn

__all__ = ["SoleLeader", "RedisLeader"]

log = logging.getLogger(__name__)

_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class SoleLeader:
    """The only process: always the leader."""

    is_leader = True

    async def start(self) -> None:
        """Nothing to do."""

    async def stop(self) -> None:
        """Nothing to do."""


class RedisLeader:
    """Lease-based leader election in Redis.

    Args:
        url: ``redis://…``.
        on_change: called with True when this process becomes leader, False when it stops
            being one (on the IOLoop).
        prefix: key prefix.
        lease_s: lease length in seconds; renewal every third of it.
    """

    def __init__(
        self,
        url: str,
        on_change: Callable[[bool], None],
        *,
        prefix: str = "folio",
        lease_s: float = 10.0,
    ) -> None:
        self.url = url
        self.key = f"{prefix}:bridge-leader"
        self.lease_ms = int(lease_s * 1000)
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.is_leader = False
        self._on_change = on_change
        self._redis: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect, try once to take the lease, then keep trying/renewing in the background."""
        self._redis = aioredis.from_url(self.url, decode_responses=True)
        self._renew = self._redis.register_script(_RENEW_LUA)
        await self.tick()
        self._task = spawn(self._loop(), "leader-lease")

    async def tick(self) -> None:
        """Renew the lease if held, else try to take it; report changes."""
        try:
            if self.is_leader:
                held = bool(await self._renew(keys=[self.key], args=[self.identity, self.lease_ms]))
            else:
                held = bool(
                    await self._redis.set(self.key, self.identity, nx=True, px=self.lease_ms)
                )
        except Exception as exc:
            log.warning("leader lease check failed: %s", exc)
            held = False
        if held != self.is_leader:
            self.is_leader = held
            log.info("this process %s the bridge leader", "is now" if held else "is no longer")
            self._on_change(held)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000.0)
            await self.tick()

    async def stop(self) -> None:
        """Stop renewing and give the lease up so another process takes over at once."""
        if self._task is not None:
            self._task.cancel()
        if self._redis is None:
            return
        try:
            if self.is_leader:
                await self._redis.eval(_RELEASE_LUA, 1, self.key, self.identity)
        except Exception as exc:  # Redis away: the lease simply expires
            log.warning("lease not released (%s); it expires by itself", exc)
        finally:
            self.is_leader = False
            await self._redis.aclose()
