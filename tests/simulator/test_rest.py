import json
from decimal import Decimal

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Order, Position, TradeAccount
from alpaca.trading.requests import GetOrdersRequest, LimitOrderRequest, MarketOrderRequest

from tests.simulator.helpers import KEY, SECRET, call, run, started, wait_until


def market(symbol: str, qty: float, side: OrderSide = OrderSide.BUY) -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=TimeInForce.DAY)


def test_account_positions_and_orders_parse_with_trading_client() -> None:
    async def body() -> None:
        async with started() as h:
            sim, client = h.sim, h.client()
            account = await call(client.get_account)
            assert isinstance(account, TradeAccount)
            assert account.status == "ACTIVE"
            assert account.cash == account.equity == account.last_equity == "100000.00"
            assert account.buying_power == "100000.00"
            assert await call(client.get_all_positions) == []

            sim.set_price("AAPL", Decimal("100"))
            order = await call(client.submit_order, market("AAPL", 4))
            assert isinstance(order, Order)
            assert order.status == OrderStatus.NEW
            assert order.symbol == "AAPL"
            assert order.qty == "4"
            await wait_until(lambda: sim.account(KEY).position_qty("AAPL") == 4)

            positions = await call(client.get_all_positions)
            assert len(positions) == 1
            pos = positions[0]
            assert isinstance(pos, Position)
            assert (pos.symbol, pos.qty, pos.side, pos.avg_entry_price) == (
                "AAPL",
                "4",
                "long",
                "100.00",
            )
            sim.set_price("AAPL", Decimal("110"))
            pos = await call(client.get_open_position, "AAPL")
            assert pos.current_price == "110.00"
            assert pos.market_value == "440.00"
            assert pos.unrealized_pl == "40.00"
            assert Decimal(pos.unrealized_plpc) == Decimal("0.1")
            assert pos.lastday_price == "25.94"

            account = await call(client.get_account)
            assert account.cash == "99600.00"
            assert account.long_market_value == "440.00"
            assert account.equity == "100040.00"
            assert account.last_equity == "100000.00"

            filled = await call(client.get_order_by_id, order.id)
            assert filled.status == OrderStatus.FILLED
            assert filled.filled_qty == "4"
            assert filled.filled_avg_price == "100.00"
            by_cid = await call(client.get_order_by_client_id, order.client_order_id)
            assert by_cid.id == order.id

            assert await call(client.get_orders) == []  # default: open orders
            closed = await call(
                client.get_orders, GetOrdersRequest(status=QueryOrderStatus.CLOSED, limit=10)
            )
            assert [o.id for o in closed] == [order.id]

            clock = await call(client.get_clock)
            assert clock.is_open
            asset = await call(client.get_asset, "IBM")
            assert asset.symbol == "IBM"

    run(body)


def test_short_position_is_signed() -> None:
    async def body() -> None:
        async with started() as h:
            sim, client = h.sim, h.client()
            sim.set_price("MSFT", Decimal("50"))
            await call(client.submit_order, market("MSFT", 3, OrderSide.SELL))
            await wait_until(lambda: sim.account(KEY).position_qty("MSFT") == -3)
            pos = await call(client.get_open_position, "MSFT")
            assert (pos.qty, pos.side, pos.market_value, pos.cost_basis) == (
                "-3",
                "short",
                "-150.00",
                "-150.00",
            )
            account = await call(client.get_account)
            assert account.short_market_value == "-150.00"
            assert account.cash == "100150.00"
            assert account.equity == "100000.00"

    run(body)


def test_limit_order_cancel() -> None:
    async def body() -> None:
        async with started() as h:
            sim, client = h.sim, h.client()
            sim.set_price("IBM", Decimal("100"))
            req = LimitOrderRequest(
                symbol="IBM",
                qty=2,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.GTC,
                limit_price=90,
                client_order_id="my-limit-1",
            )
            order = await call(client.submit_order, req)
            assert order.client_order_id == "my-limit-1"
            assert order.limit_price == "90.00"
            open_orders = await call(client.get_orders)
            assert [o.id for o in open_orders] == [order.id]
            assert await call(client.cancel_order_by_id, order.id) is None
            canceled = await call(client.get_order_by_id, order.id)
            assert canceled.status == OrderStatus.CANCELED
            assert canceled.canceled_at is not None
            with pytest.raises(APIError) as err:  # not cancelable twice
                await call(client.cancel_order_by_id, order.id)
            assert err.value.status_code == 422

    run(body)


