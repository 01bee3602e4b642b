"""The cluster view for the admin page: every process's headline numbers, from any process.

With ``REDIS_URL`` each process writes a small summary of its stats (connections, users,
deliveries, latency p95, loop lag p99, leader, fan-out, broker staleness, peak RSS) to the key
``<prefix>:process:<hostname>:<port>`` every ``interval_s`` seconds, expiring after ``ttl_s``;
a process that dies disappears from the view when its key expires. :meth:`ClusterView.processes`
reads them all (``SCAN`` + ``MGET``), so whichever process answers the admin page's poll shows
the whole cluster. Without Redis the cluster is this process alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
import ujson

__all__ = ["ClusterView", "summarize", "process_id"]

log = logging.getLogger(__name__)


def process_id(port: int) -> str:
    """Return the process id used in the cluster view: ``<hostname>:<HTTP port>``.

    The port, not the pid, because it is what a load balancer and an operator know the
    process by (and it stays unique for several servers in one test process).
    """
    return f"{socket.gethostname()}:{port}"


def summarize(process: str, stats: Mapping[str, Any], now: float) -> dict[str, Any]:
    """Return the headline numbers of one process's stats document (``opstats.build_stats``).

    Args:
        process: the process id.
        stats: its stats document.
        now: unix seconds, recorded as ``updatedAt``.
    """
    redis = stats.get("redis") or {}
    return {
        "id": process,
        "pid": os.getpid(),
        "connections": stats["activeConnections"],
        "users": stats["activeUsers"],
        "eventsDelivered": stats["eventsDelivered"],
        "latencyP95Ms": stats["latencyMs"]["p95"],
        "loopLagP99Ms": stats["loopLagMs"]["p99"],
        "disconnectsLastMinute": stats["disconnectsLastMinute"],
        "leader": bool(redis.get("leader", True)),
        "fanout": redis.get("fanout"),
        "brokerStale": bool(stats["broker"]["stale"]),
        "maxRssMb": stats.get("maxRssMb"),
        "updatedAt": round(now, 3),
    }


class ClusterView:
    """Publishes this process's summary and reads every process's.

    Args:
        source: returns this process's stats document.
        port: this process's HTTP port (names it, with the hostname).
        redis_url: the shared Redis; empty for a single process.
        prefix: ``REDIS_PREFIX``.
        interval_s: seconds between publications.
        ttl_s: seconds a summary lives without being refreshed.
        clock: unix time in seconds.
    """

    def __init__(
        self,
        source: Callable[[], Mapping[str, Any]],
        *,
        port: int,
        redis_url: str = "",
        prefix: str = "folio",
        interval_s: float = 2.0,
        ttl_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.id = process_id(port)
        self._source = source
        self.redis_url = redis_url
        self.prefix = prefix
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self._clock = clock
        self._redis: Any = None
        self._task: asyncio.Task[None] | None = None

    @property
    def key(self) -> str:
        """The Redis key of this process's summary."""
        return f"{self.prefix}:process:{self.id}"

    def start(self) -> None:
        """Start publishing (only with Redis)."""
        if not self.redis_url:
            return
        self._redis = aioredis.from_url(
            self.redis_url, decode_responses=True, client_name=f"{self.prefix}-cluster"
        )
        self._task = asyncio.ensure_future(self._publish_forever())
        self._task.add_done_callback(_log_failure)

    async def stop(self) -> None:
        """Stop publishing and remove this process from the view."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        if self._redis is not None:
            try:
                await self._redis.delete(self.key)
            except Exception:  # Redis away: the key expires by itself
                pass
            await self._redis.aclose()
            self._redis = None

    def local(self) -> dict[str, Any]:
        """Return the summary of this process, now."""
        return summarize(self.id, self._source(), self._clock())

    async def publish(self) -> None:
        """Write this process's summary (``SET … PX ttl``)."""
        payload = ujson.dumps(self.local())
        await self._redis.set(self.key, payload, px=int(self.ttl_s * 1000))

    async def _publish_forever(self) -> None:
        while True:
            try:
                await self.publish()
            except Exception as exc:
                log.debug("cluster summary not published: %s", exc)
            await asyncio.sleep(self.interval_s)

    async def processes(self) -> list[dict[str, Any]]:
        """Every live process's summary, this one first (fresh), then by id.

        Without Redis, or when Redis does not answer, only this process (``partial`` is then
        set on it when Redis was expected).
        """
        own = {**self.local(), "self": True}
        if self._redis is None:
            return [own]
        try:
            keys = [k async for k in self._redis.scan_iter(f"{self.prefix}:process:*", count=100)]
            values = await self._redis.mget(keys) if keys else []
        except Exception as exc:
            log.warning("cluster view unavailable: %s", exc)
            return [{**own, "partial": True}]
        others = []
        for raw in values:
            if raw is None:
                continue
            try:
                entry = ujson.loads(raw)
            except ValueError:
                continue
            if entry.get("id") != self.id:
                others.append({**entry, "self": False})
        others.sort(key=lambda e: str(e.get("id")))
        return [own, *others]


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("cluster summary task stopped", exc_info=task.exception())
