"""Alpaca's market-data stream (``/v2/iex``, ``/v2/sip``): trades and quotes.

Frames are msgpack when the client's upgrade request says ``Content-Type:
application/msgpack`` (alpaca-py always does), JSON text otherwise. Every server frame is a
list of messages. Trade timestamps ``t`` are msgpack Timestamps (ext type -1) in msgpack
mode, RFC 3339 strings in JSON mode; prices are floats, as Alpaca sends them.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgpack

from streaming.simulator.fmt import iso
from streaming.simulator.trading_ws import SimWebSocket

if TYPE_CHECKING:
    from streaming.simulator.book import SimAccount
    from streaming.simulator.server import Simulator

log = logging.getLogger(__name__)

#: Channels a client may subscribe to; only trades and quotes carry data here.
CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")
_TAPES = {"IBM": "A"}
_CENT = Decimal("0.01")


class DataStreamHandler(SimWebSocket):
    """One market-data connection: ``connected`` → ``auth`` → ``subscribe``/``unsubscribe``."""

    def initialize(self, sim: Simulator) -> None:
        """Keep the simulator.

        Args:
            sim: The owning simulator.
        """
        self.sim = sim
        self.account: SimAccount | None = None
        self.subs: dict[str, set[str]] = {ch: set() for ch in CHANNELS}
        self.use_msgpack = True
        self.feed = "iex"

    def open(self, *args: str, **kwargs: str) -> None:
        """Greet with ``[{"T": "success", "msg": "connected"}]``.

        Args:
            args: The feed captured from the URL (``iex`` or ``sip``).
            kwargs: Unused.
        """
        self.feed = args[0] if args else "iex"
        content_type = self.request.headers.get("Content-Type", "")
        self.use_msgpack = "msgpack" in content_type.lower()
        self.sim.register_data(self)
        self.send_msgs([{"T": "success", "msg": "connected"}])

    def on_close(self) -> None:
        """Unregister the connection."""
        self.sim.unregister_data(self)

    def send_msgs(self, msgs: list[dict[str, Any]]) -> None:
        """Encode and send one frame holding a list of messages.

        Args:
            msgs: The messages; datetimes under ``t`` are encoded per the frame format.
        """
        if self.use_msgpack:
            out = [
                {**m, "t": msgpack.Timestamp.from_datetime(m["t"])}
                if isinstance(m.get("t"), datetime)
                else m
                for m in msgs
            ]
            self.send_raw(msgpack.packb(out), binary=True)
        else:
            out = [{**m, "t": iso(m["t"])} if isinstance(m.get("t"), datetime) else m for m in msgs]
            self.send_raw(json.dumps(out), binary=False)

    def _error(self, code: int, msg: str) -> None:
        self.send_msgs([{"T": "error", "code": code, "msg": msg}])

    def _decode(self, message: str | bytes) -> Any:
        if isinstance(message, bytes):
            try:
                return msgpack.unpackb(message, raw=False)
            except Exception:  # noqa: BLE001 - any undecodable frame is a syntax error
                pass
        return json.loads(message)

    def on_message(self, message: str | bytes) -> None:
        """Handle ``auth``, ``subscribe`` and ``unsubscribe`` with Alpaca's replies and errors.

        Args:
            message: The raw frame (msgpack bytes or JSON).
        """
        try:
            msg = self._decode(message)
        except (ValueError, UnicodeDecodeError):
            self._error(400, "invalid syntax")
            return
        if not isinstance(msg, dict):
            self._error(400, "invalid syntax")
            return
        action = msg.get("action")
        if action == "auth":
            if self.account is not None:
                self._error(403, "already authenticated")
                return
            account = self.sim.authenticate(msg.get("key"), msg.get("secret"))
            if account is None:
                self._error(402, "auth failed")
                self.close(1008, "auth failed")
                return
            self.account = account
            self.send_msgs([{"T": "success", "msg": "authenticated"}])
        elif action in ("subscribe", "unsubscribe"):
            if self.account is None:
                self._error(401, "not authenticated")
                return
            changes: dict[str, set[str]] = {}
            for ch in CHANNELS:
                syms = msg.get(ch)
                if syms is None:
                    continue
                if not isinstance(syms, list) or not all(isinstance(s, str) for s in syms):
                    self._error(400, "invalid syntax")
                    return
                changes[ch] = {s.upper() for s in syms}
            for ch, syms in changes.items():
                if action == "subscribe":
                    self.subs[ch] |= syms
                else:
                    self.subs[ch] -= syms
            self.send_msgs([self.subscription_msg()])
        else:
            self._error(400, "invalid syntax")

    def subscription_msg(self) -> dict[str, Any]:
        """Return the ``subscription`` acknowledgement listing every current subscription.

        Returns:
            ``{"T": "subscription", "trades": [...], "quotes": [...], ...}``.
        """
        out: dict[str, Any] = {"T": "subscription"}
        for ch in CHANNELS:
            out[ch] = sorted(self.subs[ch])
        out["corrections"] = sorted(self.subs["trades"])
        out["cancelErrors"] = sorted(self.subs["trades"])
        return out

    def _wants(self, channel: str, symbol: str) -> bool:
        subs = self.subs[channel]
        return symbol in subs or "*" in subs

    def send_ticks(
        self,
        symbols: list[str],
        prices: dict[str, Decimal],
        sizes: dict[str, int],
        when: datetime,
    ) -> None:
        """Send one frame with a trade (and quote) per subscribed symbol that ticked.

        Args:
            symbols: The symbols that ticked.
            prices: Current prices in USD.
            sizes: Trade size per symbol, in shares.
            when: The tick time.
        """
        if self.account is None:
            return
        msgs: list[dict[str, Any]] = []
        for sym in symbols:
            price = prices[sym]
            tape = _TAPES.get(sym, "C")
            if self._wants("trades", sym):
                msgs.append(
                    {
                        "T": "t",
                        "S": sym,
                        "i": self.sim.next_trade_id(),
                        "x": "V",
                        "p": float(price),
                        "s": sizes.get(sym, 100),
                        "c": ["@"],
                        "z": tape,
                        "t": when,
                    }
                )
            if self._wants("quotes", sym):
                msgs.append(
                    {
                        "T": "q",
                        "S": sym,
                        "bx": "V",
                        "bp": float(max(price - _CENT, _CENT)),
                        "bs": 2,
                        "ax": "V",
                        "ap": float(price + _CENT),
                        "as": 3,
                        "c": ["R"],
                        "z": tape,
                        "t": when,
                    }
                )
        if msgs:
            self.send_msgs(msgs)
