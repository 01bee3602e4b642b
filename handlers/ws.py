"""``/ws/portfolio``: the trader's WebSocket. Thin: authorise, parse, delegate to the manager.

Before the upgrade (no socket is opened when refused):

- no valid, unrevoked ``session`` cookie → HTTP 401 (REQ-1);
- an ``Origin`` outside ``ALLOWED_ORIGINS`` → HTTP 403 (:meth:`check_origin`; cookie-authenticated
  WebSockets are open to cross-site hijacking otherwise);
- with ``ENABLE_REALTIME_PORTFOLIO=false`` this handler is not routed at all (404).

After it: the user's 6th connection gets an ``error`` ``max_connections`` and is closed with 1008
(REQ-3). Frames over ``MAX_MESSAGE_BYTES`` are closed with 1009 by Tornado
(``websocket_max_message_size``). Every other bad frame gets an ``error`` and the connection stays
open. Exceptions in message handling are logged and close only this connection with 1011.

Sending: every server→client message is a :class:`streaming.frames.PreparedMessage`, written by
:mod:`handlers.tornado_ws` (permessage-deflate negotiated without context takeover, so an idle
tab keeps no compressor and one compressed frame serves every tab).

Back-pressure: if a client stops reading and more than ``MAX_BUFFERED_BYTES`` pile up in its
socket's write buffer, :meth:`PortfolioSocket.send` refuses the message and the manager closes
the connection with 4002 rather than letting server memory grow.
"""

from __future__ import annotations

import logging
from typing import Any

from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol

from handlers.base import Context
from handlers.tornado_ws import PreparedFrameProtocol, prepared_protocol, unsent_bytes
from streaming.auth import COOKIE_NAME
from streaming.closecodes import CloseCode
from streaming.events import EventType
from streaming.frames import PreparedMessage
from streaming.hub import Sent
from streaming.protocol import ProtocolError, parse_client_message
from streaming.subscription import Subscription

__all__ = ["PortfolioSocket", "MAX_BUFFERED_BYTES"]

log = logging.getLogger(__name__)

#: Bytes allowed to wait in one connection's write buffer before it is closed with 4002.
MAX_BUFFERED_BYTES = 4 * 1024 * 1024


class PortfolioSocket(WebSocketHandler):
    """One trader connection; implements :class:`streaming.hub.Client` for the hub."""

    user_id: str
    sid: str
    subscription: Subscription
    last_seen: float = 0.0
    last_ping: float = 0.0
    expires_at: float = 0.0

    @property
    def ctx(self) -> Context:
        """The application :class:`~handlers.base.Context`."""
        ctx: Context = self.application.settings["ctx"]
        return ctx

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Authorise the upgrade request (401 without a valid session), then upgrade."""
        auth = await self.ctx.auth.verify(self.get_cookie(COOKIE_NAME))
        if auth is None:
            self.set_status(401)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish('{"error": {"code": "unauthorized", "message": "login required"}}')
            return
        self.user_id = auth.user.user_id
        self.sid = auth.sid
        self.expires_at = auth.expires_at
        self.subscription = Subscription()
        self._registered = False
        await super().get(*args, **kwargs)

    def check_origin(self, origin: str) -> bool:
        """Accept only ``ALLOWED_ORIGINS`` (default: the server's own origin)."""
        return origin.rstrip("/") in self.ctx.settings.origins()

    def get_compression_options(self) -> dict[str, Any] | None:
        """Enable permessage-deflate (RFC 7692): portfolio JSON compresses well."""
        return {}

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        """Use :class:`~handlers.tornado_ws.PreparedFrameProtocol` (prepared frames)."""
        return prepared_protocol(self)

    async def open(self, *args: str, **kwargs: str) -> None:
        """Register with the manager, or refuse a connection over the per-user limit."""
        self.set_nodelay(True)
        manager = self.ctx.manager
        if not manager.connect(self):
            log.info("user %s refused: maximum connections exceeded", self.user_id)
            await manager.control(
                self,
                EventType.ERROR,
                {"code": "max_connections", "message": "Maximum connections exceeded"},
            )
            self.close(CloseCode.POLICY_VIOLATION, "Maximum connections exceeded")
            return
        self._registered = True

    async def on_message(self, message: str | bytes) -> None:
        """Parse one frame (the only place) and hand it to the manager."""
        if not self._registered:
            return
        manager = self.ctx.manager
        manager.seen(self)
        try:
            msg = parse_client_message(message)
        except ProtocolError as exc:
            await manager.error(self, exc.code, exc.message)
            return
        try:
            await manager.handle(self, msg)
        except Exception:
            log.exception("error handling a message from user %s", self.user_id)
            self.close(CloseCode.INTERNAL_ERROR, "Internal error")

    def on_pong(self, data: bytes) -> None:
        """A pong counts as life (heartbeat)."""
        if self._registered:
            self.ctx.manager.seen(self)

    def on_ping(self, data: bytes) -> None:
        """A client ping counts as life too."""
        if self._registered:
            self.ctx.manager.seen(self)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close with ``code`` (remembered for the disconnect metrics), RFC 6455 §7.1.2."""
        if code is not None and getattr(self, "_server_close_code", None) is None:
            self._server_close_code = code
        super().close(code, reason)

    def on_close(self) -> None:
        """Free the connection's slot."""
        if self._registered:
            code = getattr(self, "_server_close_code", None) or self.close_code
            self.ctx.manager.disconnect(self, code)

    # -- streaming.hub.Client -------------------------------------------------------------------
    def send(self, message: PreparedMessage) -> Sent:
        """Write the prepared frame; never closes (the manager does, see :class:`Sent`)."""
        conn = self.ws_connection
        if not isinstance(conn, PreparedFrameProtocol) or conn.is_closing():
            return Sent.CLOSED
        if unsent_bytes(conn) > MAX_BUFFERED_BYTES:
            return Sent.OVERLOADED
        return Sent.OK if conn.write_prepared(message) else Sent.CLOSED

    def ping(self, data: str | bytes = b"") -> None:
        """Send a ping frame; ignore a socket that closed meanwhile."""
        try:
            super().ping(data)
        except WebSocketClosedError:
            pass
