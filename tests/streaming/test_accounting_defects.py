"""Reproductions of the accounting defects of issue 8 (each failed before the fix).

1. A REST sync replaced the exact average entry price with the broker's rounded rendering.
2. A fill landing between the sync's account read and its positions read never moved cash.
3. A fill carrying an older order version was dropped before the execution-id check.
"""

from __future__ import annotations

import asyncio
import copy
from decimal import Decimal
from typing import Any

from streaming.alpaca_bridge import AlpacaBridge, BridgeAccount, Endpoints
from streaming.simulator.book import parse_order_request, trade_update
from tests.simulator.helpers import KEY, SECRET, started
from tests.streaming.test_portfolio import ACCOUNT, data, fill, order, position, synced_state
from tests.streaming.test_service import make


def test_sync_keeps_the_exact_average_entry_when_the_broker_shows_it_rounded() -> None:
    """Buy 1 @ 100.00 and 299 @ 100.01, price 100.02: P&L 3.01 before and after the sync."""
    state, _ = synced_state(cash="100000", multiplier="1", buying_power="100000")
    state.apply_trade_update(fill("buy", "1", "100.00", position_qty="1"))
    state.apply_trade_update(fill("buy", "299", "100.01", position_qty="300"))
    state.apply_price("AAPL", "100.02")
    assert position(state, "AAPL")["unrealizedPnl"] == "3.01"  # 30006 - 30002.99
    # The broker renders the same average (30002.99 / 300 = 100.00996…) with 4 decimals.
    broker = [
        {
            "symbol": "AAPL",
            "qty": "300",
            "avg_entry_price": "100.01",
            "side": "long",
            "current_price": "100.02",
        }
    ]
    cash = str(Decimal(100000) - Decimal("30002.99"))
    changes = state.sync({**ACCOUNT, "cash": cash, "multiplier": "1"}, broker)
    assert [t for t, _ in changes if t == "position_update"] == []
    assert position(state, "AAPL")["unrealizedPnl"] == "3.01"
    assert position(state, "AAPL")["entryPrice"] == "100.01"
    # Later fills average from the exact value: (30002.99 + 100 × 100.02) / 400.
    state.apply_trade_update(fill("buy", "100", "100.02", position_qty="400"))
    assert position(state, "AAPL")["unrealizedPnl"] == "3.01"  # 40008 - 40004.99


def test_sync_still_corrects_an_average_that_truly_differs() -> None:
    state, _ = synced_state(cash="100000", multiplier="1")
    state.apply_trade_update(fill("buy", "10", "100", position_qty="10"))
    broker = [{"symbol": "AAPL", "qty": "10", "avg_entry_price": "100.02", "current_price": "100"}]
    changes = state.sync({**ACCOUNT, "cash": "99000", "multiplier": "1"}, broker)
    assert data(changes, "position_update")["entryPrice"] == "100.02"


def _partial_and_fill() -> tuple[dict[str, Any], dict[str, Any]]:
    """Order ord-x for 10: partial_fill 4 @ 50.00 (version 1), then fill 6 @ 50.10 (version 2)."""
    first = fill("buy", "4", "50.00", event="partial_fill", position_qty="4", order_id="ord-x")
    second = fill("buy", "6", "50.10", position_qty="10", order_id="ord-x")
    for update, filled, avg in ((first, "4", "50.00"), (second, "10", "50.06")):
        update["order"].update(qty="10", filled_qty=filled, filled_avg_price=avg)
    return first, second


def test_partial_fill_arriving_after_its_orders_fill_still_counts() -> None:
    state, _ = synced_state(cash="100000", multiplier="1", buying_power="100000")
    first, second = _partial_and_fill()
    state.apply_trade_update(second)
    late = state.apply_trade_update(first)
    # The order itself stays at its newer version; the execution is applied and published.
    assert [t for t, _ in late] == ["trade_executed", "position_update", "account_update"]
    assert data(late, "trade_executed")["qty"] == "4"
    assert position(state, "AAPL")["quantity"] == "10"
    assert position(state, "AAPL")["entryPrice"] == "50.06"
    assert state.account()["cash"] == "99499.40"
    assert state.orders()[0]["status"] == "filled"
    assert len(state.trades()) == 2
    assert state.apply_trade_update(copy.deepcopy(first)) == []  # once only


