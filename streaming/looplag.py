"""Event-loop lag: how late the loop runs a timer that should have fired on time.

One background task sleeps ``interval_s`` over and over; each wake-up that comes later than asked
is *lag*: the time the loop spent running other callbacks (fan-out to thousands of sockets, JSON
encoding, compression) before it could get back to this one. It is what every other callback
waiting on the loop suffered too, so it is the figure to watch when the loop is "sacred". This is
the method of Node.js's ``monitorEventLoopDelay`` and of aiomonitor's lag probe.

Recent samples (timestamped) are kept for percentiles (admin stats) and for the heartbeat, which
asks :meth:`LoopLagMonitor.longest_stall_since` whether the *server* stalled before it blames a
client for not answering; every sample also goes to the Prometheus histogram
``folio_event_loop_lag_seconds`` given at construction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from streaming.metrics import percentile

__all__ = ["LoopLagMonitor"]

log = logging.getLogger(__name__)


class _Observer(Protocol):
    def observe(self, amount: float) -> None: ...


class LoopLagMonitor:
    """Samples the running loop's lag every ``interval_s`` seconds.

    Args:
        histogram: where each sample (seconds) is also observed (a Prometheus ``Histogram``),
            or None.
        interval_s: seconds between probes (default 0.05: 20 samples a second, negligible CPU).
        window_s: seconds of samples kept for :meth:`lag_ms` and :meth:`longest_stall_since`.
        clock: monotonic clock in seconds.
    """

    def __init__(
        self,
        histogram: _Observer | None = None,
        *,
        interval_s: float = 0.05,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self._histogram = histogram
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=max(1, int(window_s / interval_s)))
        self._task: asyncio.Task[None] | None = None
        #: Monotonic seconds of the last probe wake-up (0 before the first).
        self.last_tick = 0.0

    def start(self) -> None:
        """Start probing on the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
            self._task.add_done_callback(_log_failure)

    def stop(self) -> None:
        """Stop probing."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            before = self._clock()
            await asyncio.sleep(self.interval_s)
            now = self._clock()
            self.record(max(0.0, now - before - self.interval_s), now)

    def record(self, lag_s: float, at: float | None = None) -> None:
        """Record one lag sample of ``lag_s`` seconds observed at monotonic time ``at``."""
        at = self._clock() if at is None else at
        self.last_tick = at
        self._samples.append((at, lag_s))
        if self._histogram is not None:
            self._histogram.observe(lag_s)

    def lag_ms(self) -> dict[str, float | None]:
        """Return ``{"p50", "p95", "p99", "max"}`` of the recent window, in milliseconds."""
        samples = [lag * 1000.0 for _, lag in self._samples]
        return {
            "p50": percentile(samples, 50),
            "p95": percentile(samples, 95),
            "p99": percentile(samples, 99),
            "max": max(samples) if samples else None,
        }

    def longest_stall_since(self, since: float) -> float:
        """Return the longest lag (seconds) among probes that woke at or after ``since``.

        A probe that wakes after a stall reports the whole stall, so a stall that ended after
        ``since`` is seen here; 0.0 when no probe woke since then.
        """
        longest = 0.0
        for at, lag in reversed(self._samples):
            if at < since:
                break
            longest = max(longest, lag)
        return longest


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("event-loop lag monitor stopped", exc_info=task.exception())
