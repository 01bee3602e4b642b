"""Records each trader's account figures over the day, for ``GET /api/account/history``.

The recorder samples the current account of every trader every ``interval_s`` seconds (default
10 s) and stores a point when the account changed since the last one recorded — so at most one
point per trader per interval, however fast prices tick — and deletes points older than
``window_s`` (default 24 h) once a minute. It reads the accounts through a callable the server
wiring supplies (``storage`` does not import ``streaming``), and runs as one kept asyncio task
whose failures are logged, never raised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from storage.db import AccountPoint, Store

__all__ = ["AccountRecorder", "HISTORY_PERIODS"]

log = logging.getLogger(__name__)

#: Periods ``GET /api/account/history`` accepts, and how far back each reaches.
HISTORY_PERIODS: dict[str, timedelta] = {"1D": timedelta(days=1)}

#: ``accounts()`` yields ``(user_id, AccountUpdate wire dict or None)``.
AccountsSource = Callable[[], Iterable[tuple[str, Mapping[str, Any] | None]]]


def _point(user_id: str, account: Mapping[str, Any]) -> AccountPoint | None:
    """The stored point of an ``AccountUpdate`` (wire shape), or None if it is unusable."""
    try:
        at = datetime.fromisoformat(str(account["timestamp"]).replace("Z", "+00:00"))
        equity = Decimal(str(account["equity"]))
        raw_pnl = account.get("dayPnl")
        day_pnl = None if raw_pnl is None else Decimal(str(raw_pnl))
        uid = int(user_id)
    except (KeyError, ValueError, InvalidOperation):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return AccountPoint(uid, at, equity, day_pnl)


class AccountRecorder:
    """Samples accounts into :meth:`Store.add_account_points`.

    Args:
        store: where points go.
        accounts: callable returning ``(user_id, account or None)`` for every trader.
        interval_s: seconds between samples (one point per trader per interval at most).
        window_s: points older than this many seconds are deleted.
        enabled: callable; sampling is skipped while it returns False (with several server
            processes only the one publishing broker events records, so points are not doubled).
        clock: monotonic seconds (pruning cadence).
    """

    def __init__(
        self,
        store: Store,
        accounts: AccountsSource,
        *,
        interval_s: float = 10.0,
        window_s: float = 86_400.0,
        enabled: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.interval_s = interval_s
        self.window_s = window_s
        self.enabled = enabled
        self._clock = clock
        self._last: dict[str, str] = {}
        self._pruned_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.recorded = 0

    def start(self) -> None:
        """Start sampling on the running loop."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop sampling (a sample in progress is cancelled)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def sample(self) -> int:
        """Record the accounts that changed since their last point; prune once a minute.

        Returns:
            How many points were recorded.
        """
        if not self.enabled():
            return 0
        points = []
        for user_id, account in self.accounts():
            if not account:
                continue
            stamp = str(account.get("timestamp"))
            if self._last.get(user_id) == stamp:
                continue
            point = _point(user_id, account)
            if point is None:
                continue
            points.append(point)
            self._last[user_id] = stamp
        if points:
            await self.store.add_account_points(points)
            self.recorded += len(points)
        now = self._clock()
        if self._pruned_at is None or now - self._pruned_at >= 60.0:
            self._pruned_at = now
            cutoff = datetime.now(UTC) - timedelta(seconds=self.window_s)
            await self.store.prune_account_points(cutoff)
        return len(points)

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
                if self._failing:
                    log.info("account history recording works again")
                    self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception:
                if not self._failing:  # once per outage, not every 10 s
                    log.exception("account history: recording failed; will keep trying")
                    self._failing = True
            await asyncio.sleep(self.interval_s)
