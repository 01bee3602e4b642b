"""Events pushed by other services through Redis (the position manager, the work queue).

Producers append to the Redis Stream ``<prefix>:ingest`` one entry per event, with a field
``event`` holding the same JSON as the internal hook's body::

    XADD folio:ingest * event '{"userId": "1", "type": "order_update", "data": {...}}'

Every server process reads the stream in the consumer group ``<prefix>-servers`` (created on
start), so each entry is handled by exactly one process, and acknowledges it once handled. The
entry is validated exactly like a hook call (:func:`streaming.events.validate_pushed_event`); a bad
entry is acknowledged too, and copied with its error to ``<prefix>:ingest:rejected`` (capped at
1000 entries) so producers can see what went wrong — it never stops the reader: whatever an
entry holds (invalid UTF-8, huge numbers, an exception in a handler), that entry is rejected and
the rest of the batch is handled. Entries delivered to this consumer but not acknowledged (the
process died or Redis dropped mid-batch) are read again first on start and after each error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
import ujson
from redis.exceptions import ResponseError

from streaming.events import EventValidationError, validate_pushed_event
from streaming.tasks import spawn

__all__ = ["RedisIngest"]

log = logging.getLogger(__name__)


class RedisIngest:
    """Reads ``<prefix>:ingest`` and emits each valid event.

    Args:
        url: ``redis://…``.
        emit: coroutine function ``emit(user_id, type, data)`` — the portfolio's
            ``accept_pushed`` (keeps the state pushed events carry, then relays them).
        user_exists: coroutine function telling whether a userId exists.
        prefix: key prefix.
    """

    def __init__(
        self,
        url: str,
        emit: Callable[[str, str, dict[str, Any]], Awaitable[None]],
        user_exists: Callable[[str], Awaitable[bool]],
        *,
        prefix: str = "folio",
    ) -> None:
        self.url = url
        self.stream = f"{prefix}:ingest"
        self.rejected_stream = f"{prefix}:ingest:rejected"
        self.group = f"{prefix}-servers"
        self.consumer = f"{socket.gethostname()}:{os.getpid()}"
        self._emit = emit
        self._user_exists = user_exists
        self._redis: Any = None
        self._task: asyncio.Task[None] | None = None
        self.accepted = 0
        self.rejected = 0

    async def start(self) -> None:
        """Create the consumer group if needed and start reading."""
        # Invalid UTF-8 in an entry must not fail the whole read: decode it with U+FFFD and let
        # validation reject the entry.
        self._redis = aioredis.from_url(self.url, decode_responses=True, encoding_errors="replace")
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._task = spawn(self._read_forever(), "redis-ingest")

    async def stop(self) -> None:
        """Stop reading and close the connection."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._redis is not None:
            await self._redis.aclose()

    async def handle(self, fields: dict[str, str]) -> str | None:
        """Validate and emit one entry; return the error message, or None when accepted.

        Never raises (except cancellation): an unexpected failure is reported as the error.
        """
        try:
            return await self._handle(fields)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("ingest entry could not be handled")
            return f"event: could not be handled ({type(exc).__name__})"

    async def _handle(self, fields: dict[str, str]) -> str | None:
        try:
            body = ujson.loads(fields.get("event", ""))
        except (ValueError, OverflowError, RecursionError):
            return "event: not valid JSON"
        if not isinstance(body, dict):
            return "event: must be a JSON object"
        try:
            user_id, type_, data = validate_pushed_event(body)
        except EventValidationError as exc:
            return str(exc)
        if not await self._user_exists(user_id):
            return f"userId: no user {user_id}"
        await self._emit(user_id, type_, data)
        return None

    async def _read_forever(self) -> None:
        delay = 0.5
        backlog = True  # first our own delivered-but-unacknowledged entries, then new ones
        while True:
            try:
                batches = await self._redis.xreadgroup(
                    self.group,
                    self.consumer,
                    {self.stream: "0" if backlog else ">"},
                    count=100,
                    block=None if backlog else 1000,
                )
                delay = 0.5
                if backlog and not any(entries for _s, entries in batches or []):
                    backlog = False
                for _stream, entries in batches or []:
                    for entry_id, fields in entries:
                        fields = fields or {}  # a backlog entry deleted meanwhile
                        error = await self.handle(fields)
                        if error is None:
                            self.accepted += 1
                        else:
                            self.rejected += 1
                            log.warning("rejected ingest entry %s: %s", entry_id, error)
                            await self._redis.xadd(
                                self.rejected_stream,
                                {"id": entry_id, "error": error, "event": fields.get("event", "")},
                                maxlen=1000,
                                approximate=True,
                            )
                        await self._redis.xack(self.stream, self.group, entry_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("Redis ingest interrupted (%s); retrying in %.1f s", exc, delay)
                backlog = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
