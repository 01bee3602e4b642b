"""The connection hub: who is connected, and the one place stream events are sent.

Two indexes, kept up to date as connections come and go (so counts for metrics are free):
user → connections and session id → connections. :meth:`Hub.deliver` fans a publication out to
the connections of its user only (REQ-2), filtered by each connection's subscription; identical
filtered payloads are encoded once.

The hub is socket-free: it talks to connections through the :class:`Client` protocol, which the
Tornado handler implements and tests can fake.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from streaming.broker import Publication
from streaming.events import encode
from streaming.subscription import Subscription, filter_data

__all__ = ["Client", "Hub"]

log = logging.getLogger(__name__)


class Client(Protocol):
    """What the hub needs of one WebSocket connection.

    Attributes:
        user_id: the authenticated user's wire userId.
        sid: the session id the connection was opened with.
        subscription: what the connection subscribed to.
        last_seen: monotonic seconds of the last frame received (heartbeat accounting).
        last_ping: monotonic seconds of the last ping sent.
        expires_at: unix seconds when the session expires (0: never); the heartbeat closes
            the connection with 4001 then.
    """

    user_id: str
    sid: str
    subscription: Subscription
    last_seen: float
    last_ping: float
    expires_at: float

    def send(self, text: str) -> bool:
        """Queue ``text`` for the socket; return False if the connection is gone or overloaded."""
        ...

    def ping(self) -> None:
        """Send a WebSocket ping frame (RFC 6455 §5.5.2)."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Close with a close code from :class:`streaming.closecodes.CloseCode`."""
        ...


class Hub:
    """Registry of live connections with per-user limits.

    Args:
        max_per_user: the most concurrent connections one user may hold (REQ-3).
    """

    def __init__(self, max_per_user: int) -> None:
        self.max_per_user = max_per_user
        self._by_user: dict[str, set[Client]] = {}
        self._by_session: dict[str, set[Client]] = {}
        self.delivered = 0

    def add(self, client: Client) -> bool:
        """Register ``client``; return False (and register nothing) if its user is at the limit."""
        conns = self._by_user.setdefault(client.user_id, set())
        if len(conns) >= self.max_per_user:
            if not conns:
                del self._by_user[client.user_id]
            return False
        conns.add(client)
        self._by_session.setdefault(client.sid, set()).add(client)
        return True

    def remove(self, client: Client) -> None:
        """Unregister ``client`` (idempotent), freeing its slot."""
        for index, key in ((self._by_user, client.user_id), (self._by_session, client.sid)):
            conns = index.get(key)
            if conns is not None:
                conns.discard(client)
                if not conns:
                    del index[key]

    def connections(self, user_id: str) -> set[Client]:
        """Return a copy of ``user_id``'s live connections."""
        return set(self._by_user.get(user_id, ()))

    def all(self) -> list[Client]:
        """Return every live connection."""
        return [c for conns in self._by_user.values() for c in conns]

    def users(self) -> list[str]:
        """Return the userIds with at least one connection."""
        return list(self._by_user)

    def count(self) -> int:
        """Return the number of live connections."""
        return sum(len(c) for c in self._by_user.values())

    def deliver(self, pub: Publication) -> int:
        """Send ``pub`` to each of its user's connections that subscribed to it.

        Returns:
            The number of connections the event was sent to.
        """
        sent = 0
        # Keyed by id(); the dict object is kept alive next to its text so an id is never
        # reused by another connection's freshly filtered batch within this loop.
        encoded: dict[int, tuple[object, str]] = {}
        for client in self._by_user.get(pub.user_id, ()):
            data = filter_data(client.subscription, pub.type, pub.data)
            if data is None:
                continue
            cached = encoded.get(id(data))
            if cached is None:
                text = encode(pub.message(data))
                encoded[id(data)] = (data, text)
            else:
                text = cached[1]
            held = client.subscription.held
            if held is not None:
                held.append((pub.seq, text))
                sent += 1
                continue
            if client.send(text):
                sent += 1
        self.delivered += sent
        return sent

    def close_session(self, sid: str, code: int, reason: str) -> int:
        """Close every connection opened with session ``sid``; return how many."""
        conns = list(self._by_session.get(sid, ()))
        for client in conns:
            client.close(code, reason)
        return len(conns)

    def close_all(self, code: int, reason: str, clients: Iterable[Client] | None = None) -> None:
        """Close ``clients`` (default: every connection) with ``code``."""
        for client in list(clients if clients is not None else self.all()):
            client.close(code, reason)
