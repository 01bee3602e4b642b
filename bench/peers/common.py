"""What both bench peers share: the hook's input, token auth, the event envelope.

The peers get exactly what folio-stream gets: ``POST /internal/events`` with
``Authorization: Bearer <token>`` and ``{"userId", "type", "data"}``, answered ``202
{"accepted": true}``. Each user has its own ``seq`` (1, 2, …) and every event goes out as the same
envelope folio-stream sends (``type``, ``timestamp``, ``userId``, ``seq``, ``epoch``, ``data``), so
the three servers move the same bytes before compression.

Connections authenticate with a token, ``hmac_sha256(BENCH_PEER_SECRET, userId)`` in hex
(:func:`user_token`); the known users come from ``BENCH_PEER_USERS`` (comma-separated userIds).
Minimal on purpose: enough that a wrong token is refused, nothing more.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

HOOK_PATH = "/internal/events"
EPOCH = "peer"


def user_token(secret: str, user_id: str) -> str:
    """The connection token of ``user_id``: hex HMAC-SHA256 of the userId under ``secret``."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


class Users:
    """Known users, their tokens and per-user sequence numbers (from the environment)."""

    def __init__(self) -> None:
        self.secret = os.environ["BENCH_PEER_SECRET"]
        self.hook_token = os.environ.get("BENCH_PEER_HOOK_TOKEN", "bench")
        self.seq = {u: 0 for u in os.environ.get("BENCH_PEER_USERS", "").split(",") if u}
        self._by_token = {user_token(self.secret, u): u for u in self.seq}

    def verify(self, token: Any) -> str | None:
        """Return the userId of ``token``, or None."""
        return self._by_token.get(token) if isinstance(token, str) else None

    def snapshot(self, user_id: str) -> dict[str, Any]:
        """The first message of a connection: its user's current seq (nothing else)."""
        return {"type": "snapshot", "userId": user_id, "seq": self.seq[user_id], "epoch": EPOCH}

    def accept(self, body: bytes, authorization: str) -> tuple[int, dict[str, Any] | None]:
        """Check one hook request; return ``(HTTP status, envelope to send or None)``."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.hook_token.encode()
        ):
            return 401, None
        try:
            event = json.loads(body)
            user_id, type_, data = event["userId"], event["type"], event["data"]
        except (ValueError, KeyError, TypeError):
            return 400, None
        if not isinstance(type_, str) or not isinstance(data, dict):
            return 400, None
        if user_id not in self.seq:
            return 404, None
        self.seq[user_id] += 1
        return 202, {
            "type": type_,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "userId": user_id,
            "seq": self.seq[user_id],
            "epoch": EPOCH,
            "data": data,
        }


_REASONS = {202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


async def serve_hook(
    host: str, port: int, users: Users, publish: Callable[[dict[str, Any]], None]
) -> asyncio.Server:
    """A minimal HTTP/1.1 keep-alive server for ``POST /internal/events`` (Content-Length only).

    ``publish(envelope)`` is called for every accepted event before the 202 is written.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if method != "POST" or path != HOOK_PATH:
                    status, envelope = 404, None
                else:
                    status, envelope = users.accept(body, headers.get("authorization", ""))
                if envelope is not None:
                    publish(envelope)
                reply = b'{"accepted": true}' if status == 202 else b"{}"
                head_out = (
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(reply)}\r\n\r\n"
                )
                writer.write(head_out.encode() + reply)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
