"""Coalescing of position and account updates into ``batch`` events (REQ-5). Pure, no I/O.

Within one batch window a user's ``position_update``s and ``account_update``s are held; the latest
complete snapshot per symbol (and the latest account) wins — never deltas, so dropping an older
one loses nothing (design doc, Risk 4). ``order_update`` and ``trade_executed`` are never held:
:meth:`Batcher.add` first returns the user's pending batch, then the event, so order is kept.
Each user's windows have their own phase: a user's batches are due at ``phase + k × window``, the
phase a stable hash of the userId spread over the window. The publisher's timer, armed for the
earliest due batch (:meth:`Batcher.next_due`), releases what is due (:meth:`Batcher.drain_due`).
An update still waits at most one window (on average half), as with one shared tick; but with
thousands of tabs a shared tick would release every user's batch at the same instant and fan out
all their frames in one burst, delaying the last tab by the whole burst (bench/README.md,
"Staggered windows").

Latency trade-off: an update waits at most one window before it is sent, so the window adds up
to ``BATCH_WINDOW_MS`` to delivery latency. The default 250 ms keeps REQ-4 (p95 < 500 ms, window
included) with room to spare while still merging the bursts a fast market produces (several
trades per symbol per second become at most four frames per second per user).
"""

from __future__ import annotations

import heapq
import itertools
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streaming.events import EventType

__all__ = ["Batcher", "Outgoing"]

Outgoing = tuple[str, str, dict[str, Any], float]
"""``(user_id, event type, data, emitted_at)`` ready to publish; ``emitted_at`` is the monotonic
time (seconds) the oldest update it carries entered the server, for latency metrics."""

_COALESCED = frozenset({EventType.POSITION_UPDATE, EventType.ACCOUNT_UPDATE})


@dataclass
class _Pending:
    positions: dict[str, dict[str, Any]] = field(default_factory=dict)
    account: dict[str, Any] | None = None
    first_at: float = 0.0
    due: float = 0.0  # monotonic seconds when the batch must go (first update + window)
    count: int = 0  # updates absorbed, for the reduction metric


class Batcher:
    """Holds position/account updates per user until the window closes.

    Args:
        window_ms: the batching window in milliseconds; 0 sends every update on its own.

    Attributes:
        absorbed: total updates that went into batches (for metrics).
        batches: total batch events produced.
    """

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._pending: dict[str, _Pending] = {}
        #: (due, insertion number, userId) of every batch held; stale entries are skipped.
        self._due: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self.absorbed = 0
        self.batches = 0

    def add(
        self, user_id: str, type_: str, data: Mapping[str, Any], at: float = 0.0
    ) -> list[Outgoing]:
        """Offer one event for ``user_id``.

        Args:
            user_id: the wire userId.
            type_: a stream event type.
            data: the event data in wire shape.
            at: monotonic time (seconds) the update entered the server.

        Returns:
            The events to publish now, in order: ``[]`` when the update was held, else the
            pending batch (if any) followed by the event itself.
        """
        if self.window_ms > 0 and type_ in _COALESCED:
            pending = self._pending.get(user_id)
            if pending is None:
                due = self._next_due(user_id, at)
                pending = self._pending[user_id] = _Pending(first_at=at, due=due)
                heapq.heappush(self._due, (due, next(self._order), user_id))
            if type_ == EventType.POSITION_UPDATE:
                pending.positions[str(data["symbol"])] = dict(data)
            else:
                pending.account = dict(data)
            pending.count += 1
            return []
        return [*self.take(user_id), (user_id, str(type_), dict(data), at)]

    def take(self, user_id: str) -> list[Outgoing]:
        """Remove and return ``user_id``'s pending batch as a one-item list, or ``[]``."""
        pending = self._pending.pop(user_id, None)
        if pending is None:
            return []
        self.absorbed += pending.count
        self.batches += 1
        # Only the non-empty parts: a batch never carries orders (they are never held).
        data: dict[str, Any] = {}
        if pending.positions:
            data["positions"] = [pending.positions[s] for s in sorted(pending.positions)]
        if pending.account is not None:
            data["account"] = pending.account
        return [(user_id, EventType.BATCH.value, data, pending.first_at)]

    def _next_due(self, user_id: str, at: float) -> float:
        """The first end of ``user_id``'s windows after ``at`` (monotonic seconds)."""
        window = self.window_ms / 1000.0
        phase = (zlib.crc32(user_id.encode()) % 1024) / 1024.0 * window
        return at + (phase - at) % window or at + window

    def next_due(self) -> float | None:
        """When the earliest batch held is due (monotonic seconds), or None when none is held.

        Forgets heap entries of batches already taken early (an order went first).
        """
        heap = self._due
        while heap:
            due, _, user_id = heap[0]
            pending = self._pending.get(user_id)
            if pending is not None and pending.due == due:
                return due
            heapq.heappop(heap)
        return None

    def drain_due(self, now: float) -> list[Outgoing]:
        """Remove and return the batches due at ``now`` (monotonic seconds), earliest first."""
        out: list[Outgoing] = []
        heap = self._due
        while heap and heap[0][0] <= now:
            due, _, user_id = heapq.heappop(heap)
            pending = self._pending.get(user_id)
            if pending is not None and pending.due == due:  # else taken early (an order went)
                out.extend(self.take(user_id))
        return out

    def drain(self) -> list[Outgoing]:
        """Remove and return every user's pending batch, due or not (shutdown, tests)."""
        self._due.clear()
        out: list[Outgoing] = []
        for user_id in list(self._pending):
            out.extend(self.take(user_id))
        return out

    def pending_users(self) -> int:
        """Number of users with a batch waiting."""
        return len(self._pending)
