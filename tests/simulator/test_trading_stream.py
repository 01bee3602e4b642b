import asyncio
import json
from decimal import Decimal

import websockets
from alpaca.trading.enums import OrderSide, TimeInForce, TradeEvent
from alpaca.trading.models import TradeUpdate
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

from tests.simulator.helpers import (
    KEY,
    SECRET,
    call,
    run,
    started,
    trading_stream_ready,
    wait_until,
)


def events_of(events: list[TradeUpdate], order_id: object) -> list[TradeUpdate]:
    return [e for e in events if e.order.id == order_id]


def test_market_order_new_partial_fill_fill_reach_the_handler() -> None:
    async def body() -> None:
        async with started() as h:
            sim = h.sim
            _, events = h.trading_stream()
            await trading_stream_ready(sim)
            sim.set_price("AAPL", Decimal("100"))
            req = MarketOrderRequest(
                symbol="AAPL", qty=12, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
            )
            order = await call(h.client().submit_order, req)
            await wait_until(lambda: len(events_of(events, order.id)) >= 3, what="3 events")
            new, partial, fill = events_of(events, order.id)
            assert all(isinstance(e, TradeUpdate) for e in (new, partial, fill))
            assert new.event == TradeEvent.NEW
            assert new.order.status == "new"
            assert new.execution_id is None and new.price is None

            assert partial.event == TradeEvent.PARTIAL_FILL
            assert (partial.qty, partial.price, partial.position_qty) == (6, 100, 6)
            assert partial.execution_id is not None
            assert partial.order.status == "partially_filled"
            assert partial.order.filled_qty == "6"
            assert partial.order.filled_avg_price == "100.00"

            assert fill.event == TradeEvent.FILL
            assert (fill.qty, fill.price, fill.position_qty) == (6, 100, 12)
            assert fill.order.status == "filled"
            assert fill.order.filled_qty == "12"
            assert fill.order.filled_avg_price == "100.00"
            assert fill.order.filled_at is not None
            assert fill.execution_id != partial.execution_id

            # a sell that flips to short: position_qty goes negative
            sim.set_price("AAPL", Decimal("110"))
            req = MarketOrderRequest(
                symbol="AAPL", qty=15, side=OrderSide.SELL, time_in_force=TimeInForce.DAY
            )
            sell = await call(h.client().submit_order, req)
            await wait_until(lambda: len(events_of(events, sell.id)) >= 3, what="sell events")
            _, p2, f2 = events_of(events, sell.id)
            assert (p2.event, p2.qty, p2.position_qty) == (TradeEvent.PARTIAL_FILL, 7, 5)
            assert (f2.event, f2.qty, f2.position_qty, f2.price) == (TradeEvent.FILL, 8, -3, 110)
            assert f2.order.position_intent == "sell_to_close"

    run(body)


def test_small_order_single_fill_and_cancel_event() -> None:
    async def body() -> None:
        async with started() as h:
            sim = h.sim
            _, events = h.trading_stream()
            await trading_stream_ready(sim)
            sim.set_price("MSFT", Decimal("50"))
            order = sim.submit_order(KEY, symbol="MSFT", qty=Decimal(3), side="buy")
            await wait_until(lambda: len(events_of(events, _uuid(order["id"]))) >= 2)
            kinds = [e.event for e in events_of(events, _uuid(order["id"]))]
            assert kinds == [TradeEvent.NEW, TradeEvent.FILL]

            req = LimitOrderRequest(
                symbol="MSFT",
                qty=1,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.DAY,
                limit_price=1,
            )
            limit = await call(h.client().submit_order, req)
            await call(h.client().cancel_order_by_id, limit.id)
            await wait_until(lambda: len(events_of(events, limit.id)) >= 2)
            new, canceled = events_of(events, limit.id)
            assert canceled.event == TradeEvent.CANCELED
            assert canceled.order.status == "canceled"

    run(body)


