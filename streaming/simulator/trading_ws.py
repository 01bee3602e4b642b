"""Alpaca's trading stream (``/stream``): authenticate, listen, then ``trade_updates`` events.

Messages are JSON; like real Alpaca the server sends them as binary frames. The client may
send text or binary frames.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from tornado.websocket import WebSocketClosedError, WebSocketHandler

if TYPE_CHECKING:
    from streaming.simulator.book import SimAccount
    from streaming.simulator.server import Simulator

log = logging.getLogger(__name__)

KNOWN_STREAMS = frozenset({"trade_updates"})


class SimWebSocket(WebSocketHandler):
    """Shared plumbing of the simulator's WebSocket endpoints."""

    sim: Simulator

    def check_origin(self, origin: str) -> bool:
        """Accept any Origin (the simulator is a local test double).

        Args:
            origin: The Origin header.

        Returns:
            Always True.
        """
        return True

    def abort(self) -> None:
        """Tear the TCP connection down at once, without a close handshake."""
        conn = self.ws_connection
        if conn is not None and conn.stream is not None:
            conn.stream.close()
        else:
            self.close()

    def send_raw(self, payload: bytes | str, binary: bool = True) -> None:
        """Send one frame unless the streams are paused or the socket is gone.

        Args:
            payload: The encoded message.
            binary: Send a binary frame (else text).
        """
        if self.sim.streams_paused or self.ws_connection is None:
            return
        try:
            self.write_message(payload, binary=binary)
        except WebSocketClosedError:
            pass


class TradingStreamHandler(SimWebSocket):
    """One trading-stream connection, bound to an account after ``authenticate``."""

    def initialize(self, sim: Simulator) -> None:
        """Keep the simulator.

        Args:
            sim: The owning simulator.
        """
        self.sim = sim
        self.account: SimAccount | None = None
        self.streams: set[str] = set()

    def open(self, *args: str, **kwargs: str) -> None:
        """Register the connection."""
        self.sim.register_trading(self)

    def on_close(self) -> None:
        """Unregister the connection."""
        self.sim.unregister_trading(self)

    def _send(self, stream: str, data: dict[str, Any]) -> None:
        self.send_raw(json.dumps({"stream": stream, "data": data}).encode())

    def on_message(self, message: str | bytes) -> None:
        """Handle ``authenticate`` and ``listen``; anything else gets an error message.

        Args:
            message: The raw frame (JSON text or bytes).
        """
        try:
            msg = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            self._send("listening", {"error": "invalid syntax"})
            return
        if not isinstance(msg, dict):
            self._send("listening", {"error": "invalid syntax"})
            return
        action = msg.get("action")
        data = msg.get("data")
        if not isinstance(data, dict):
            data = {}
        if action in ("authenticate", "auth"):
            account = self.sim.authenticate(data.get("key_id"), data.get("secret_key"))
            if account is None:
                self._send("authorization", {"action": "authenticate", "status": "unauthorized"})
                self.close(1008, "unauthorized")
                return
            self.account = account
            self._send("authorization", {"action": "authenticate", "status": "authorized"})
        elif action == "listen":
            if self.account is None:
                self._send("authorization", {"action": "listen", "status": "unauthorized"})
                return
            streams = data.get("streams")
            if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams):
                self._send("listening", {"error": "streams must be a list of strings"})
                return
            self.streams = {s for s in streams if s in KNOWN_STREAMS}
            self._send("listening", {"streams": sorted(self.streams)})
        else:
            self._send("listening", {"error": f"unrecognized action: {action!r}"})
