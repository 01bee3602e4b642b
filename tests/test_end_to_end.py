"""End to end: real alpaca-py clients ↔ the bundled simulator ↔ the server ↔ a WebSocket client.

An order placed through alpaca-py's ``TradingClient`` against the simulator, then filled, must
reach alice's subscribed socket as ``order_update`` (new → partially_filled → filled),
``trade_executed`` and position/account updates with the right numbers — and never bob's.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from tornado.websocket import WebSocketClientConnection

from tests.conftest import Running, no_message, recv, subscribe, wait


def _client(folio: Running, name: str = "alice") -> Any:
    from alpaca.trading.client import TradingClient

    sim = folio.server.simulator
    return TradingClient(
        f"DEMO-{name.upper()}", f"demo-{name}-secret", paper=True, url_override=sim.trading_url
    )


async def _submit(folio: Running, symbol: str, qty: int, side: str) -> Any:
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import MarketOrderRequest

    req = MarketOrderRequest(
        symbol=symbol,
        qty=qty,
        side=OrderSide.BUY if side == "buy" else OrderSide.SELL,
        time_in_force=TimeInForce.DAY,
    )
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _client(folio).submit_order, req)


async def _collect(
    conn: WebSocketClientConnection, until: Any, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Read messages until ``until(messages)`` is true."""
    seen: list[dict[str, Any]] = []

    async def loop() -> list[dict[str, Any]]:
        while not until(seen):
            msg = await recv(conn, timeout)
            assert msg is not None, f"closed after {seen}"
            seen.append(msg)
        return seen

    return await asyncio.wait_for(loop(), wait(timeout))


def _orders(msgs: list[dict[str, Any]]) -> list[str]:
    return [m["data"]["status"] for m in msgs if m["type"] == "order_update"]


def _last(msgs: list[dict[str, Any]], type_: str) -> dict[str, Any]:
    return [m for m in msgs if m["type"] == type_][-1]["data"]


async def _until_watching(folio: Running, symbol: str) -> None:
    """Wait until the bridge's market-data stream is subscribed to ``symbol`` at the simulator."""
    sim = folio.server.simulator
    for _ in range(int(wait(200))):
        if any(symbol in sub.get("trades", set()) for sub in sim.data_subscriptions()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"market data never subscribed {symbol}")


