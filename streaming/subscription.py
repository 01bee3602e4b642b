"""What one connection asked to see, and the filter that applies it to an event. Pure.

A connection receives a stream event only if it subscribed to the event's channel and, for the
symbol-bearing channels (positions, orders, trades), the symbol is in its filter (or it has none).
``account`` is never filtered by symbol; ``status`` always passes. A ``batch`` carries only its
non-empty parts and is cut down to the parts the connection may see; a batch with nothing left is
not sent. When nothing is cut the original ``data`` object is returned, so the hub can encode it
once for every connection that shares it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streaming.events import CHANNEL_OF, Channel, EventType
from streaming.frames import PreparedMessage

__all__ = ["Subscription", "filter_data"]

_BATCH_CHANNELS = frozenset({Channel.POSITIONS, Channel.ORDERS, Channel.ACCOUNT})


@dataclass
class Subscription:
    """Channels and symbol filter of one connection (empty channels: receives no stream event)."""

    channels: set[Channel] = field(default_factory=set)
    symbols: frozenset[str] | None = None
    #: While a subscribe is answered (snapshot or replay), live frames wait here as
    #: ``(seq, prepared message)`` so they cannot overtake it; None the rest of the time.
    held: list[tuple[int, PreparedMessage]] | None = None

    def wants_symbol(self, symbol: str) -> bool:
        """True when ``symbol`` passes this connection's symbol filter."""
        return self.symbols is None or symbol.upper() in self.symbols


def filter_data(sub: Subscription, type_: str, data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Apply a subscription to one stream event.

    Args:
        sub: the connection's subscription.
        type_: the event type.
        data: the event data (wire shape).

    Returns:
        The data to send (``data`` itself when nothing was cut, a reduced copy for a ``batch``),
        or None when the connection must not receive this event.
    """
    if type_ == EventType.STATUS:
        return data
    if type_ == EventType.BATCH:
        every = _BATCH_CHANNELS <= sub.channels
        if every and sub.symbols is None and data and all(data.values()):
            return data  # nothing to cut: every such connection shares one encoded frame
        out: dict[str, Any] = {}
        if Channel.POSITIONS in sub.channels:
            positions = [p for p in data.get("positions") or [] if sub.wants_symbol(p["symbol"])]
            if positions:
                out["positions"] = positions
        if Channel.ORDERS in sub.channels:
            orders = [o for o in data.get("orders") or [] if sub.wants_symbol(o["symbol"])]
            if orders:
                out["orders"] = orders
        if Channel.ACCOUNT in sub.channels and data.get("account"):
            out["account"] = data["account"]
        return out or None
    channel = CHANNEL_OF.get(type_)
    if channel is None or channel not in sub.channels:
        return None
    if channel is not Channel.ACCOUNT and not sub.wants_symbol(str(data.get("symbol", ""))):
        return None
    return data
