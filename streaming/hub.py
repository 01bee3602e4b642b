"""The connection hub: who is connected, and the one place stream events are sent.

Two indexes, kept up to date as connections come and go (so counts for metrics are free):
user → connections and session id → connections. :meth:`Hub.deliver` fans a publication out to
the connections of its user only (REQ-2), filtered by each connection's subscription; each
distinct filtered payload is encoded, compressed and framed once
(:class:`streaming.frames.PreparedMessage`) and the same bytes go to every connection that wants
it. Delivery never closes or unregisters anything while it iterates: connections that could not
keep up are returned, and the caller closes them (4002) after the loop, so every other tab of the
user still gets the event.

The hub is socket-free: it holds :class:`~streaming.session.Session` s, which reach their socket
through the three-method :class:`~streaming.session.Transport` the Tornado handler implements.
It is the only place a connection is removed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from streaming.broker import Publication
from streaming.events import CHANNEL_OF, Channel, EventType, encode
from streaming.frames import PreparedMessage
from streaming.session import Sent, Session
from streaming.subscription import filter_data

__all__ = ["Hub"]

log = logging.getLogger(__name__)

#: The channels whose parts a ``batch`` carries (a connection with all of them and no symbol
#: filter gets every complete batch as it is).
_BATCH_CHANNELS = frozenset({Channel.POSITIONS, Channel.ORDERS, Channel.ACCOUNT})


class Hub:
    """Registry of live connections with per-user limits.

    Args:
        max_per_user: the most concurrent connections one user may hold (REQ-3).
    """

    def __init__(self, max_per_user: int) -> None:
        self.max_per_user = max_per_user
        self._by_user: dict[str, set[Session]] = {}
        self._by_session: dict[str, set[Session]] = {}
        self.delivered = 0

    def add(self, client: Session) -> bool:
        """Register ``client``; return False (and register nothing) if its user is at the limit."""
        conns = self._by_user.setdefault(client.user_id, set())
        if len(conns) >= self.max_per_user:
            if not conns:
                del self._by_user[client.user_id]
            return False
        conns.add(client)
        self._by_session.setdefault(client.sid, set()).add(client)
        return True

    def remove(self, client: Session) -> None:
        """Unregister ``client`` (idempotent), freeing its slot."""
        for index, key in ((self._by_user, client.user_id), (self._by_session, client.sid)):
            conns = index.get(key)
            if conns is not None:
                conns.discard(client)
                if not conns:
                    del index[key]

    def holds(self, user_id: str) -> bool:
        """True when ``user_id`` has at least one live connection here."""
        return user_id in self._by_user

    def connections(self, user_id: str) -> set[Session]:
        """Return a copy of ``user_id``'s live connections."""
        return set(self._by_user.get(user_id, ()))

    def all(self) -> list[Session]:
        """Return every live connection."""
        return [c for conns in self._by_user.values() for c in conns]

    def users(self) -> list[str]:
        """Return the userIds with at least one connection."""
        return list(self._by_user)

    def count(self) -> int:
        """Return the number of live connections."""
        return sum(len(c) for c in self._by_user.values())

    def deliver(self, pub: Publication) -> tuple[int, list[Session]]:
        """Send ``pub`` to each of its user's connections that subscribed to it.

        Each distinct filtered payload becomes one :class:`PreparedMessage` (encoded,
        compressed and framed once), whose bytes every matching connection gets. Connections
        in the middle of a ``subscribe`` hold the message until their snapshot or replay is out.

        Returns:
            ``(sent, overloaded)``: how many connections the event went to, and those that
            refused it under back-pressure (:attr:`Sent.OVERLOADED`), for the caller to close
            with 4002 now that the loop is over.
        """
        sent = 0
        overloaded: list[Session] = []
        clients = self._by_user.get(pub.user_id)
        if not clients:
            return 0, overloaded
        type_, data = pub.type, pub.data
        # What every connection without a symbol filter gets, decided once per publication
        # instead of once per connection (filter_data's rules; tests/streaming/test_hub.py
        # checks both agree): the data itself when its channel is subscribed, or, for a batch,
        # when every part is non-empty and all of its channels are subscribed.
        channel = CHANNEL_OF.get(type_)
        if type_ == EventType.STATUS:
            whole: frozenset[Channel] | None = frozenset()
        elif type_ == EventType.BATCH:
            whole = _BATCH_CHANNELS if data and all(data.values()) else None
        else:
            whole = None if channel is None else frozenset((channel,))
        shared: PreparedMessage | None = None
        # Keyed by id(); the data object is kept alive next to its message so an id is never
        # reused by another connection's freshly filtered batch within this loop.
        prepared: dict[int, tuple[object, PreparedMessage]] = {}
        for client in tuple(clients):
            sub = client.subscription
            if whole is not None and sub.symbols is None and whole <= sub.channels:
                if shared is None:
                    shared = PreparedMessage(encode(pub.message(data)))
                    prepared[id(data)] = (data, shared)
                message = shared
            else:
                filtered = filter_data(sub, type_, data)
                if filtered is None:
                    continue
                cached = prepared.get(id(filtered))
                if cached is None:
                    message = PreparedMessage(encode(pub.message(filtered)))
                    prepared[id(filtered)] = (filtered, message)
                    if filtered is data:
                        shared = message
                else:
                    message = cached[1]
            held = sub.held
            if held is not None:
                held.append((pub.seq, message))
                sent += 1
                continue
            result = client.send(message)
            if result is Sent.OK:
                sent += 1
            elif result is Sent.OVERLOADED:
                overloaded.append(client)
        self.delivered += sent
        return sent, overloaded

    def close_session(self, sid: str, code: int, reason: str) -> int:
        """Close every connection opened with session ``sid``; return how many."""
        conns = list(self._by_session.get(sid, ()))
        for client in conns:
            client.close(code, reason)
        return len(conns)

    def close_all(self, code: int, reason: str, clients: Iterable[Session] | None = None) -> None:
        """Close ``clients`` (default: every connection) with ``code``."""
        for client in list(clients if clients is not None else self.all()):
            client.close(code, reason)
