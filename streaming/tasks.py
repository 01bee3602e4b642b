"""Background tasks that are kept (never collected mid-flight), their failure logged once.

``asyncio`` keeps only a weak reference to a task: a task nobody holds can vanish, and one that
fails with nobody awaiting it only produces "Task exception was never retrieved" at garbage
collection, with no context. :func:`spawn` holds the task until it ends and logs its exception
once, with its name; :func:`every` runs a coroutine function periodically the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

__all__ = ["spawn", "every"]

log = logging.getLogger(__name__)

_RUNNING: set[asyncio.Task[Any]] = set()


def _done(task: asyncio.Task[Any]) -> None:
    _RUNNING.discard(task)
    if task.cancelled():
        return
    exc = task.exception()  # retrieving it here silences asyncio's own report
    if exc is not None:
        log.error("background task %s failed: %s", task.get_name(), exc, exc_info=exc)


def spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    """Start ``coro`` as a kept task named ``name``; its exception (if any) is logged once.

    Returns:
        The task (cancel it to stop it).
    """
    task = asyncio.ensure_future(coro)
    task.set_name(name)
    _RUNNING.add(task)
    task.add_done_callback(_done)
    return task


def every(interval_s: float, fn: Callable[[], Awaitable[Any]], name: str) -> asyncio.Task[Any]:
    """Run ``await fn()`` every ``interval_s`` seconds (first run after one interval).

    A failing run is logged (one line per failure, no traceback) and the next one still runs.

    Returns:
        The kept task; cancel it to stop.
    """

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("periodic task %s failed: %s", name, exc)

    return spawn(loop(), name)
