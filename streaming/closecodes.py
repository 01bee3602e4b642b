"""WebSocket close codes used by ``/ws/portfolio``, named (RFC 6455 §7.4).

Standard codes are 1000–1015; ours live in 4000–4999 (the range RFC 6455 §7.4.2 reserves for
applications). :attr:`CloseCode.reconnect` tells a client whether reconnecting can help.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CloseCode"]


class CloseCode(IntEnum):
    """Close codes and what each tells the client to do."""

    #: Normal closure (RFC 6455).
    NORMAL = 1000
    #: The server is shutting down or restarting (RFC 6455): reconnect with backoff.
    GOING_AWAY = 1001
    #: Protocol error (RFC 6455): a frame broke RFC 6455 (unmasked, reserved opcode or bits,
    #: stray continuation, bad close code); see handlers/ws_strict.py.
    PROTOCOL_ERROR = 1002
    #: Invalid frame payload data (RFC 6455): a text message that is not valid UTF-8.
    INVALID_DATA = 1007
    #: Policy violation (RFC 6455): ``Maximum connections exceeded`` or ``Rate limit exceeded``.
    POLICY_VIOLATION = 1008
    #: A frame over ``MAX_MESSAGE_BYTES`` (64 KiB) (RFC 6455).
    MESSAGE_TOO_BIG = 1009
    #: An unexpected server error (RFC 6455): reconnect with backoff.
    INTERNAL_ERROR = 1011
    #: No frame from the client for ``HEARTBEAT_TIMEOUT_S``: reconnect with backoff.
    HEARTBEAT_TIMEOUT = 4000
    #: The session was revoked (logout) or expired: log in again, do not retry.
    SESSION_REVOKED = 4001
    #: The client could not keep up (back-pressure): reconnect and take a snapshot.
    SLOW_CONSUMER = 4002

    @property
    def reconnect(self) -> bool:
        """True when a client should reconnect (with backoff) after this code."""
        return self not in (
            CloseCode.PROTOCOL_ERROR,
            CloseCode.INVALID_DATA,
            CloseCode.SESSION_REVOKED,
            CloseCode.POLICY_VIOLATION,
            CloseCode.MESSAGE_TOO_BIG,
        )