def test_limit_order_fills_when_price_crosses() -> None:
    async def body() -> None:
        async with started() as h:
            sim, client = h.sim, h.client()
            sim.set_price("IBM", Decimal("100"))
            req = LimitOrderRequest(
                symbol="IBM",
                qty=3,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.DAY,
                limit_price=95,
            )
            order = await call(client.submit_order, req)
            await wait_until(lambda: sim.tick >= 3)
            assert sim.account(KEY).orders[str(order.id)].status == "new"
            sim.set_price("IBM", Decimal("94.5"))
            await wait_until(lambda: sim.account(KEY).position_qty("IBM") == 3)
            done = await call(client.get_order_by_id, order.id)
            assert done.status == OrderStatus.FILLED
            assert done.filled_avg_price == "94.50"

    run(body)


def test_error_cases() -> None:
    async def body() -> None:
        async with started(cash=Decimal("1000")) as h:
            sim = h.sim
            sim.set_price("AAPL", Decimal("100"))
            with pytest.raises(APIError) as err:
                await call(h.client(KEY, "wrong").get_account)
            assert err.value.status_code == 401
            assert err.value.code == 40110000
            assert err.value.message == "request is not authorized"
            with pytest.raises(APIError) as err:
                await call(h.client("nobody", "x").get_all_positions)
            assert err.value.status_code == 401

            client = h.client()
            with pytest.raises(APIError) as err:
                await call(client.submit_order, market("NOPE", 1))
            assert err.value.status_code == 422
            assert err.value.code == 40010001
            assert "not found" in err.value.message
            with pytest.raises(APIError) as err:
                await call(client.submit_order, market("AAPL", 11))
            assert err.value.status_code == 403
            assert err.value.code == 40310000
            assert err.value.message == "insufficient buying power"
            with pytest.raises(APIError) as err:
                await call(client.get_open_position, "IBM")
            assert err.value.status_code == 404
            with pytest.raises(APIError) as err:
                await call(client.get_order_by_id, "00000000-0000-0000-0000-000000000000")
            assert err.value.status_code == 404
            # still alive
            assert (await call(client.get_account)).cash == "1000.00"

    run(body)


def test_raw_bad_input_gets_alpaca_errors_and_server_survives() -> None:
    async def body() -> None:
        async with started() as h:
            base = h.sim.trading_url
            headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}

            def post(data: bytes) -> requests.Response:
                return requests.post(f"{base}/v2/orders", data=data, headers=headers, timeout=5)

            r = await call(post, b"{not json")
            assert r.status_code == 400
            assert r.json() == {"code": 40010000, "message": "request body format is invalid"}
            cases = [
                {
                    "symbol": "AAPL",
                    "qty": "-3",
                    "side": "buy",
                    "type": "market",
                    "time_in_force": "day",
                },
                {
                    "symbol": "AAPL",
                    "qty": "1",
                    "side": "up",
                    "type": "market",
                    "time_in_force": "day",
                },
                {
                    "symbol": "AAPL",
                    "qty": "1",
                    "side": "buy",
                    "type": "stop",
                    "time_in_force": "day",
                },
                {
                    "symbol": "AAPL",
                    "qty": "1",
                    "side": "buy",
                    "type": "limit",
                    "time_in_force": "day",
                },
                {
                    "symbol": "AAPL",
                    "qty": [1],
                    "side": "buy",
                    "type": "market",
                    "time_in_force": "day",
                },
                ["not", "an", "object"],
            ]
            for case in cases:
                r = await call(post, json.dumps(case).encode())
                assert r.status_code == 422, case
                assert r.json()["code"] == 40010001
                assert isinstance(r.json()["message"], str)

            def get(path: str, params: dict[str, str] | None = None) -> requests.Response:
                return requests.get(f"{base}{path}", headers=headers, timeout=5, params=params)

            for params in ({"status": "weird"}, {"limit": "x"}, {"limit": "0"}, {"after": "nope"}):
                r = await call(get, "/v2/orders", params=params)
                assert r.status_code == 422, params
            r = await call(get, "/v2/nothing-here")
            assert r.status_code == 404
            assert r.json()["code"] == 40410000
            r = await call(lambda: requests.put(f"{base}/v2/account", headers=headers, timeout=5))
            assert r.status_code == 405
            assert "code" in r.json()
            r = await call(get, "/v2/account")
            assert r.status_code == 200
            assert r.json()["cash"] == "100000.00"

    run(body)


def test_accept_any_key_creates_accounts() -> None:
    async def body() -> None:
        async with started(accept_any_key=True) as h:
            account = await call(h.client("fresh", "pair").get_account)
            assert account.cash == "100000.00"
            assert h.sim.account("fresh").secret == "pair"
            with pytest.raises(APIError):  # a known key still needs its own secret
                await call(h.client("fresh", "other").get_account)

    run(body)