def test_events_only_go_to_the_owning_account() -> None:
    async def body() -> None:
        async with started() as h:
            sim = h.sim
            sim.add_account("OTHER", "other-secret")
            _, mine = h.trading_stream()
            _, theirs = h.trading_stream("OTHER", "other-secret")
            await trading_stream_ready(sim, 2)
            sim.submit_order("OTHER", symbol="IBM", qty=Decimal(1), side="buy")
            await wait_until(lambda: len(theirs) >= 2)
            await asyncio.sleep(0.2)
            assert mine == []

    run(body)


def test_reconnect_after_drop_and_pause() -> None:
    async def body() -> None:
        async with started() as h:
            sim = h.sim
            _, events = h.trading_stream()
            await trading_stream_ready(sim)
            await sim.drop_stream_connections()
            assert sim.trading_listeners() == 0
            await trading_stream_ready(sim)  # alpaca-py reconnected by itself
            sim.submit_order(KEY, symbol="IBM", qty=Decimal(1), side="buy")
            await wait_until(lambda: len(events) >= 2, what="events after reconnect")

            sim.pause_streams(True)
            sim.submit_order(KEY, symbol="IBM", qty=Decimal(1), side="buy")
            await wait_until(lambda: sim.account(KEY).position_qty("IBM") == 2)
            await asyncio.sleep(0.2)
            assert len(events) == 2  # silent broker: nothing sent
            sim.pause_streams(False)
            sim.submit_order(KEY, symbol="IBM", qty=Decimal(1), side="buy")
            await wait_until(lambda: len(events) >= 4, what="events after resume")

    run(body)


def test_raw_protocol_binary_frames_and_auth_failure() -> None:
    async def body() -> None:
        async with started() as h:
            url = h.sim.trading_stream_url
            async with websockets.connect(url) as ws:
                await ws.send(
                    json.dumps(
                        {"action": "authenticate", "data": {"key_id": KEY, "secret_key": SECRET}}
                    )
                )
                frame = await ws.recv()
                assert isinstance(frame, bytes)  # binary, like real Alpaca
                assert json.loads(frame) == {
                    "stream": "authorization",
                    "data": {"action": "authenticate", "status": "authorized"},
                }
                await ws.send("not json")
                assert "error" in json.loads(await ws.recv())["data"]
                await ws.send(
                    json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}})
                )
                assert json.loads(await ws.recv()) == {
                    "stream": "listening",
                    "data": {"streams": ["trade_updates"]},
                }
                h.sim.submit_order(KEY, symbol="AAPL", qty=Decimal(1), side="buy")
                msg = json.loads(await ws.recv())
                assert msg["stream"] == "trade_updates"
                assert msg["data"]["event"] == "new"
                assert msg["data"]["order"]["symbol"] == "AAPL"
                assert msg["data"]["timestamp"].endswith("Z")

            async with websockets.connect(url) as ws:
                await ws.send(
                    json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}})
                )
                assert json.loads(await ws.recv())["data"]["status"] == "unauthorized"
                await ws.send(
                    json.dumps(
                        {"action": "authenticate", "data": {"key_id": KEY, "secret_key": "bad"}}
                    )
                )
                reply = json.loads(await ws.recv())
                assert reply["stream"] == "authorization"
                assert reply["data"]["status"] == "unauthorized"
                await asyncio.wait_for(ws.wait_closed(), 5)

    run(body)


def test_alpaca_trading_stream_with_wrong_key_gets_nothing() -> None:
    async def body() -> None:
        async with started() as h:
            sim = h.sim
            _, events = h.trading_stream(KEY, "wrong")
            await asyncio.sleep(0.3)
            assert sim.trading_listeners() == 0
            sim.submit_order(KEY, symbol="AAPL", qty=Decimal(1), side="buy")
            await asyncio.sleep(0.2)
            assert events == []

    run(body)


def _uuid(text: str) -> object:
    import uuid

    return uuid.UUID(text)
