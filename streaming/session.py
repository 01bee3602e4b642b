"""One connection's state, separate from its socket.

As Centrifuge separates its ``Client`` from the ``Transport`` a server implements, a
:class:`Session` holds what the stream core knows of a connection: who it is (user, session id,
when that session expires), what it subscribed to (and the frames held while a subscribe is
answered, in its :class:`~streaming.subscription.Subscription`), its heartbeat times and its
deployment-wide connection slot. It reaches the socket only through a :class:`Transport`: three
methods the Tornado handler (:class:`handlers.ws.PortfolioSocket`) implements and tests fake.

The :class:`~streaming.hub.Hub` holds sessions, and is the only place one is removed
(:meth:`StreamManager.disconnect <streaming.manager.StreamManager.disconnect>` asks it).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

from streaming.frames import PreparedMessage
from streaming.subscription import Subscription

__all__ = ["Sent", "Session", "Transport"]


class Sent(IntEnum):
    """What became of one :meth:`Transport.send`."""

    #: Queued on the socket.
    OK = 0
    #: The connection is closed or closing; nothing to do.
    CLOSED = 1
    #: More than ``MAX_BUFFERED_BYTES`` wait unsent (the client stopped reading): not queued;
    #: the caller closes the connection with 4002 once it is done iterating.
    OVERLOADED = 2


class Transport(Protocol):
    """What the core needs of a socket (RFC 6455 frames)."""

    def send(self, message: PreparedMessage) -> Sent:
        """Queue the message, without closing anything (see :class:`Sent`)."""
        ...

    def ping(self) -> None:
        """Send a ping frame (RFC 6455 §5.5.2); a closed socket is ignored."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with a :class:`~streaming.closecodes.CloseCode`."""
        ...


class Session:
    """One authenticated connection, socket-free.

    Args:
        transport: the socket.
        user_id: the authenticated user's wire userId.
        sid: the login session the connection was opened with (revoking it closes this).
        expires_at: unix seconds when that login session expires (0: never); the heartbeat
            closes the connection with 4001 then.
        conn_id: a name for log lines, unique within the process.

    Attributes:
        subscription: channels, symbol filter, and frames held while a subscribe is answered.
        last_seen: monotonic seconds of the last frame received (any frame counts as life).
        last_ping: monotonic seconds of the last ping sent.
        ping_unanswered: monotonic seconds of the oldest ping not answered yet, or None.
        opened_at: monotonic seconds it was registered with the hub; None before and after.
        heartbeat_due: monotonic seconds of its next heartbeat check (ping or timeout), the
            manager's schedule.
        slot: its deployment-wide connection slot (REQ-3 across processes), or None.
    """

    __slots__ = (
        "transport",
        "user_id",
        "sid",
        "expires_at",
        "conn_id",
        "subscription",
        "last_seen",
        "last_ping",
        "ping_unanswered",
        "opened_at",
        "slot",
        "heartbeat_due",
    )

    def __init__(
        self,
        transport: Transport,
        user_id: str,
        sid: str,
        *,
        expires_at: float = 0.0,
        conn_id: str = "",
    ) -> None:
        self.transport = transport
        self.user_id = user_id
        self.sid = sid
        self.expires_at = expires_at
        self.conn_id = conn_id
        self.subscription = Subscription()
        self.last_seen = 0.0
        self.last_ping = 0.0
        self.ping_unanswered: float | None = None
        self.opened_at: float | None = None
        self.slot: str | None = None
        self.heartbeat_due = 0.0

    def send(self, message: PreparedMessage) -> Sent:
        """Queue a prepared frame on the socket (see :class:`Sent`)."""
        return self.transport.send(message)

    def ping(self) -> None:
        """Send a ping frame."""
        self.transport.ping()

    def close(self, code: int, reason: str) -> None:
        """Close the socket with ``code``; :meth:`StreamManager.disconnect` unregisters it."""
        self.transport.close(code, reason)

    def __repr__(self) -> str:
        return f"Session(user_id={self.user_id!r}, conn_id={self.conn_id!r})"
