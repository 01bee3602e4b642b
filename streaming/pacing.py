"""Time slicing: long runs of synchronous work give the event loop back every few milliseconds.

Fan-out is synchronous per publication (one prepared frame, written to each of the user's
sockets), which is cheap; but a batch flush releases one publication per user, and with
thousands of tabs the whole flush is tens of milliseconds of socket writes. Run in one go it
would hold every other callback (reads, pings, HTTP requests, the next batch) for that long.
The loops that hand publications to the hub (the memory engine's outbox drain in
:class:`streaming.manager.StreamManager`, the Redis engine's fan-out reader) call
:meth:`TimeSlicer.pause_if_due` between publications, so the loop's lag stays near
:data:`SLICE_S` whatever the number of connections (measured by :mod:`streaming.looplag`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["TimeSlicer", "SLICE_S"]

#: Seconds of synchronous fan-out allowed before yielding to the loop.
SLICE_S = 0.005


class TimeSlicer:
    """Yields to the event loop once ``slice_s`` seconds of work have passed since the last yield.

    Args:
        slice_s: the longest run, in seconds, between two yields (checked between items, so one
            item's own work may exceed it).
        clock: monotonic clock in seconds.
    """

    def __init__(self, slice_s: float = SLICE_S, clock: Callable[[], float] = time.monotonic):
        self.slice_s = slice_s
        self._clock = clock
        self._since = clock()
        #: How many times it yielded (tests, stats).
        self.yields = 0

    def start(self) -> None:
        """Begin a new run of work now (the loop was free until now)."""
        self._since = self._clock()

    async def pause_if_due(self) -> None:
        """Yield to the loop (``asyncio.sleep(0)``) if this run has lasted ``slice_s`` or more."""
        if self._clock() - self._since >= self.slice_s:
            await asyncio.sleep(0)
            self.yields += 1
            self._since = self._clock()