@pytest.mark.gen_test(timeout=60)
async def test_order_fill_reaches_the_trader_with_right_numbers(folio: Running) -> None:
    """Buy 10 AAPL at 100 → new, partial fill, fill; position 10 @ 100; cash 99,000; then P&L."""
    sim = folio.server.simulator
    sim.set_price("AAPL", Decimal("100.00"))
    alice = await folio.connect(await folio.login("alice"))
    bob = await folio.connect(await folio.login("bob"))
    await subscribe(alice)
    await subscribe(bob)

    order = await _submit(folio, "AAPL", 10, "buy")
    msgs = await _collect(
        alice,
        lambda m: (
            "filled" in _orders(m)
            and any(x["type"] == "account_update" and x["data"]["cash"] == "99000.00" for x in m)
        ),
    )
    assert _orders(msgs)[0] == "new"
    assert _orders(msgs)[-1] == "filled"
    assert "partially_filled" in _orders(msgs)
    filled = [m["data"] for m in msgs if m["type"] == "order_update"][-1]
    assert filled["brokerOrderId"] == str(order.id)
    assert (filled["symbol"], filled["side"], filled["qty"], filled["filledQty"]) == (
        "AAPL",
        "buy",
        "10",
        "10",
    )
    assert filled["filledAvgPrice"] == "100.00"
    trades = [m["data"] for m in msgs if m["type"] == "trade_executed"]
    assert [t["partial"] for t in trades] == [True, False]
    assert sum(Decimal(t["qty"]) for t in trades) == 10
    assert trades[-1]["positionQty"] == "10"
    position = _last(msgs, "position_update")
    assert position["symbol"] == "AAPL"
    assert (position["quantity"], position["side"], position["entryPrice"]) == (
        "10",
        "long",
        "100.00",
    )
    assert (position["marketValue"], position["unrealizedPnl"]) == ("1000.00", "0.00")
    account = _last(msgs, "account_update")
    assert (account["cash"], account["equity"], account["dayPnl"]) == (
        "99000.00",
        "100000.00",
        "0.00",
    )
    # the order events come before the position/account they cause, and seq has no gap
    seqs = [m["seq"] for m in msgs]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

    # a market-data trade at 110 moves the unrealized P&L (+100.00, +10.00 %)
    await _until_watching(folio, "AAPL")
    sim.set_price("AAPL", Decimal("110.00"))
    msgs = await _collect(
        alice,
        lambda m: any(
            x["type"] == "position_update" and x["data"]["currentPrice"] == "110.00" for x in m
        ),
    )
    position = _last(msgs, "position_update")
    assert (
        position["unrealizedPnl"],
        position["unrealizedPnlPercent"],
        position["marketValue"],
    ) == ("100.00", "10.00", "1100.00")
    msgs += await _collect(alice, lambda m: any(x["type"] == "account_update" for x in m))
    account = _last(msgs, "account_update")
    assert (account["equity"], account["dayPnl"], account["dayPnlPercent"]) == (
        "100100.00",
        "100.00",
        "0.10",
    )

    # REST agrees with the stream
    code, body = await folio.get_json("/api/positions", await folio.login("alice"))
    assert code == 200 and body["positions"][0]["unrealizedPnl"] == "100.00"
    # bob saw none of it
    assert await no_message(bob, 0.3)


