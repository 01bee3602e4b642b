"""The cluster view: every process reports into Redis, the admin stats show them all.

Each process writes a small report (connections, users, delivery latency, loop lag, outbox,
its role and the broker accounts it streams) into the hash ``<prefix>:procs`` every
``interval_s`` seconds, stamped with Redis's own clock, and reads every report back. A process
whose report is older than ``gone_after_s`` is shown as gone (it crashed or lost Redis); after
``forget_after_s`` its entry is deleted. A process that stops cleanly deletes its own entry at once.

The admin stats (``cluster`` in ``/api/admin/websocket-stats``) answer from the last read, so
serving them costs no Redis round trip.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import ujson

from streaming.tasks import spawn

__all__ = ["ClusterReporter"]

log = logging.getLogger(__name__)


class ClusterReporter:
    """Writes this process's report and keeps the latest view of every process.

    Args:
        url: ``redis://host:port/db``.
        report: returns this process's figures (a JSON-able dict), called every interval.
        prefix: key prefix (``REDIS_PREFIX``).
        interval_s: seconds between reports.
        gone_after_s: a report older than this marks its process as gone.
        forget_after_s: a report older than this is deleted.
    """

    def __init__(
        self,
        url: str,
        report: Callable[[], dict[str, Any]],
        *,
        prefix: str = "folio",
        interval_s: float = 2.0,
        gone_after_s: float = 10.0,
        forget_after_s: float = 300.0,
    ) -> None:
        self.url = url
        self.key = f"{prefix}:procs"
        self.interval_s = interval_s
        self.gone_after_s = gone_after_s
        self.forget_after_s = forget_after_s
        self._report = report
        #: This process's id in the view: host, pid and a random part (pids are reused).
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._started = time.time()
        self._redis: Any = None
        self._task: asyncio.Task[Any] | None = None
        self._view: dict[str, Any] = {"processes": [], "totals": {}, "updatedAt": None}

    async def start(self) -> None:
        """Connect, report once and start reporting periodically.

        Raises:
            redis.exceptions.ConnectionError: Redis does not answer.
        """
        self._redis = aioredis.from_url(
            self.url, decode_responses=True, client_name=f"{self.key}-reporter"
        )
        await self.tick()
        self._task = spawn(self._loop(), "cluster-reporter")

    async def stop(self) -> None:
        """Stop reporting and remove this process from the view."""
        if self._task is not None:
            self._task.cancel()
        if self._redis is None:
            return
        try:
            await self._redis.hdel(self.key, self.process_id)
        except Exception as exc:  # the entry ages out and is forgotten
            log.info("cluster report not removed (%s)", exc)
        finally:
            await self._redis.aclose()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except Exception as exc:
                log.warning("cluster report failed (%s)", exc)

    async def tick(self) -> None:
        """Write this process's report, read every report, forget long-gone processes."""
        seconds, micros = await self._redis.time()
        now = seconds + micros / 1e6
        report = {
            **self._report(),
            "at": now,
            "startedAt": self._started,
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        await self._redis.hset(self.key, self.process_id, ujson.dumps(report))
        raw = await self._redis.hgetall(self.key)
        processes = []
        forget = []
        for pid, text in raw.items():
            try:
                entry = ujson.loads(text)
                age = now - float(entry["at"])
            except (ValueError, KeyError, TypeError):
                forget.append(pid)
                continue
            if age > self.forget_after_s:
                forget.append(pid)
                continue
            entry.update(
                id=pid,
                ageS=round(age, 1),
                alive=age <= self.gone_after_s,
                self=pid == self.process_id,
            )
            processes.append(entry)
        if forget:
            await self._redis.hdel(self.key, *forget)
        processes.sort(key=lambda e: (not e["alive"], e["id"]))
        alive = [p for p in processes if p["alive"]]
        self._view = {
            "processes": processes,
            "totals": {
                "processes": len(alive),
                "gone": len(processes) - len(alive),
                "activeConnections": sum(int(p.get("activeConnections", 0)) for p in alive),
                "eventsDelivered": sum(int(p.get("eventsDelivered", 0)) for p in alive),
                "bridges": sum(1 for p in alive if p.get("role") in ("bridge", "all")),
                "accountsStreamed": sum(len(p.get("accountsOwned") or []) for p in alive),
            },
            "updatedAt": now,
        }

    def view(self) -> dict[str, Any]:
        """The cluster as last read (``processes`` with ``alive``/``ageS``, and ``totals``)."""
        return self._view
