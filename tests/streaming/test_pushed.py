"""Pushed state laid over the broker's: newer wins, quantity 0 removes, notifications not kept."""

from __future__ import annotations

from typing import Any

from streaming.portfolio import CLOSED_ORDER_STATUSES
from streaming.pushed import MAX_PUSHED_ORDERS, PushedState


def pos(symbol: str, updated: str | None, qty: str = "10", pnl: str = "1.00") -> dict[str, Any]:
    p: dict[str, Any] = {"symbol": symbol, "quantity": qty, "unrealizedPnl": pnl}
    if updated:
        p["updatedAt"] = updated
    return p


def order(oid: str, status: str, submitted: str, updated: str | None = None) -> dict[str, Any]:
    o: dict[str, Any] = {"orderId": oid, "symbol": "AAPL", "status": status}
    o["submittedAt"] = submitted
    if updated:
        o["updatedAt"] = updated
    return o


T1, T2, T3 = "2026-11-25T14:00:00Z", "2026-11-25T14:00:00.000001Z", "2026-11-25T15:00:00Z"


def test_positions_newer_pushed_wins_older_loses_zero_removes() -> None:
    s = PushedState()
    assert s.apply("position_update", pos("NEW", T1, pnl="5.00"))
    assert s.apply("position_update", pos("OLD", T1, pnl="7.00"))
    assert s.apply("position_update", pos("GONE", T3, qty="0"))
    broker = [pos("OLD", T2, pnl="8.00"), pos("GONE", T2), pos("KEPT", T1)]
    view = s.positions(broker)
    assert [(p["symbol"], p["unrealizedPnl"]) for p in view] == [
        ("KEPT", "1.00"),
        ("NEW", "5.00"),  # only pushed: shown
        ("OLD", "8.00"),  # broker's is newer (by a microsecond): broker wins
    ]
    # a pushed position without any time never overrides the broker's
    s.apply("position_update", pos("KEPT", None, pnl="99.00"))
    kept = [p for p in s.positions([pos("KEPT", T1)]) if p["symbol"] == "KEPT"]
    assert [p["unrealizedPnl"] for p in kept] == ["1.00"]


def test_orders_open_view_and_newest_first() -> None:
    s = PushedState()
    s.apply("order_update", order("a", "new", T1))
    s.apply("order_update", order("b", "filled", T2, updated=T3))  # closes the broker's b
    broker = [order("b", "new", T2, updated=T2), order("c", "new", T3)]
    assert [o["orderId"] for o in s.orders(broker)] == ["c", "b", "a"]
    assert [o["status"] for o in s.orders(broker)] == ["new", "filled", "new"]
    open_view = s.orders(broker, CLOSED_ORDER_STATUSES)
    assert [o["orderId"] for o in open_view] == ["c", "a"]


def test_account_and_notifications_and_bounds() -> None:
    s = PushedState()
    broker = {"equity": "1.00", "timestamp": T2}
    assert s.account(broker) == broker and s.account(None) is None
    s.apply("account_update", {"equity": "2.00", "timestamp": T1})
    assert s.account(broker) == broker  # older than the broker's
    assert s.account(None) == {"equity": "2.00", "timestamp": T1}
    s.apply("account_update", {"equity": "3.00", "timestamp": T3})
    assert s.account(broker)["equity"] == "3.00"  # type: ignore[index]
    assert not s.apply("trade_executed", {"executionId": "x"})
    for i in range(MAX_PUSHED_ORDERS + 5):
        s.apply("order_update", order(f"o{i}", "new", T1))
    kept = {o["orderId"] for o in s.orders([])}
    assert len(kept) == MAX_PUSHED_ORDERS
    assert "o0" not in kept and f"o{MAX_PUSHED_ORDERS + 4}" in kept
