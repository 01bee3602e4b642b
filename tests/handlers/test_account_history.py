"""GET /api/account/history and the ?symbols= filter of the REST views, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from storage.db import AccountPoint
from tests.conftest import Running, subscribe, wait


@pytest.mark.gen_test(timeout=30)
async def test_history_needs_a_session_and_a_known_period(folio: Running) -> None:
    """401 without a cookie; an unknown period → 400 naming the field."""
    code, body = await folio.get_json("/api/account/history?period=1D")
    assert code == 401
    cookie = await folio.login()
    code, body = await folio.get_json("/api/account/history?period=5Y", cookie)
    assert code == 400
    assert body["error"]["code"] == "invalid_field" and "period" in body["error"]["message"]


@pytest.mark.gen_test(timeout=30)
async def test_history_serves_the_days_points_in_wire_format(folio: Running) -> None:
    """Recorded points of the last 24 h, oldest first, money as 2-dp strings, null day P&L."""
    store = folio.server.store
    assert store is not None
    alice = await store.get_user_by_name("alice")
    bob = await store.get_user_by_name("bob")
    assert alice is not None and bob is not None
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    base = datetime.now(UTC) - timedelta(hours=2)
    await store.add_account_points(
        [
            AccountPoint(alice.id, now, Decimal("1"), None),  # older than a day: not served
            AccountPoint(alice.id, base, Decimal("100000.5"), None),
            AccountPoint(
                alice.id, base + timedelta(seconds=10), Decimal("100027.8"), Decimal("27.8")
            ),
            AccountPoint(bob.id, base, Decimal("7"), Decimal("0")),
        ]
    )
    cookie = await folio.login()
    code, body = await folio.get_json("/api/account/history?period=1D", cookie)
    assert code == 200
    assert body["userId"] == alice.user_id and body["period"] == "1D"
    iso = "%Y-%m-%dT%H:%M:%S.%fZ"
    # then the points the server itself recorded since it started (now)
    assert body["points"][:2] == [
        {"timestamp": base.strftime(iso), "equity": "100000.50", "dayPnl": None},
        {
            "timestamp": (base + timedelta(seconds=10)).strftime(iso),
            "equity": "100027.80",
            "dayPnl": "27.80",
        },
    ]
    assert all(p["equity"] != "7.00" for p in body["points"])  # bob's are not alice's


@pytest.mark.gen_test(timeout=60)
async def test_the_server_records_the_account_it_holds(
    make_server: Callable[..., Awaitable[Running]],
) -> None:
    """With a 0.5 s interval the demo account (synced from the simulator) is recorded."""
    folio = await make_server(account_history_interval_s="0.5")
    cookie = await folio.login()

    points: list[dict[str, str]] = []
    for _ in range(int(wait(20) / 0.25)):
        code, body = await folio.get_json("/api/account/history", cookie)
        assert code == 200
        points = body["points"]
        if points:
            break
        await asyncio.sleep(0.25)
    assert points, "no account point recorded"
    code, acct = await folio.get_json("/api/account", cookie)
    assert points[-1]["equity"] == acct["account"]["equity"]


@pytest.mark.gen_test(timeout=30)
async def test_rest_views_filter_by_symbols(folio: Running) -> None:
    """?symbols=msft,tsla narrows positions (case-insensitive); a bad symbol → 400."""
    user = await folio.user_id("alice")
    service = folio.server.service
    assert service is not None
    service.on_sync(
        user,
        {"cash": "1000", "last_equity": "1000"},
        [
            {"symbol": s, "qty": "1", "avg_entry_price": "10", "current_price": "11"}
            for s in ("AAPL", "MSFT", "TSLA")
        ],
        [],
    )
    cookie = await folio.login()
    code, body = await folio.get_json("/api/positions?symbols=msft,TSLA", cookie)
    assert code == 200
    assert [p["symbol"] for p in body["positions"]] == ["MSFT", "TSLA"]
    code, body = await folio.get_json("/api/positions", cookie)
    assert [p["symbol"] for p in body["positions"]] == ["AAPL", "MSFT", "TSLA"]
    code, body = await folio.get_json("/api/trades?symbols=ZZZ", cookie)
    assert code == 200 and body["trades"] == []
    code, body = await folio.get_json("/api/account?symbols=MSFT", cookie)
    assert code == 200 and body["account"] is not None  # never filtered
    for bad in ("BAD%20SYMBOL", "A" * 17, ",".join(f"S{i}" for i in range(501))):
        code, body = await folio.get_json(f"/api/positions?symbols={bad}", cookie)
        assert code == 400 and body["error"]["code"] == "invalid_field", bad


@pytest.mark.gen_test(timeout=30)
async def test_pushed_state_survives_a_reload(folio: Running) -> None:
    """Positions, orders and the account pushed through the hook are in REST and the snapshot;
    a trade is relayed only; a pushed quantity 0 removes the position again."""
    user = await folio.user_id("alice")
    position = {
        "symbol": "PUSH",
        "quantity": "3",
        "currentPrice": "12.34",
        "entryPrice": "12.00",
        "unrealizedPnl": "1.02",
        "unrealizedPnlPercent": "2.83",
        "marketValue": "37.02",
        "side": "long",
        "openedAt": "2026-11-25T14:31:02Z",
        "updatedAt": "2099-01-01T00:00:00Z",
    }
    order = {
        "orderId": "push-1",
        "brokerOrderId": "b-push-1",
        "symbol": "PUSH",
        "side": "buy",
        "type": "market",
        "status": "new",
        "qty": "3",
        "submittedAt": "2099-01-01T00:00:00Z",
    }
    trade = {
        "executionId": "push-x",
        "orderId": "push-1",
        "symbol": "PUSH",
        "side": "buy",
        "qty": "3",
        "price": "12.34",
        "timestamp": "2099-01-01T00:00:00Z",
    }
    account = {
        "equity": "123.45",
        "buyingPower": "100.00",
        "cash": "100.00",
        "portfolioValue": "123.45",
        "dayPnl": "1.00",
        "dayPnlPercent": "0.82",
        "timestamp": "2099-01-01T00:00:00Z",
    }
    for type_, data in (
        ("position_update", position),
        ("order_update", order),
        ("trade_executed", trade),
        ("account_update", account),
    ):
        assert (await folio.push(user, type_, data)).code == 202
    cookie = await folio.login()
    _, body = await folio.get_json("/api/positions", cookie)
    assert [p["symbol"] for p in body["positions"]] == ["PUSH"]
    _, body = await folio.get_json("/api/orders", cookie)
    assert body["orders"][0]["orderId"] == "push-1"
    _, body = await folio.get_json("/api/account", cookie)
    assert body["account"]["equity"] == "123.45"
    _, body = await folio.get_json("/api/trades", cookie)
    assert all(t["executionId"] != "push-x" for t in body["trades"])
    conn = await folio.connect(cookie)
    _, snap = await subscribe(conn)
    assert snap is not None
    assert [p["symbol"] for p in snap["data"]["positions"]] == ["PUSH"]
    assert [o["orderId"] for o in snap["data"]["orders"]] == ["push-1"]
    assert snap["data"]["account"]["equity"] == "123.45"
    # closing it through the hook removes it from REST too
    closed = {**position, "quantity": "0", "updatedAt": "2099-01-01T00:00:01Z"}
    assert (await folio.push(user, "position_update", closed)).code == 202
    _, body = await folio.get_json("/api/positions", cookie)
    assert body["positions"] == []