def test_execution_older_than_the_order_version_a_sync_stored_is_published_once() -> None:
    state, _ = synced_state(cash="100000", multiplier="1", buying_power="100000")
    first, _ = _partial_and_fill()
    newer = order("ord-x", "partially_filled", "2024-05-14T14:45:00Z", qty="10", filled_qty="4")
    newer.update(type="market", limit_price=None, filled_avg_price="50.00")
    state.sync(
        {**ACCOUNT, "cash": "99800", "multiplier": "1"},
        [{"symbol": "AAPL", "qty": "4", "avg_entry_price": "50", "current_price": "50"}],
        [newer],
    )
    changes = state.apply_trade_update(first)
    assert [t for t, _ in changes] == ["trade_executed", "position_update"]
    assert state.account()["cash"] == "99800.00"  # the sync already counted it
    assert position(state, "AAPL")["quantity"] == "4"
    assert state.apply_trade_update(copy.deepcopy(first)) == []


def test_fill_between_the_syncs_account_and_positions_reads_moves_cash_once() -> None:
    """The broker fills an order after GET /v2/account and before GET /v2/positions."""

    async def main() -> None:
        async with started() as harness:
            sim = harness.sim
            loop = asyncio.get_running_loop()
            service, _, _, _ = make()
            bridge = AlpacaBridge(
                service,
                [BridgeAccount("1", KEY, SECRET)],
                data_key=KEY,
                data_secret=SECRET,
                endpoints=Endpoints(trading_url=sim.trading_url),
            )
            account = bridge.accounts[0]
            assert await bridge.sync_account(account)
            pending: list[dict[str, Any]] = []

            def fill_now() -> None:
                acct = sim.account(KEY)
                spec = parse_order_request(
                    {
                        "symbol": "AAPL",
                        "qty": "3",
                        "side": "buy",
                        "type": "market",
                        "time_in_force": "day",
                    },
                    sim.symbols,
                )
                new = acct.create_order(spec, sim.price)
                ex = acct.execute(new, Decimal(3), sim.price("AAPL"))
                pending.append(trade_update(ex.event, new, ex.timestamp, ex)["data"])

            client = bridge._client(account)
            real = client.get_all_positions

            def positions_after_a_fill(*args: Any, **kwargs: Any) -> Any:
                if not pending:
                    asyncio.run_coroutine_threadsafe(_call(fill_now), loop).result(5)
                return real(*args, **kwargs)

            client.get_all_positions = positions_after_a_fill
            assert await bridge.sync_account(account)
            assert pending
            service.on_trade_update("1", pending[0])  # the stream event arrives afterwards
            broker = sim.account(KEY).account_json(sim.price)
            state = service.state("1")
            assert state is not None
            got = state.account()
            assert got is not None
            assert Decimal(got["cash"]) == Decimal(broker["cash"])
            assert position(state, "AAPL")["quantity"] == "3"

    async def _call(fn: Any) -> None:
        fn()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_two_executions_of_one_order_counted_by_a_sync_are_not_counted_again() -> None:
    """Both executions happened before the REST reads; their events arrive after the sync."""
    state, _ = synced_state(cash="100000", multiplier="1", buying_power="100000")
    first, second = _partial_and_fill()
    done = copy.deepcopy(second["order"])  # GET /v2/orders?status=closed lists it, filled 10
    state.sync(
        {**ACCOUNT, "cash": "99499.40", "multiplier": "1"},
        [{"symbol": "AAPL", "qty": "10", "avg_entry_price": "50.06", "current_price": "50.10"}],
        [],
        [done],
    )
    for update in (first, second):
        changes = state.apply_trade_update(update)
        assert "trade_executed" in [t for t, _ in changes]
        assert "account_update" not in [t for t, _ in changes]
    assert position(state, "AAPL")["quantity"] == "10"
    assert state.account()["cash"] == "99499.40"
    assert len(state.trades()) == 2


def test_executions_of_one_order_out_of_order_without_order_lists() -> None:
    """5 + 5 of a 10-share order, the fill delivered first: position_qty must not mislead."""
    state, _ = synced_state(cash="100000", multiplier="1", buying_power="100000")
    first = fill("buy", "5", "50.00", event="partial_fill", position_qty="5", order_id="ord-y")
    second = fill("buy", "5", "50.10", position_qty="10", order_id="ord-y")
    first["order"].update(qty="10", filled_qty="5")
    second["order"].update(qty="10", filled_qty="10")
    state.apply_trade_update(second)
    state.apply_trade_update(first)  # position_qty 5 equals what we hold, but it is new
    assert position(state, "AAPL")["quantity"] == "10"
    assert position(state, "AAPL")["entryPrice"] == "50.05"
    assert state.account()["cash"] == "99499.50"
