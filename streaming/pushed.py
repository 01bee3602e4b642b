"""State carried by events other services push (internal hook, Redis ingest).

Pushed events are checked by :func:`streaming.events.validate_pushed_event` and relayed to the
trader's stream. Those that carry **state** — ``position_update``, ``order_update`` and
``account_update`` — are also kept here, per trader, so REST answers and snapshots show them after
a reload. ``trade_executed`` is a **notification**: relayed only (the executions feed of the
broker's own fills is the server's record of trades).

The broker stays the source of truth: on every read, a pushed item is laid over the broker's view
only while it is at least as new (``updatedAt`` of a position or order, ``timestamp`` of the
account; a pushed item without a time never overrides the broker's). A pushed position with
``quantity "0"`` removes that symbol from the view, as on the stream. Memory is bounded:
:data:`MAX_PUSHED_ORDERS` orders and :data:`MAX_PUSHED_POSITIONS` positions per trader, the
oldest pushed first out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["PushedState", "STATE_TYPES", "MAX_PUSHED_ORDERS", "MAX_PUSHED_POSITIONS"]

#: Pushed types applied to the server's state (the rest are notifications, relayed only).
STATE_TYPES = frozenset({"position_update", "order_update", "account_update"})
MAX_PUSHED_ORDERS = 500
MAX_PUSHED_POSITIONS = 500

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _moment(value: Any) -> datetime | None:
    """An ISO 8601 wire timestamp as an aware datetime (None when absent or unreadable)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _newer_or_same(pushed: datetime | None, broker: datetime | None) -> bool:
    if broker is None:
        return True
    return pushed is not None and pushed >= broker


def _order_time(order: Mapping[str, Any]) -> datetime | None:
    return _moment(order.get("updatedAt") or order.get("filledAt") or order.get("submittedAt"))


def _is_zero(quantity: Any) -> bool:
    try:
        return Decimal(str(quantity)) == 0
    except InvalidOperation:
        return False


class PushedState:
    """One trader's pushed positions, orders and account (wire dicts, already validated)."""

    def __init__(self) -> None:
        self._positions: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._orders: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._account: dict[str, Any] | None = None

    def apply(self, type_: str, data: Mapping[str, Any]) -> bool:
        """Keep a pushed event's state.

        Args:
            type_: the event type.
            data: its validated wire data.

        Returns:
            True when ``type_`` carries state (and was kept), False for a notification.
        """
        if type_ == "position_update":
            self._positions.pop(data["symbol"], None)
            self._positions[data["symbol"]] = dict(data)
            while len(self._positions) > MAX_PUSHED_POSITIONS:
                self._positions.popitem(last=False)
        elif type_ == "order_update":
            self._orders.pop(data["orderId"], None)
            self._orders[data["orderId"]] = dict(data)
            while len(self._orders) > MAX_PUSHED_ORDERS:
                self._orders.popitem(last=False)
        elif type_ == "account_update":
            self._account = dict(data)
        else:
            return False
        return True

    def positions(self, broker: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The broker's positions with the newer pushed ones laid over, sorted by symbol."""
        view = {p["symbol"]: p for p in broker}
        for symbol, pushed in self._positions.items():
            current = view.get(symbol)
            when = _moment(pushed.get("updatedAt") or pushed.get("openedAt"))
            if current is not None and not _newer_or_same(when, _moment(current.get("updatedAt"))):
                continue
            if _is_zero(pushed.get("quantity")):
                view.pop(symbol, None)
            else:
                view[symbol] = dict(pushed)
        return [view[s] for s in sorted(view)]

    def orders(
        self, broker: list[dict[str, Any]], closed_statuses: frozenset[str] | None = None
    ) -> list[dict[str, Any]]:
        """The broker's orders with the newer pushed ones laid over, newest submitted first.

        Args:
            broker: the broker's orders (already restricted to open ones when asked).
            closed_statuses: for the open-orders view: pushed orders in these statuses are not
                added, and a pushed update that closes a broker order removes it.
        """
        view = {o["orderId"]: o for o in broker}
        for order_id, pushed in self._orders.items():
            current = view.get(order_id)
            if current is not None and not _newer_or_same(
                _order_time(pushed), _order_time(current)
            ):
                continue
            if closed_statuses is not None and pushed.get("status") in closed_statuses:
                view.pop(order_id, None)
            else:
                view[order_id] = dict(pushed)
        return sorted(
            view.values(), key=lambda o: _moment(o.get("submittedAt")) or _EPOCH, reverse=True
        )

    def account(self, broker: dict[str, Any] | None) -> dict[str, Any] | None:
        """The pushed account when it is at least as new as the broker's, else the broker's."""
        pushed = self._account
        if pushed is None:
            return broker
        if broker is not None and not _newer_or_same(
            _moment(pushed.get("timestamp")), _moment(broker.get("timestamp"))
        ):
            return broker
        return dict(pushed)
