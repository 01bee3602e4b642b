"""Closing a user's sockets on every process: disabled, deleted or disconnected by an admin.

Two mechanisms, so nothing depends on one message arriving:

- **Immediately**, over Redis when ``REDIS_URL`` is set: a small pub/sub message on
  ``<prefix>:control`` (``{"op": "close_user", "userId": "7"}``), sent by the admin action and
  by ``server.py users disable|delete|passwd``; every process closes that user's sockets with
  4001 (``Session revoked``) on receipt. Without Redis there is one process, and the admin action
  closes its sockets directly.
- **Within one heartbeat interval**, always: a periodic session check (every
  ``HEARTBEAT_INTERVAL_S``, one indexed query per 500 open sessions) closes with 4001 every
  socket whose session was revoked, expired, or whose user was disabled or deleted. This covers
  the CLI without Redis, a message missed while Redis was down, and edits made straight in SQL.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import redis.asyncio as aioredis
import ujson

__all__ = ["UserControl", "publish_close_user", "control_channel"]

log = logging.getLogger(__name__)


class _Manager(Protocol):
    hub: Any

    def close_user(self, user_id: str, reason: str = ...) -> int: ...

    def close_session(self, sid: str) -> int: ...


class _Sessions(Protocol):
    async def active_sids(self, sids: list[str]) -> set[str]: ...

    def forget_user(self, user_id: int) -> None: ...


def control_channel(prefix: str) -> str:
    """The Redis pub/sub channel of control messages for deployment ``prefix``."""
    return f"{prefix}:control"


async def publish_close_user(redis_url: str, prefix: str, user_id: str) -> int:
    """Tell every process sharing ``redis_url`` to close ``user_id``'s sockets.

    Returns:
        How many processes were subscribed (Redis ``PUBLISH``'s answer).

    Raises:
        redis.exceptions.RedisError: Redis does not answer.
    """
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        message = ujson.dumps({"op": "close_user", "userId": user_id})
        return int(await client.publish(control_channel(prefix), message))
    finally:
        await client.aclose()


class UserControl:
    """Runs the periodic session check and, with Redis, listens for control messages.

    Args:
        manager: the stream manager (its hub's open sockets, ``close_user``, ``close_session``).
        sessions: the store (``active_sids``).
        interval_s: seconds between session checks (``HEARTBEAT_INTERVAL_S``).
        redis_url: the Redis to listen on and publish to; empty: this process alone.
        prefix: ``REDIS_PREFIX``.
    """

    def __init__(
        self,
        manager: _Manager,
        sessions: _Sessions,
        *,
        interval_s: float = 15.0,
        redis_url: str = "",
        prefix: str = "folio",
    ) -> None:
        self.manager = manager
        self.sessions = sessions
        self.interval_s = interval_s
        self.redis_url = redis_url
        self.prefix = prefix
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the session check (and the Redis listener when configured)."""
        self._tasks.append(asyncio.ensure_future(self._check_forever()))
        if self.redis_url:
            self._tasks.append(asyncio.ensure_future(self._listen_forever()))
        for task in self._tasks:
            task.add_done_callback(_log_failure)

    async def stop(self) -> None:
        """Stop both tasks."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()

    async def disconnect_user(self, user_id: str) -> int:
        """Close ``user_id``'s sockets here now, and on the other processes via Redis.

        Returns:
            How many sockets closed in this process.
        """
        closed = self.manager.close_user(user_id)
        if self.redis_url:
            try:
                await publish_close_user(self.redis_url, self.prefix, user_id)
            except Exception as exc:  # the session check closes them within an interval
                log.warning("could not tell the other processes to close user %s: %s", user_id, exc)
        return closed

    async def check_sessions(self) -> int:
        """Close every socket whose session is no longer active; return how many sessions."""
        sids = sorted({client.sid for client in self.manager.hub.all()})
        if not sids:
            return 0
        active = await self.sessions.active_sids(sids)
        gone = [sid for sid in sids if sid not in active]
        for sid in gone:
            self.manager.close_session(sid)
        if gone:
            log.info("closed the sockets of %d revoked or disabled session(s)", len(gone))
        return len(gone)

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check_sessions()
            except Exception as exc:  # the database may be away for a moment
                log.warning("session check failed (%s); retrying in %.0f s", exc, self.interval_s)

    async def _listen_forever(self) -> None:
        delay = 0.5
        while True:
            client = aioredis.from_url(
                self.redis_url, decode_responses=True, client_name=f"{self.prefix}-control"
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(control_channel(self.prefix))
                delay = 0.5
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "Redis control channel interrupted (%s); retrying in %.1f s", exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except Exception:
                    pass

    def _on_message(self, raw: str) -> None:
        try:
            body = ujson.loads(raw)
            op, user_id = body["op"], str(body["userId"])
        except (ValueError, KeyError, TypeError):
            log.warning("malformed control message ignored: %.200r", raw)
            return
        if op == "close_user":
            if user_id.isdigit():  # deleted or disabled: the hooks stop accepting it at once
                self.sessions.forget_user(int(user_id))
            closed = self.manager.close_user(user_id)
            if closed:
                log.info("closed %d socket(s) of user %s (control message)", closed, user_id)
        else:
            log.warning("unknown control message %r ignored", op)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("user control task stopped", exc_info=task.exception())
