"""Parsing of client→server messages on ``/ws/portfolio``: the one place a frame is parsed.

Pure and socket-free. :func:`parse_client_message` turns a frame into a :class:`ClientMessage`
or raises :class:`ProtocolError` whose ``code`` is the ``error.code`` sent back to the client
(see ``docs/protocol.md``). Message shape, from the design document's ``ClientMessage``::

    {"type": "subscribe" | "unsubscribe" | "ping",
     "channels"?: ["positions" | "orders" | "account" | "trades"],
     "symbols"?: ["AAPL", ...] | null,
     "lastSeq"?: int, "epoch"?: str}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ujson

from streaming.events import Channel

__all__ = ["ClientMessage", "ProtocolError", "parse_client_message", "parse_symbols", "MAX_SYMBOLS"]

#: Upper bound on ``symbols`` in one message, so a client cannot make filtering expensive.
MAX_SYMBOLS = 500
_TYPES = ("subscribe", "unsubscribe", "ping")


class ProtocolError(ValueError):
    """A client message was rejected; ``code`` is the wire ``error.code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ClientMessage:
    """A parsed client message.

    Attributes:
        type: ``subscribe``, ``unsubscribe`` or ``ping``.
        channels: the channels named (empty for ``ping``).
        symbols: upper-cased symbols, or None for "all symbols".
        symbols_given: whether the message had a ``symbols`` key at all; a later ``subscribe``
            replaces the connection's filter only then (``null`` clears it, absent keeps it).
        last_seq: the last ``seq`` the client saw on an earlier connection, or None.
        epoch: the epoch that ``last_seq`` belongs to, or None.
    """

    type: str
    channels: frozenset[Channel] = frozenset()
    symbols: frozenset[str] | None = None
    last_seq: int | None = None
    epoch: str | None = None
    symbols_given: bool = False


def _channels(value: Any) -> frozenset[Channel]:
    if not isinstance(value, list) or not value:
        raise ProtocolError("invalid_field", "channels must be a non-empty array of strings")
    out = set()
    for item in value:
        if not isinstance(item, str):
            raise ProtocolError("invalid_field", "channels must be a non-empty array of strings")
        try:
            out.add(Channel(item))
        except ValueError:
            allowed = ", ".join(c.value for c in Channel)
            raise ProtocolError(
                "unknown_channel", f"unknown channel {item!r} (allowed: {allowed})"
            ) from None
    return frozenset(out)


def parse_symbols(value: Any) -> frozenset[str] | None:
    """Validate a symbol filter: a list of at most :data:`MAX_SYMBOLS` ticker symbols, or None.

    Args:
        value: the decoded JSON value (or a list of strings from a query string).

    Returns:
        The upper-cased symbols, or None ("all symbols") for None.

    Raises:
        ProtocolError: ``invalid_field`` naming the bad symbol or the shape.
    """
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_SYMBOLS:
        raise ProtocolError(
            "invalid_field", f"symbols must be an array of at most {MAX_SYMBOLS} strings or null"
        )
    out = set()
    for item in value:
        if (
            not isinstance(item, str)
            or not 0 < len(item) <= 16
            or not all(c.isalnum() or c in "./-" for c in item)
        ):
            raise ProtocolError("invalid_field", f"symbols: {item!r} is not a ticker symbol")
        out.add(item.upper())
    return frozenset(out)


def parse_client_message(frame: str | bytes) -> ClientMessage:
    """Parse one WebSocket frame from a client.

    Args:
        frame: the frame payload; ``bytes`` means a binary frame.

    Returns:
        The :class:`ClientMessage`.

    Raises:
        ProtocolError: ``binary_not_supported``, ``invalid_json``, ``unknown_type``,
            ``unknown_channel`` or ``invalid_field``, with a message naming the problem.
    """
    if isinstance(frame, bytes):
        raise ProtocolError(
            "binary_not_supported", "binary frames are not supported; send JSON text"
        )
    try:
        raw = ujson.loads(frame)
    except (ValueError, OverflowError):
        raise ProtocolError("invalid_json", "message is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ProtocolError("invalid_json", "message must be a JSON object")
    kind = raw.get("type")
    if kind not in _TYPES:
        raise ProtocolError(
            "unknown_type", f"unknown message type {kind!r} (allowed: {', '.join(_TYPES)})"
        )
    if kind == "ping":
        return ClientMessage("ping")
    channels = _channels(raw.get("channels"))
    symbols = parse_symbols(raw.get("symbols"))
    last_seq, epoch = raw.get("lastSeq"), raw.get("epoch")
    if last_seq is not None and (
        isinstance(last_seq, bool) or not isinstance(last_seq, int) or last_seq < 0
    ):
        raise ProtocolError("invalid_field", "lastSeq must be a non-negative integer")
    if epoch is not None and not isinstance(epoch, str):
        raise ProtocolError("invalid_field", "epoch must be a string")
    if (last_seq is None) != (epoch is None):
        raise ProtocolError("invalid_field", "lastSeq and epoch must be given together")
    if kind == "unsubscribe" and "symbols" in raw:
        raise ProtocolError("invalid_field", "unsubscribe takes channels only, not symbols")
    return ClientMessage(kind, channels, symbols, last_seq, epoch, symbols_given="symbols" in raw)
