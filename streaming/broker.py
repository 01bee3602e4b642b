"""The bus between event producers and the connections: the broker interface.

A broker owns each user's *stream*: an ordered log of stream events numbered by ``seq``. Its
contract, which every engine keeps:

- :meth:`Broker.publish` assigns the user's next ``seq``, saves the publication to the user's
  history and hands it to the handler set by :meth:`Broker.set_handler`. Saving and publishing
  are atomic per user: subscribers see a user's publications in ``seq`` order, without gaps,
  unless history was lost, in which case the ``epoch`` changes.
- :meth:`Broker.recover` returns the publications after a given ``(seq, epoch)`` position if all
  of them are still held, or None when they are not (the client must then take a snapshot).
  Recovery can never silently skip events.
- The *fills ledger*: publishing a ``trade_executed`` event records its execution id and fill
  time in the user's ledger (the newest :data:`FILLS_LEDGER_SIZE` kept) **atomically with the
  publication**: a fill is recorded if and only if its event was published. The ledger lives
  and dies with the history (a new epoch starts it empty). :meth:`Broker.published_fills` reads
  it; a bridge taking a broker account over catches up from it (``docs/catchup.md``).

Engines: :class:`streaming.memory_broker.MemoryBroker` (one process only; history lives and dies
with the process) and :class:`streaming.redis_broker.RedisBroker` (streams shared by every
process through Redis).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from streaming.events import EventType, envelope

__all__ = [
    "FILLS_LEDGER_SIZE",
    "Broker",
    "BrokerUnavailable",
    "PublishedFills",
    "Publication",
    "PublicationHandler",
    "fill_record",
    "ms_to_datetime",
]

#: Fills kept per user in the fills ledger (the newest by fill time).
FILLS_LEDGER_SIZE = 1000
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BrokerUnavailable(ConnectionError):
    """The engine's backing service (Redis) cannot be reached; the publish may be retried."""


