"""In-process broker engine: per-user sequence counters and bounded in-memory history.

What it cannot do: share streams between processes. Each server process has its own numbering,
and history is lost on restart; the epoch (random per process start) tells clients so. Use it
for one process; behind a load balancer with several processes use the Redis engine.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from streaming.broker import (
    FILLS_LEDGER_SIZE,
    Broker,
    Publication,
    PublicationHandler,
    PublishedFills,
    fill_record,
    ms_to_datetime,
)
from streaming.events import utc_now_iso

__all__ = ["MemoryBroker"]


class MemoryBroker(Broker):
    """Broker held in this process's memory.

    Args:
        history_size: publications kept per user for recovery (oldest dropped first).
        epoch: the stream epoch; random by default.
        fills_ledger_size: executions kept per user in the fills ledger (the newest).
    """

    def __init__(
        self,
        history_size: int = 1000,
        epoch: str | None = None,
        fills_ledger_size: int = FILLS_LEDGER_SIZE,
    ) -> None:
        self.epoch = epoch or secrets.token_urlsafe(6)
        self._history_size = history_size
        self._seq: dict[str, int] = {}
        self._history: dict[str, deque[Publication]] = {}
        self._handler: PublicationHandler | None = None
        self._ledger_size = fills_ledger_size
        #: user → execution id → fill time (ms); user → first publication time (ms).
        self._fills: dict[str, dict[str, int]] = {}
        self._started: dict[str, int] = {}

    def set_handler(self, handler: PublicationHandler) -> None:
        """Set the function called with every publication."""
        self._handler = handler

    async def publish(
        self, user_id: str, type_: str, data: Mapping[str, Any], *, emitted_at: float = 0.0
    ) -> Publication:
        """Number, store, record in the fills ledger and hand on one event.

        Synchronous (no ``await`` before the handler), so atomic on the IOLoop.
        """
        seq = self._seq.get(user_id, 0) + 1
        self._seq[user_id] = seq
        self._started.setdefault(user_id, int(time.time() * 1000))
        record = fill_record(type_, data)
        if record is not None:
            self._record_fill(user_id, *record)
        pub = Publication(user_id, seq, self.epoch, type_, data, utc_now_iso(), emitted_at)
        history = self._history.get(user_id)
        if history is None:
            history = self._history[user_id] = deque(maxlen=self._history_size)
        history.append(pub)
        if self._handler is not None:
            self._handler(pub)
        return pub

    def _record_fill(self, user_id: str, execution_id: str, at_ms: int) -> None:
        fills = self._fills.setdefault(user_id, {})
        fills[execution_id] = at_ms
        if len(fills) > self._ledger_size:  # one over: drop the oldest (ties: by id, as Redis)
            oldest = min(fills.items(), key=lambda item: (item[1], item[0]))
            del fills[oldest[0]]

    async def published_fills(self, user_id: str) -> PublishedFills:
        """Return ``user_id``'s fills ledger (this process's publications only)."""
        fills = self._fills.get(user_id, {})
        started = self._started.get(user_id)
        return PublishedFills(
            newest=ms_to_datetime(max(fills.values())) if fills else None,
            ids=frozenset(fills),
            started_at=None if started is None else ms_to_datetime(started),
        )

    async def position(self, user_id: str) -> tuple[int, str]:
        """Return ``(last seq, epoch)`` for ``user_id``."""
        return self._seq.get(user_id, 0), self.epoch

    async def recover(self, user_id: str, since_seq: int, epoch: str) -> list[Publication] | None:
        """Return the publications after ``since_seq`` if all are still held, else None."""
        current = self._seq.get(user_id, 0)
        if epoch != self.epoch or since_seq > current:
            return None
        if since_seq == current:
            return []
        history = self._history.get(user_id) or deque()
        if not history or history[0].seq > since_seq + 1:
            return None
        return [p for p in history if p.seq > since_seq]