@pytest.mark.gen_test(timeout=60)
async def test_short_position_and_batched_delivery(make_server: Any) -> None:
    """Sell 5 MSFT short at 50 with batching on; a fall to 45 is a +25.00 unrealized P&L."""
    folio = await make_server(batch_window_ms=100)
    sim = folio.server.simulator
    sim.set_price("MSFT", Decimal("50.00"))
    conn = await folio.connect(await folio.login("alice"))
    await subscribe(conn)
    await _submit(folio, "MSFT", 5, "sell")

    def positions(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for m in msgs:
            if m["type"] == "batch":
                out += m["data"].get("positions", [])
            if m["type"] == "position_update":
                out.append(m["data"])
        return out

    msgs = await _collect(conn, lambda m: "filled" in _orders(m) and positions(m))
    assert not any(m["type"] in ("position_update", "account_update") for m in msgs)
    short = positions(msgs)[-1]
    assert (short["side"], short["quantity"], short["marketValue"]) == ("short", "5", "-250.00")
    await _until_watching(folio, "MSFT")
    sim.set_price("MSFT", Decimal("45.00"))
    msgs = await _collect(conn, lambda m: any(p["currentPrice"] == "45.00" for p in positions(m)))
    short = [p for p in positions(msgs) if p["currentPrice"] == "45.00"][-1]
    assert (short["unrealizedPnl"], short["unrealizedPnlPercent"]) == ("25.00", "10.00")


@pytest.mark.gen_test(timeout=60)
async def test_broker_silence_marks_data_stale_then_live(make_server: Any) -> None:
    """No broker message for STALE_AFTER_S while clients are connected → status stale → ok."""
    folio = await make_server(stale_after_s=0.6)
    sim = folio.server.simulator
    conn = await folio.connect(await folio.login("alice"))
    await subscribe(conn, ["orders"])
    sim.pause_streams(True)
    msgs = await _collect(conn, lambda m: any(x["type"] == "status" for x in m))
    status = _last(msgs, "status")
    assert status["code"] == "broker_stale" and status["stale"] is True
    # a client arriving while the feed is stale is told right after its snapshot
    late = await folio.connect(await folio.login("bob"))
    await subscribe(late, ["account"])
    status_now = await recv(late)
    assert status_now is not None and status_now["type"] == "status"
    assert status_now["data"]["code"] == "broker_stale"
    # a user without a broker account (admin) is not told about the broker feed
    admin = await folio.connect(await folio.login("admin", "admin"))
    await subscribe(admin)
    assert await no_message(admin, 0.5)
    sim.pause_streams(False)
    await _submit(folio, "IBM", 1, "buy")
    msgs = await _collect(
        conn, lambda m: any(x["type"] == "status" and not x["data"]["stale"] for x in m)
    )
    assert _last(msgs, "status")["code"] == "broker_ok"


@pytest.mark.gen_test(timeout=60)
async def test_bridge_reconnects_after_broker_drops_streams(folio: Running) -> None:
    """The simulator drops every stream socket; alpaca-py reconnects; the next fill arrives."""
    sim = folio.server.simulator
    conn = await folio.connect(await folio.login("alice"))
    await subscribe(conn, ["orders"])
    await sim.drop_stream_connections()
    for _ in range(int(wait(200))):
        if sim.trading_listeners("DEMO-ALICE") == 1:
            break
        await asyncio.sleep(0.05)
    assert sim.trading_listeners("DEMO-ALICE") == 1
    await _submit(folio, "GOOG", 1, "buy")
    msgs = await _collect(conn, lambda m: "filled" in _orders(m))
    assert _orders(msgs)[-1] == "filled"


@pytest.mark.gen_test(timeout=60)
async def test_trader_linked_while_running_gets_a_stream(make_server: Any) -> None:
    """A trader linked after start-up (adduser) is picked up at the next sync, no restart."""
    folio = await make_server(sync_interval_s=0.3)
    sim, store = folio.server.simulator, folio.server.store
    carol = await store.create_user("carol", "pw")
    sim.add_account("DEMO-CAROL", "carol-secret", auto_trade=False)
    await store.link_broker_account(carol.id, "DEMO-CAROL", "carol-secret")
    for _ in range(int(wait(200))):
        if sim.trading_listeners("DEMO-CAROL") == 1:
            break
        await asyncio.sleep(0.05)
    assert sim.trading_listeners("DEMO-CAROL") == 1
    conn = await folio.connect(await folio.login("carol", "pw"))
    _, snap = await subscribe(conn)
    assert snap is not None and snap["data"]["account"]["cash"] == "100000.00"
    sim.submit_order("DEMO-CAROL", symbol="IBM", qty=Decimal("2"), side="buy")
    msgs = await _collect(conn, lambda m: "filled" in _orders(m))
    assert all(m["userId"] == carol.user_id for m in msgs)


@pytest.mark.gen_test(timeout=60)
async def test_market_data_follows_positions_open_and_close(folio: Running) -> None:
    """A symbol is watched while held and unsubscribed (from another thread) once closed."""
    sim = folio.server.simulator
    conn = await folio.connect(await folio.login("alice"))
    await subscribe(conn, ["positions"])
    await _submit(folio, "AMZN", 2, "buy")
    await _until_watching(folio, "AMZN")
    assert folio.server.bridge.data_symbols == {"AMZN"}
    await _submit(folio, "AMZN", 2, "sell")
    msgs = await _collect(
        conn,
        lambda m: any(x["type"] == "position_update" and x["data"]["quantity"] == "0" for x in m),
    )
    assert msgs[-1]["data"]["symbol"] == "AMZN"
    for _ in range(int(wait(200))):
        subs = sim.data_subscriptions()
        if subs and all("AMZN" not in s.get("trades", set()) for s in subs):
            break
        await asyncio.sleep(0.05)
    assert all("AMZN" not in s.get("trades", set()) for s in sim.data_subscriptions())
    assert folio.server.bridge.data_symbols == set()
    # and a new position is watched again on the same running stream
    await _submit(folio, "MSFT", 1, "buy")
    await _until_watching(folio, "MSFT")
