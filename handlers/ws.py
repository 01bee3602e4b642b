"""``/ws/portfolio``: the trader's WebSocket. Thin: authorise, parse, delegate to the manager.

Before the upgrade (no socket is opened when refused):

- no valid, unrevoked ``session`` cookie → HTTP 401 (REQ-1);
- an ``Origin`` outside ``ALLOWED_ORIGINS`` → HTTP 403 (:meth:`check_origin`; cookie-authenticated
  WebSockets are open to cross-site hijacking otherwise);
- more than ``WS_UPGRADE_BURST`` upgrade attempts from one address at once (refilled at
  ``WS_UPGRADE_RATE`` a second) → HTTP 429 with ``Retry-After``, before the session is looked up;
- with ``ENABLE_REALTIME_PORTFOLIO=false`` this handler is not routed at all (404).

After it: the user's 6th connection gets an ``error`` ``max_connections`` and is closed with 1008
(REQ-3). Frames over ``MAX_MESSAGE_BYTES`` are closed with 1009 by Tornado
(``websocket_max_message_size``). Frames breaking RFC 6455 are closed with 1002 or 1007
(:mod:`handlers.ws_strict`). More than ``WS_MESSAGE_BURST`` messages at once (refilled at
``WS_MESSAGE_RATE`` a second) get an ``error`` ``rate_limited``; a client refused again within
10 s of that warning (still sending while over the limit) is closed with 1008. A ``subscribe``
with ``lastSeq`` while the previous replay is still being written to the socket, or beyond
``REPLAY_BURST`` replays at once (refilled at ``REPLAY_RATE`` a second), gets an ``error``
``replay_in_progress`` (one replay in flight per connection, no replay amplification). Every
other bad frame gets an ``error`` and the connection stays open. Exceptions in message handling
are logged and close only this connection with 1011.

Sending: every server→client message is a :class:`streaming.frames.PreparedMessage`, written by
:mod:`handlers.tornado_ws` (permessage-deflate negotiated without context takeover, so an idle
tab keeps no compressor and one compressed frame serves every tab).

Back-pressure: if a client stops reading and more than ``MAX_BUFFERED_BYTES`` pile up in its
socket's write buffer, :meth:`PortfolioSocket.send` refuses the message and the manager closes
the connection with 4002 rather than letting server memory grow.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol

from handlers.base import Context
from handlers.headers import apply_security_headers
from handlers.tornado_ws import PreparedFrameProtocol, prepared_protocol
from handlers.ws_strict import StrictFramesMixin
from storage.db import StorageError
from streaming.auth import COOKIE_NAME
from streaming.closecodes import CloseCode
from streaming.events import EventType
from streaming.frames import PreparedMessage
from streaming.protocol import ProtocolError, parse_client_message
from streaming.ratelimit import TokenBucket, retry_after_header
from streaming.session import Sent, Session

__all__ = ["PortfolioSocket", "MAX_BUFFERED_BYTES"]

log = logging.getLogger(__name__)

#: Bytes allowed to wait in one connection's write buffer before it is closed with 4002.
MAX_BUFFERED_BYTES = 4 * 1024 * 1024
#: Replays (``subscribe`` with ``lastSeq``) one connection may ask for: a burst of 3, then one
#: a second — a reconnecting client needs one; more is replay amplification (issue 7).
REPLAY_RATE, REPLAY_BURST = 1.0, 3
#: Seconds a ``rate_limited`` warning counts: refused again within them, the socket is closed.
RATE_WARNING_S = 10.0


class FolioProtocol(StrictFramesMixin, PreparedFrameProtocol):
    """The protocol of ``/ws/portfolio``: strict reading, prepared writing.

    Frames from clients are checked strictly (1002/1007, :mod:`handlers.ws_strict`); frames to
    clients are written prepared (:mod:`handlers.tornado_ws`).
    """


#: Connection ids (``connId`` on log lines): unique within the process.
_conn_ids = itertools.count(1)


class PortfolioSocket(WebSocketHandler):
    """One trader connection: the :class:`~streaming.session.Transport` of its session.

    The connection's state (user, subscription, heartbeat times, slot) is its
    :class:`~streaming.session.Session`, which the manager and the hub hold; this handler
    authorises, parses frames and writes them.
    """

    session: Session

    @property
    def ctx(self) -> Context:
        """The application :class:`~handlers.base.Context`."""
        ctx: Context = self.application.settings["ctx"]
        return ctx

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Authorise the upgrade request, then upgrade.

        429 over the per-address upgrade rate, 401 without a valid session.
        """
        upgrades = self.ctx.upgrades
        if upgrades is not None and not upgrades.take(self.request.remote_ip or ""):
            self.ctx.manager.metrics.http_refused.labels(reason="upgrade_rate").inc()
            self.set_status(429)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.set_header("Retry-After", retry_after_header(1.0))
            self.finish(
                '{"error": {"code": "too_many_attempts", '
                '"message": "too many connection attempts: wait before trying again"}}'
            )
            return
        origin = self.request.headers.get("Origin")
        if origin is not None and not self.check_origin(origin):
            # Checked here, not only by Tornado: since 6.6 Tornado skips check_origin when
            # Origin matches Host or Sec-Fetch-Site says same-origin (DNS rebinding passes both).
            self.set_status(403)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish('{"error": {"code": "bad_origin", "message": "origin not allowed"}}')
            return
        try:
            auth = await self.ctx.auth.verify(self.get_cookie(COOKIE_NAME))
        except StorageError:
            self.ctx.manager.metrics.storage_errors.inc()
            self.set_status(503)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish('{"error": {"code": "storage_unavailable", "message": "try again later"}}')
            return
        if auth is None:
            self.ctx.manager.metrics.reject("unauthorized")
            self.set_status(401)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish('{"error": {"code": "unauthorized", "message": "login required"}}')
            return
        self.session = Session(
            self,
            auth.user.user_id,
            auth.sid,
            expires_at=auth.expires_at,
            conn_id=f"c{next(_conn_ids)}",
        )
        self._registered = False
        await super().get(*args, **kwargs)

    def set_default_headers(self) -> None:
        """Security headers on the refusals (401/403/429 JSON) too (issue 7)."""
        apply_security_headers(self)

    def check_origin(self, origin: str) -> bool:
        """Accept only an ``Origin`` exactly in ``ALLOWED_ORIGINS`` (default: the server's own).

        Exact string comparison: no trailing-slash, case or other header (``Host``,
        ``X-Forwarded-Host``) can widen it. Requests without ``Origin`` are not from a browser
        (browsers always send it on upgrades), so cross-site hijacking does not apply to them.
        A refusal is counted in ``folio_ws_rejects_total{reason="bad_origin"}``.
        """
        if origin in self.ctx.settings.origins():
            return True
        self.ctx.manager.metrics.reject("bad_origin")
        return False

    def get_compression_options(self) -> dict[str, Any] | None:
        """Enable permessage-deflate (RFC 7692): portfolio JSON compresses well."""
        return {}

    async def open(self, *args: str, **kwargs: str) -> None:
        """Register with the manager, or refuse a connection over the per-user limit."""
        self.set_nodelay(True)
        self._opened_at = time.monotonic()
        manager, session = self.ctx.manager, self.session
        if not await manager.admit(session):
            log.info(
                "user %s refused: maximum connections exceeded",
                session.user_id,
                extra={"userId": session.user_id, "connId": session.conn_id},
            )
            await manager.control(
                session,
                EventType.ERROR,
                {"code": "max_connections", "message": "Maximum connections exceeded"},
            )
            self.close(CloseCode.POLICY_VIOLATION, "Maximum connections exceeded")
            return
        self._registered = True
        # -- issue 7: per-connection message rate limit and one replay in flight.
        s = self.ctx.settings
        self._bucket = TokenBucket(s.ws_message_rate, s.ws_message_burst)
        #: monotonic seconds of the last ``rate_limited`` warning (None: not warned recently).
        self._rate_warned_at: float | None = None
        self._replay_written: Any = None
        self._replays = TokenBucket(REPLAY_RATE, REPLAY_BURST)

    def _over_rate(self) -> bool:
        """Take a token; on a refusal warn (``rate_limited``), or close 1008 if warned lately.

        A refusal within :data:`RATE_WARNING_S` seconds of the last warning closes. The warning
        lapses with time, not with the next accepted message: a flood would otherwise be warned
        again whenever one token refilled mid-flood, and a client sending at twice the refill
        rate (accepted, refused, accepted, …) would never be closed.
        """
        if self._bucket.take():
            return False
        now = time.monotonic()
        warned = self._rate_warned_at
        if warned is not None and now - warned < RATE_WARNING_S:
            log.info("user %s closed: message rate limit exceeded", self.session.user_id)
            self.close(CloseCode.POLICY_VIOLATION, "Rate limit exceeded")
        else:
            self._rate_warned_at = now
        return True

    def _replay_in_flight(self) -> bool:
        """True while the frames of this connection's last replay are not all written out."""
        return self._replay_written is not None and not self._replay_written.done()

    def _mark_replay_written(self) -> None:
        """Remember when everything queued so far (the replay) has reached the kernel."""
        stream = getattr(self.ws_connection, "stream", None)
        try:
            self._replay_written = stream.write(b"") if stream is not None else None
        except StreamClosedError:
            self._replay_written = None

    async def on_message(self, message: str | bytes) -> None:
        """Parse one frame (the only place) and hand it to the manager."""
        if not self._registered:
            return
        manager, session = self.ctx.manager, self.session
        manager.seen(session)
        if self._over_rate():
            if not self.ws_connection or self.ws_connection.is_closing():
                return
            await manager.error(session, "rate_limited", "too many messages: slow down")
            return
        try:
            msg = parse_client_message(message)
        except ProtocolError as exc:
            await manager.error(session, exc.code, exc.message)
            return
        replay = msg.type == "subscribe" and msg.last_seq is not None
        if replay and (self._replay_in_flight() or not self._replays.take()):
            await manager.error(
                session, "replay_in_progress", "the previous replay is still being sent"
            )
            return
        try:
            await manager.handle(session, msg)
            if replay:
                self._mark_replay_written()
        except Exception:
            log.exception(
                "error handling a message from user %s",
                session.user_id,
                extra={"userId": session.user_id, "connId": session.conn_id},
            )
            self.close(CloseCode.INTERNAL_ERROR, "Internal error")

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        """:class:`FolioProtocol`: strict RFC 6455 reading, prepared frames for writing."""
        return prepared_protocol(self, FolioProtocol)

    def on_pong(self, data: bytes) -> None:
        """A pong counts as life (heartbeat)."""
        if self._registered:
            self.ctx.manager.seen(self.session)

    def on_ping(self, data: bytes) -> None:
        """A client ping counts as life too."""
        if self._registered:
            self.ctx.manager.seen(self.session)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close with ``code`` (remembered for the disconnect metrics), RFC 6455 §7.1.2."""
        if code is not None and getattr(self, "_server_close_code", None) is None:
            self._server_close_code = code
            self._server_close_reason = reason
        super().close(code, reason)

    def on_close(self) -> None:
        """Free the connection's slot and log the close once: code, reason, user, duration."""
        server_code = getattr(self, "_server_close_code", None)
        code = server_code or self.close_code
        session = self.session
        if self._registered:
            self.ctx.manager.disconnect(session, code)
        reason = getattr(self, "_server_close_reason", None) or self.close_reason or ""
        duration = time.monotonic() - getattr(self, "_opened_at", time.monotonic())
        log.info(
            "socket %s of user %s closed by the %s: %s %s after %.1f s",
            session.conn_id,
            session.user_id,
            "server" if server_code else "client",
            code if code is not None else "(no code)",
            reason or "(no reason)",
            duration,
            extra={
                "userId": session.user_id,
                "connId": session.conn_id,
                "code": code,
                "reason": reason,
                "durationS": round(duration, 3),
            },
        )

    # -- streaming.session.Transport --------------------------------------------------------------
    def send(self, message: PreparedMessage) -> Sent:
        """Write the prepared frame; never closes (the manager does, see :class:`Sent`)."""
        conn = self.ws_connection
        # type() rather than isinstance(): WebSocketProtocol is an ABC, whose isinstance check
        # costs a Python-level __instancecheck__ on every frame of the fan-out.
        if type(conn) is not FolioProtocol:
            return Sent.CLOSED  # None once closed
        # is_closing(), the MAX_BUFFERED_BYTES check and the write in one call
        return conn.offer(message, MAX_BUFFERED_BYTES)

    def ping(self, data: str | bytes = b"") -> None:
        """Send a ping frame; ignore a socket that closed meanwhile.

        The heartbeat's empty ping is written as a prepared frame (no Future, no framing);
        a ping with data goes through Tornado.
        """
        conn = self.ws_connection
        if not data:
            if type(conn) is FolioProtocol:
                conn.ping_prepared()
            return
        try:
            super().ping(data)
        except WebSocketClosedError:
            pass