@dataclass(frozen=True)
class Publication:
    """One stream event as published to a user's stream.

    Attributes:
        user_id: wire userId.
        seq: the event's number in the user's stream (1, 2, 3, …).
        epoch: the stream's epoch.
        type: a stream event type.
        data: the event data (wire shape).
        timestamp: ISO 8601 UTC time of publication.
        emitted_at: monotonic seconds when the underlying update entered the server (latency
            metrics; not sent).
    """

    user_id: str
    seq: int
    epoch: str
    type: str
    data: Mapping[str, Any]
    timestamp: str
    emitted_at: float = field(default=0.0, compare=False)

    def message(self, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Return the wire envelope, optionally with filtered ``data`` in place of the original."""
        return envelope(
            self.type,
            self.user_id,
            self.data if data is None else data,
            seq=self.seq,
            epoch=self.epoch,
            timestamp=self.timestamp,
        )


PublicationHandler = Callable[[Publication], None]


@dataclass(frozen=True)
class PublishedFills:
    """What a user's fills ledger holds: the executions published to the user's stream.

    Attributes:
        newest: fill time (aware UTC, millisecond precision) of the newest recorded execution,
            None when none is recorded in this epoch.
        ids: the execution ids recorded (at most :data:`FILLS_LEDGER_SIZE`, the newest).
        started_at: wall-clock time (aware UTC, ms) of the first publication of the current
            epoch, i.e. since when every execution should be in the stream; None when nothing
            has been published in it yet.
    """

    newest: datetime | None
    ids: frozenset[str]
    started_at: datetime | None


def fill_record(type_: str, data: Mapping[str, Any]) -> tuple[str, int] | None:
    """Return what the fills ledger records for a publication, or None when it records nothing.

    Args:
        type_: the stream event type.
        data: the event data (wire shape; ``TradeExecuted``: ``executionId``, ``timestamp``).

    Returns:
        ``(execution id, fill time in ms since the Unix epoch)`` for a ``trade_executed`` event
        that carries a non-empty ``executionId`` and an ISO 8601 ``timestamp``; else None (such
        an event is still published, just not recorded).
    """
    if type_ != EventType.TRADE_EXECUTED:
        return None
    execution_id, stamp = data.get("executionId"), data.get("timestamp")
    if not isinstance(execution_id, str) or not execution_id or not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return execution_id, (moment - _UNIX_EPOCH) // timedelta(milliseconds=1)


def ms_to_datetime(ms: float) -> datetime:
    """Return the aware UTC datetime of ``ms`` milliseconds since the Unix epoch."""
    return _UNIX_EPOCH + timedelta(milliseconds=int(ms))


class Broker(ABC):
    """Per-user ordered event streams with history. See the module docstring for the contract."""

    #: Whether this process's fan-out receives publications right now. An engine that can lose
    #: its backing service (Redis) keeps it up to date; the memory engine is always up. Read
    #: only by others (the stream manager's heartbeat tick tells the clients when it changes).
    connected: bool = True

    @abstractmethod
    def set_handler(self, handler: PublicationHandler) -> None:
        """Set the function called with every publication (the connection hub)."""

    @abstractmethod
    async def publish(
        self, user_id: str, type_: str, data: Mapping[str, Any], *, emitted_at: float = 0.0
    ) -> Publication:
        """Publish one stream event to ``user_id``'s stream.

        Args:
            user_id: wire userId.
            type_: a stream event type.
            data: event data in wire shape.
            emitted_at: monotonic seconds when the update entered the server.

        Returns:
            The publication, with its ``seq`` and ``epoch``.

        Raises:
            BrokerUnavailable: the backing service is unreachable and nothing was published
                (the caller keeps the event and retries).
        """

    @abstractmethod
    async def position(self, user_id: str) -> tuple[int, str]:
        """Return ``(last seq, epoch)`` of ``user_id``'s stream (seq 0 before any event)."""

    @abstractmethod
    async def recover(self, user_id: str, since_seq: int, epoch: str) -> list[Publication] | None:
        """Return the publications with ``seq > since_seq`` if none is missing, else None.

        Args:
            user_id: wire userId.
            since_seq: the last seq the client saw.
            epoch: the epoch the client saw it in.

        Returns:
            The publications in order (possibly empty), or None when the epoch differs or
            history no longer reaches back to ``since_seq + 1``.
        """

    @abstractmethod
    async def published_fills(self, user_id: str) -> PublishedFills:
        """Read ``user_id``'s fills ledger (see the module docstring).

        Returns:
            The :class:`PublishedFills` of the current epoch.

        Raises:
            BrokerUnavailable: the backing service is unreachable.
        """

    async def watch(self, user_id: str) -> None:  # noqa: B027 - optional hook
        """Make sure ``user_id``'s publications reach this process's handler from now on.

        Returns once they do, so a caller that then reads :meth:`position` misses nothing
        published after that position. Idempotent. Engines that deliver every publication
        to every handler anyway (the memory engine) do nothing.
        """

    def unwatch(self, user_id: str) -> None:  # noqa: B027 - optional hook
        """Stop delivering ``user_id``'s publications here (its last connection went away)."""

    async def acquire_slot(self, user_id: str, slot: str, limit: int) -> bool:
        """Take one of ``user_id``'s ``limit`` connection slots for the whole deployment (REQ-3).

        Args:
            user_id: wire userId.
            slot: a name for this connection, unique across processes.
            limit: ``MAX_CONNECTIONS_PER_USER``.

        Returns:
            False when the user already holds ``limit`` slots anywhere. Engines serving one
            process (the memory engine) always answer True: the hub's own count is the limit.
        """
        return True

    def release_slot(self, user_id: str, slot: str) -> None:  # noqa: B027 - optional hook
        """Give back a slot taken with :meth:`acquire_slot` (idempotent, never blocks)."""

    #: True when connection slots live outside this process and expire unless renewed.
    shares_slots = False

    async def refresh_slots(self, slots: list[tuple[str, str]]) -> None:  # noqa: B027
        """Keep this process's ``(user_id, slot)`` pairs alive (slots of a dead process expire)."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect to the backing service, if any."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""
