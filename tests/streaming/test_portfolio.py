"""Behaviour of PortfolioState, with hand-worked values (see docs/pnl.md for the arithmetic)."""

import copy
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from streaming.portfolio import PortfolioState, format_timestamp, parse_timestamp

# The fill example of /work/shared/alpaca-protocol.md, verbatim (the `data` of the message).
FILL_EXAMPLE: dict[str, Any] = {
    "event": "fill",
    "execution_id": "7a1d9f9c-3b9b-4a7e-9e2a-0f4f1d6f5b21",
    "timestamp": "2024-05-14T14:31:02.123456789Z",
    "price": "187.32",
    "qty": "10",
    "position_qty": "10",
    "order": {
        "id": "61e69015-8549-4bfd-b9c3-01e75843f47d",
        "client_order_id": "eb9e2aaa-f71a-4f51-b5b4-52a6c565dad4",
        "created_at": "2024-05-14T14:31:01.998765Z",
        "updated_at": "2024-05-14T14:31:02.130000Z",
        "submitted_at": "2024-05-14T14:31:02.001000Z",
        "filled_at": "2024-05-14T14:31:02.123456Z",
        "expired_at": None,
        "canceled_at": None,
        "failed_at": None,
        "replaced_at": None,
        "replaced_by": None,
        "replaces": None,
        "asset_id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415",
        "symbol": "AAPL",
        "asset_class": "us_equity",
        "notional": None,
        "qty": "10",
        "filled_qty": "10",
        "filled_avg_price": "187.32",
        "order_class": "",
        "order_type": "market",
        "type": "market",
        "side": "buy",
        "time_in_force": "day",
        "limit_price": None,
        "stop_price": None,
        "status": "filled",
        "extended_hours": False,
        "legs": None,
        "trail_percent": None,
        "trail_price": None,
        "hwm": None,
        "position_intent": "buy_to_open",
    },
}

# GET /v2/account, trimmed to the fields Alpaca documents for it.
ACCOUNT: dict[str, Any] = {
    "id": "904837e3-3b76-47ec-b432-046db621571b",
    "account_number": "PA3W8ZQ0XX7A",
    "status": "ACTIVE",
    "currency": "USD",
    "cash": "100000",
    "portfolio_value": "100000",
    "equity": "100000",
    "last_equity": "99000",
    "buying_power": "200000",
    "regt_buying_power": "200000",
    "multiplier": "2",
    "long_market_value": "0",
    "short_market_value": "0",
    "initial_margin": "0",
    "maintenance_margin": "0",
    "daytrade_count": 0,
    "shorting_enabled": True,
    "trading_blocked": False,
    "account_blocked": False,
}

SYNC_TIME = datetime(2024, 5, 14, 15, 0, tzinfo=UTC)
SYNC_ISO = "2024-05-14T15:00:00.000000Z"
FILL_ISO = "2024-05-14T14:31:02.123456Z"


class Clock:
    def __init__(self, start=SYNC_TIME):
        self.now = start

    def __call__(self):
        return self.now


def make_state(**kwargs):
    clock = Clock()
    return PortfolioState("acct-1", now=clock, **kwargs), clock


def synced_state(**account):
    state, clock = make_state()
    state.sync({**ACCOUNT, **account}, [])
    return state, clock


_ids = itertools.count(1)


def rest_position(symbol, qty, avg, current=None, side=None, lastday=...):
    side = side or ("short" if str(qty).startswith("-") else "long")
    return {
        "asset_id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415",
        "symbol": symbol,
        "exchange": "NASDAQ",
        "asset_class": "us_equity",
        "asset_marginable": True,
        "qty": qty,
        "qty_available": qty,
        "avg_entry_price": avg,
        "side": side,
        "market_value": None,
        "cost_basis": None,
        "unrealized_pl": None,
        "unrealized_plpc": None,
        "current_price": current,
        "lastday_price": current if lastday is ... else lastday,
        "change_today": "0",
    }


def fill(
    side,
    qty,
    price,
    *,
    symbol="AAPL",
    position_qty=None,
    event="fill",
    minute=0,
    order_id=None,
    execution_id=None,
):
    """A fill for a fresh order; the n-th call is one second later than the previous one."""
    n = next(_ids)
    at = datetime(2024, 5, 14, 14, 31, 2, tzinfo=UTC) + timedelta(minutes=minute, seconds=n)
    update = copy.deepcopy(FILL_EXAMPLE)
    update.update(
        event=event,
        execution_id=execution_id or f"exec-{n}",
        timestamp=at.isoformat().replace("+00:00", "Z"),
        price=price,
        qty=qty,
        position_qty=position_qty,
    )
    update["order"].update(
        id=order_id or f"order-{n}",
        client_order_id=f"client-{n}",
        symbol=symbol,
        side=side,
        qty=qty,
        filled_qty=qty,
        filled_avg_price=price,
        status="filled" if event == "fill" else "partially_filled",
        updated_at=at.isoformat().replace("+00:00", "Z"),
        filled_at=at.isoformat().replace("+00:00", "Z"),
    )
    return update


def data(changes, kind):
    found = [d for t, d in changes if t == kind]
    assert len(found) == 1, changes
    return found[0]


def position(state, symbol):
    return next(p for p in state.positions() if p["symbol"] == symbol)


def snapshot(state):
    return (
        state.positions(),
        state.orders(),
        state.trades(),
        state.account(),
        state.symbols(),
    )


# --------------------------------------------------------------------------------------------
# The fill example, end to end
# --------------------------------------------------------------------------------------------


def test_fill_example_produces_the_four_changes_in_order_with_exact_values():
    state, _ = synced_state()
    changes = state.apply_trade_update(copy.deepcopy(FILL_EXAMPLE))

    assert [t for t, _ in changes] == [
        "order_update",
        "trade_executed",
        "position_update",
        "account_update",
    ]
    assert changes[0][1] == {
        "orderId": "eb9e2aaa-f71a-4f51-b5b4-52a6c565dad4",
        "brokerOrderId": "61e69015-8549-4bfd-b9c3-01e75843f47d",
        "symbol": "AAPL",
        "side": "buy",
        "type": "market",
        "status": "filled",
        "qty": "10",
        "filledQty": "10",
        "filledAvgPrice": "187.32",
        "submittedAt": "2024-05-14T14:31:02.001000Z",
        "filledAt": "2024-05-14T14:31:02.123456Z",
        "updatedAt": "2024-05-14T14:31:02.130000Z",
    }
    assert changes[1][1] == {
        "executionId": "7a1d9f9c-3b9b-4a7e-9e2a-0f4f1d6f5b21",
        "orderId": "eb9e2aaa-f71a-4f51-b5b4-52a6c565dad4",
        "brokerOrderId": "61e69015-8549-4bfd-b9c3-01e75843f47d",
        "symbol": "AAPL",
        "side": "buy",
        "qty": "10",
        "price": "187.32",
        "positionQty": "10",
        "partial": False,
        "timestamp": FILL_ISO,  # nanoseconds truncated to microseconds
    }
    assert changes[2][1] == {
        "symbol": "AAPL",
        "quantity": "10",
        "currentPrice": "187.32",
        "entryPrice": "187.32",
        "unrealizedPnl": "0.00",
        "unrealizedPnlPercent": "0.00",
        "realizedPnl": "0.00",
        "realizedPnlToday": "0.00",
        "lastdayPrice": None,  # opened by a fill before any sync told the previous close
        "dayPnl": "0.00",  # all of it opened today: 10 × 187.32 − 1873.20
        "marketValue": "1873.20",
        "side": "long",
        "openedAt": FILL_ISO,
        "updatedAt": FILL_ISO,
    }
    # cash 100000 - 10*187.32 = 98126.80; equity = 98126.80 + 1873.20 = 100000.00
    # dayPnl = 100000 - 99000 = 1000.00; 1000/99000*100 = 1.0101.. -> 1.01
    # buyingPower (margin, Reg T) = 2 * 100000 - 1873.20 = 198126.80
    assert changes[3][1] == {
        "equity": "100000.00",
        "buyingPower": "198126.80",
        "cash": "98126.80",
        "portfolioValue": "100000.00",
        "dayPnl": "1000.00",
        "dayPnlPercent": "1.01",
        "realizedPnlToday": "0.00",
        "timestamp": FILL_ISO,
    }
    assert state.symbols() == {"AAPL"}
    assert state.positions() == [changes[2][1]]
    assert state.trades() == [changes[1][1]]
    assert state.orders() == [changes[0][1]]
    assert state.account() == changes[3][1]


def test_price_move_on_long_position_updates_pnl_and_account():
    state, _ = synced_state()
    state.apply_trade_update(copy.deepcopy(FILL_EXAMPLE))
    at = datetime(2024, 5, 14, 14, 35, tzinfo=UTC)

    changes = state.apply_price("AAPL", 190.10, at=at)  # a float, as msgpack delivers it

    assert [t for t, _ in changes] == ["position_update", "account_update"]
    pos = changes[0][1]
    # (190.10 - 187.32) * 10 = 27.80; 27.80 / 1873.20 * 100 = 1.4841.. -> 1.48
    assert pos["currentPrice"] == "190.10"
    assert pos["marketValue"] == "1901.00"
    assert pos["unrealizedPnl"] == "27.80"
    assert pos["unrealizedPnlPercent"] == "1.48"
    assert pos["openedAt"] == FILL_ISO
    assert pos["updatedAt"] == "2024-05-14T14:35:00.000000Z"
    # equity 98126.80 + 1901.00 = 100027.80; dayPnl 1027.80; 1027.80/99000*100 = 1.0382 -> 1.04
    acct = changes[1][1]
    assert acct["equity"] == "100027.80"
    assert acct["portfolioValue"] == "100027.80"
    assert acct["dayPnl"] == "1027.80"
    assert acct["dayPnlPercent"] == "1.04"
    assert acct["cash"] == "98126.80"
    # a margin account's buying power follows the marks: 2 * 100027.80 - 1901.00
    assert acct["buyingPower"] == "198154.60"
    assert acct["timestamp"] == "2024-05-14T14:35:00.000000Z"


def test_apply_price_ignores_unheld_symbols_same_price_and_old_ticks():
    state, clock = synced_state()
    state.apply_trade_update(copy.deepcopy(FILL_EXAMPLE))
    before = snapshot(state)

    assert state.apply_price("MSFT", "400") == []
    assert state.apply_price("AAPL", "187.32") == []  # nothing visible changes
    older = datetime(2024, 5, 14, 14, 31, 1, tzinfo=UTC)  # before the fill
    assert state.apply_price("AAPL", "150", at=older) == []
    assert snapshot(state) == before

    clock.now = SYNC_TIME + timedelta(seconds=5)
    changes = state.apply_price("aapl", Decimal("187.5"))  # no `at`: now(); symbol upper-cased
    assert data(changes, "position_update")["updatedAt"] == "2024-05-14T15:00:05.000000Z"
    assert data(changes, "position_update")["currentPrice"] == "187.50"


# --------------------------------------------------------------------------------------------
# Position arithmetic
# --------------------------------------------------------------------------------------------


def test_average_entry_across_several_buys():
    state, _ = make_state()
    state.apply_trade_update(fill("buy", "10", "100"))
    state.apply_trade_update(fill("buy", "5", "106"))
    changes = state.apply_trade_update(fill("buy", "5", "110.33", position_qty="20"))

    # (10*100 + 5*106 + 5*110.33) / 20 = 2081.65 / 20 = 104.0825
    pos = data(changes, "position_update")
    assert pos["quantity"] == "20"
    assert pos["entryPrice"] == "104.0825"
    assert pos["currentPrice"] == "110.33"
    # (110.33 - 104.0825) * 20 = 124.95; 124.95 / 2081.65 * 100 = 6.0024.. -> 6.00
    assert pos["unrealizedPnl"] == "124.95"
    assert pos["unrealizedPnlPercent"] == "6.00"
    assert pos["marketValue"] == "2206.60"

    changes = state.apply_price("AAPL", "105")
    # (105 - 104.0825) * 20 = 18.35; 18.35 / 2081.65 * 100 = 0.8815.. -> 0.88
    pos = data(changes, "position_update")
    assert (pos["unrealizedPnl"], pos["unrealizedPnlPercent"]) == ("18.35", "0.88")


def test_average_entry_keeps_full_precision_internally():
    state, _ = make_state()
    state.apply_trade_update(fill("buy", "1", "100"))
    changes = state.apply_trade_update(fill("buy", "2", "100.01"))
    # (100 + 200.02) / 3 = 100.00666.. -> wire 100.0067; pnl = (100.01 - 100.00666..) * 3 = 0.01
    pos = data(changes, "position_update")
    assert pos["entryPrice"] == "100.0067"
    assert pos["unrealizedPnl"] == "0.01"
    # 0.01 / 300.02 * 100 = 0.00333 -> 0.00
    assert pos["unrealizedPnlPercent"] == "0.00"


def test_fractional_quantities():
    state, _ = make_state()
    changes = state.apply_trade_update(fill("buy", "0.5", "187.32", position_qty="0.5"))
    pos = data(changes, "position_update")
    assert pos["quantity"] == "0.5"
    assert pos["marketValue"] == "93.66"
    assert data(changes, "trade_executed")["positionQty"] == "0.5"


def test_partial_fills_then_fill_of_one_order():
    state, _ = synced_state()
    first = fill("buy", "4", "50.00", event="partial_fill", position_qty="4", order_id="ord-x")
    first["order"].update(qty="10", filled_qty="4", filled_avg_price="50")
    second = fill("buy", "6", "50.10", position_qty="10", order_id="ord-x")
    second["order"].update(qty="10", filled_qty="10", filled_avg_price="50.06")

    c1 = state.apply_trade_update(first)
    assert data(c1, "order_update")["status"] == "partially_filled"
    assert data(c1, "order_update")["filledQty"] == "4"
    assert data(c1, "trade_executed")["partial"] is True
    assert data(c1, "trade_executed")["qty"] == "4"
    assert data(c1, "position_update")["quantity"] == "4"
    assert state.orders(open_only=True) == [data(c1, "order_update")]

    c2 = state.apply_trade_update(second)
    assert data(c2, "order_update")["status"] == "filled"
    assert data(c2, "order_update")["filledAvgPrice"] == "50.06"
    assert data(c2, "trade_executed")["partial"] is False
    assert data(c2, "trade_executed")["qty"] == "6"
    assert data(c2, "trade_executed")["positionQty"] == "10"
    pos = data(c2, "position_update")
    # (4*50 + 6*50.10) / 10 = 500.60 / 10 = 50.06
    assert (pos["quantity"], pos["entryPrice"], pos["currentPrice"]) == ("10", "50.06", "50.10")
    assert pos["unrealizedPnl"] == "0.40"  # (50.10 - 50.06) * 10
    # the opening time is the first execution's
    assert pos["openedAt"] == data(c1, "position_update")["openedAt"]
    # one order, two executions (newest last), no open orders left
    assert len(state.orders()) == 1
    assert state.orders(open_only=True) == []
    assert [t["qty"] for t in state.trades()] == ["4", "6"]
    # cash: 100000 - 200 - 300.60 = 99499.40
    assert state.account()["cash"] == "99499.40"


def test_partial_sell_keeps_average_entry_and_credits_cash():
    state, _ = synced_state()
    opened = data(state.apply_trade_update(fill("buy", "10", "100")), "position_update")
    changes = state.apply_trade_update(fill("sell", "4", "110", position_qty="6"))

    pos = data(changes, "position_update")
    assert (pos["quantity"], pos["side"], pos["entryPrice"]) == ("6", "long", "100.00")
    # (110 - 100) * 6 = 60.00; 60 / 600 * 100 = 10.00
    assert (pos["unrealizedPnl"], pos["unrealizedPnlPercent"]) == ("60.00", "10.00")
    assert pos["marketValue"] == "660.00"
    assert pos["openedAt"] == opened["openedAt"]
    assert data(changes, "trade_executed")["side"] == "sell"
    # cash 100000 - 1000 + 440 = 99440; equity 99440 + 660 = 100100
    acct = data(changes, "account_update")
    assert (acct["cash"], acct["equity"], acct["dayPnl"]) == ("99440.00", "100100.00", "1100.00")


def test_selling_everything_closes_the_position():
    state, _ = synced_state()
    state.apply_trade_update(fill("buy", "10", "100"))
    changes = state.apply_trade_update(fill("sell", "10", "105", position_qty="0"))

    pos = data(changes, "position_update")
    assert pos["symbol"] == "AAPL"
    assert pos["quantity"] == "0"
    assert pos["side"] == "long"
    assert (pos["marketValue"], pos["unrealizedPnl"], pos["unrealizedPnlPercent"]) == (
        "0.00",
        "0.00",
        "0.00",
    )
    assert (pos["entryPrice"], pos["currentPrice"]) == ("100.00", "105.00")
    assert data(changes, "trade_executed")["positionQty"] == "0"
    assert state.positions() == []
    assert state.symbols() == set()
    # realised gain shows up in cash: 100000 - 1000 + 1050 = 100050
    acct = data(changes, "account_update")
    assert (acct["cash"], acct["equity"]) == ("100050.00", "100050.00")
    # a later tick for the closed symbol is ignored
    assert state.apply_price("AAPL", "120") == []


def test_flip_long_to_short_opens_a_new_position_at_the_fill_price():
    state, _ = make_state()
    opened = data(state.apply_trade_update(fill("buy", "10", "100")), "position_update")
    flip = fill("sell", "15", "120", position_qty="-5")
    changes = state.apply_trade_update(flip)

    pos = data(changes, "position_update")
    assert (pos["quantity"], pos["side"], pos["entryPrice"]) == ("5", "short", "120.00")
    assert pos["marketValue"] == "-600.00"  # negative for a short, as Alpaca
    assert pos["unrealizedPnl"] == "0.00"
    assert pos["openedAt"] == format_timestamp(parse_timestamp(flip["timestamp"]))
    assert pos["openedAt"] != opened["openedAt"]
    assert data(changes, "trade_executed")["positionQty"] == "-5"


def test_short_pnl_sign():
    state, _ = make_state()
    state.apply_trade_update(fill("sell", "5", "120", position_qty="-5"))

    down = data(state.apply_price("AAPL", "110"), "position_update")
    # (110 - 120) * -5 = +50.00 (a short gains when the price falls); 50 / 600 * 100 = 8.333 -> 8.33
    assert (down["unrealizedPnl"], down["unrealizedPnlPercent"]) == ("50.00", "8.33")
    assert down["marketValue"] == "-550.00"

    up = data(state.apply_price("AAPL", "125"), "position_update")
    # (125 - 120) * -5 = -25.00; -25 / 600 * 100 = -4.1666 -> -4.17
    assert (up["unrealizedPnl"], up["unrealizedPnlPercent"]) == ("-25.00", "-4.17")
    assert up["marketValue"] == "-625.00"


def test_short_cover_and_add():
    state, _ = make_state()
    state.apply_trade_update(fill("sell", "10", "50"))
    covered = data(state.apply_trade_update(fill("buy", "4", "45")), "position_update")
    # covering keeps the entry; (45 - 50) * -6 = 30.00
    assert (covered["quantity"], covered["side"], covered["entryPrice"]) == ("6", "short", "50.00")
    assert covered["unrealizedPnl"] == "30.00"

    added = data(state.apply_trade_update(fill("sell", "10", "60")), "position_update")
    # (-6*50 + -10*60) / -16 = 56.25
    assert (added["quantity"], added["entryPrice"]) == ("16", "56.25")
    # (60 - 56.25) * -16 = -60.00; -60 / 900 * 100 = -6.666 -> -6.67
    assert (added["unrealizedPnl"], added["unrealizedPnlPercent"]) == ("-60.00", "-6.67")

    closed = data(state.apply_trade_update(fill("buy", "16", "55")), "position_update")
    assert (closed["quantity"], closed["side"]) == ("0", "short")
    assert state.positions() == []


def test_flip_short_to_long():
    state, _ = make_state()
    state.apply_trade_update(fill("sell", "3", "10"))
    pos = data(state.apply_trade_update(fill("buy", "5", "9")), "position_update")
    assert (pos["quantity"], pos["side"], pos["entryPrice"]) == ("2", "long", "9.00")


@pytest.mark.parametrize(
    ("price", "pnl", "percent"),
    [
        # entry 100, 8 shares, cost 800: pnl 9.00 -> 9/800*100 = 1.125 exactly -> 1.13 (half up)
        ("101.125", "9.00", "1.13"),
        ("98.875", "-9.00", "-1.13"),
        # 0.0625 % -> 0.06; 0.005 % -> 0.01
        ("100.0625", "0.50", "0.06"),
        ("100.005", "0.04", "0.01"),
    ],
)
def test_percent_rounding_half_up(price, pnl, percent):
    state, _ = make_state()
    state.apply_trade_update(fill("buy", "8", "100"))
    pos = data(state.apply_price("AAPL", price), "position_update")
    assert (pos["unrealizedPnl"], pos["unrealizedPnlPercent"]) == (pnl, percent)


def test_position_qty_is_reported_but_quantities_follow_the_executions():
    """``position_qty`` may already include executions whose events are still on their way."""
    state, _ = make_state()
    changes = state.apply_trade_update(fill("buy", "10", "100", position_qty="12"))
    pos = data(changes, "position_update")
    assert (pos["quantity"], pos["entryPrice"]) == ("10", "100.00")
    assert data(changes, "trade_executed")["positionQty"] == "12"
    changes = state.apply_trade_update(fill("sell", "10", "110", position_qty="2"))
    closed = data(changes, "position_update")
    assert (closed["quantity"], closed["realizedPnl"]) == ("0", "100.00")
    assert state.symbols() == set()


def test_fills_before_the_first_account_sync_emit_no_account_update():
    state, _ = make_state()
    assert state.account() is None
    changes = state.apply_trade_update(copy.deepcopy(FILL_EXAMPLE))
    assert [t for t, _ in changes] == ["order_update", "trade_executed", "position_update"]
    assert state.account() is None
    assert state.apply_price("AAPL", "190") == [("position_update", position(state, "AAPL"))]


# --------------------------------------------------------------------------------------------
# Account
# --------------------------------------------------------------------------------------------


def test_account_with_a_short_position():
    state, _ = synced_state(last_equity="100000", buying_power="100000", multiplier="1")
    changes = state.apply_trade_update(fill("sell", "10", "50", position_qty="-10"))
    acct = data(changes, "account_update")
    # cash 100000 + 500 = 100500; equity = 100500 + (-10 * 50) = 100000.00
    assert (acct["cash"], acct["equity"], acct["dayPnl"], acct["dayPnlPercent"]) == (
        "100500.00",
        "100000.00",
        "0.00",
        "0.00",
    )
    assert acct["buyingPower"] == "100500.00"  # a cash account's buying power is its cash

    acct = data(state.apply_price("AAPL", "40"), "account_update")
    # equity = 100500 - 400 = 100100.00; dayPnl 100.00; 100/100000*100 = 0.10
    assert (acct["equity"], acct["dayPnl"], acct["dayPnlPercent"]) == (
        "100100.00",
        "100.00",
        "0.10",
    )


def test_margin_buying_power_falls_with_a_short_sale_and_follows_the_marks():
    """Example 7b: Reg T buying power = 2 × equity − (long + |short| market value)."""
    state, _ = synced_state(last_equity="100000", buying_power="200000", multiplier="2")
    acct = data(state.apply_trade_update(fill("sell", "10", "100")), "account_update")
    # cash 101000, equity 100000, gross 1000: 200000 - 1000 (the old rule rose to 201000)
    assert (acct["cash"], acct["equity"], acct["buyingPower"]) == (
        "101000.00",
        "100000.00",
        "199000.00",
    )
    acct = data(state.apply_price("AAPL", "110"), "account_update")
    assert acct["buyingPower"] == "198700.00"  # equity 99900: 199800 - 1100


def test_pattern_day_trader_buying_power_is_used_by_opening_and_never_negative():
    # multiplier 4: buying_power is the day-trading buying power (Alpaca's account docs)
    state, _ = synced_state(cash="1000", buying_power="4000", multiplier="4", last_equity="1000")
    acct = data(state.apply_trade_update(fill("buy", "5", "100")), "account_update")
    assert acct["buyingPower"] == "3500.00"  # 4000 - 5 * 100 opened today
    acct = data(state.apply_trade_update(fill("buy", "6", "100")), "account_update")
    assert acct["cash"] == "-100.00"
    assert acct["buyingPower"] == "2900.00"
    acct = data(state.apply_trade_update(fill("sell", "11", "90")), "account_update")
    assert acct["buyingPower"] == "4000.00"  # closing today's shares restores their cost
    acct = data(state.apply_trade_update(fill("buy", "41", "100")), "account_update")
    assert acct["buyingPower"] == "0.00"  # 4000 - 4100 -> 0


def test_cash_account_buying_power_is_the_cash():
    state, _ = synced_state(cash="1000", buying_power="1000", multiplier="1", last_equity="1000")
    acct = data(state.apply_trade_update(fill("buy", "5", "100")), "account_update")
    assert acct["buyingPower"] == "500.00"
    acct = data(state.apply_trade_update(fill("buy", "6", "100")), "account_update")
    assert (acct["cash"], acct["buyingPower"]) == ("-100.00", "0.00")


def test_day_pnl_percent_is_zero_when_last_equity_is_zero():
    state, _ = make_state()
    changes = state.sync({**ACCOUNT, "cash": "500", "last_equity": "0"}, [])
    acct = data(changes, "account_update")
    assert (acct["equity"], acct["dayPnl"], acct["dayPnlPercent"]) == ("500.00", "500.00", "0.00")


def test_account_defaults_when_optional_fields_are_missing():
    state, _ = make_state()
    account = {"cash": "250.5", "equity": "300"}
    acct = data(state.sync(account, []), "account_update")
    # no last_equity: day P&L is unknown (null), never invented; no multiplier: 1 (cash)
    assert acct == {
        "equity": "250.50",
        "buyingPower": "250.50",
        "cash": "250.50",
        "portfolioValue": "250.50",
        "dayPnl": None,
        "dayPnlPercent": None,
        "realizedPnlToday": "0.00",
        "timestamp": SYNC_ISO,
    }


# --------------------------------------------------------------------------------------------
# sync
# --------------------------------------------------------------------------------------------


def test_sync_new_positions_then_unchanged_returns_nothing():
    state, clock = make_state()
    account = {**ACCOUNT, "last_equity": "100500"}
    positions = [
        rest_position("TSLA", "-5", "200", "190"),
        rest_position("AAPL", "10", "187.32", "190"),
    ]
    changes = state.sync(account, positions)

    assert [(t, d.get("symbol")) for t, d in changes] == [
        ("position_update", "AAPL"),
        ("position_update", "TSLA"),
        ("account_update", None),
    ]
    assert changes[0][1] == {
        "symbol": "AAPL",
        "quantity": "10",
        "currentPrice": "190.00",
        "entryPrice": "187.32",
        "unrealizedPnl": "26.80",  # (190 - 187.32) * 10
        "unrealizedPnlPercent": "1.43",  # 26.80 / 1873.20 * 100 = 1.4307
        "realizedPnl": "0.00",
        "realizedPnlToday": "0.00",
        "lastdayPrice": "190.00",
        "dayPnl": "0.00",  # held at the close: 10 × (190 − 190)
        "marketValue": "1900.00",
        "side": "long",
        "openedAt": SYNC_ISO,
        "updatedAt": SYNC_ISO,
    }
    tsla = changes[1][1]
    assert (tsla["quantity"], tsla["side"], tsla["marketValue"]) == ("5", "short", "-950.00")
    assert (tsla["unrealizedPnl"], tsla["unrealizedPnlPercent"]) == ("50.00", "5.00")
    # equity = 100000 + 1900 - 950 = 100950; dayPnl 450; 450 / 100500 * 100 = 0.4477 -> 0.45
    assert changes[2][1] == {
        "equity": "100950.00",
        "buyingPower": "199050.00",  # Reg T: 2 * 100950 - (1900 + 950)
        "cash": "100000.00",
        "portfolioValue": "100950.00",
        "dayPnl": "450.00",
        "dayPnlPercent": "0.45",
        "realizedPnlToday": "0.00",
        "timestamp": SYNC_ISO,
    }
    assert state.symbols() == {"AAPL", "TSLA"}

    clock.now = SYNC_TIME + timedelta(seconds=60)
    assert state.sync(account, positions) == []
    # equal values in another spelling are no change either
    respelled = [
        rest_position("AAPL", "10.000", "187.3200", "190.0"),
        rest_position("TSLA", "5", "200.00", "190", side="short"),
    ]
    assert state.sync({**account, "cash": "100000.00"}, respelled) == []
    assert position(state, "AAPL")["updatedAt"] == SYNC_ISO  # untouched


def test_sync_changed_new_and_vanished_positions():
    state, clock = make_state()
    state.sync(
        ACCOUNT,
        [rest_position("AAPL", "10", "187.32", "190"), rest_position("TSLA", "-5", "200", "190")],
    )
    clock.now = SYNC_TIME + timedelta(seconds=60)
    later = "2024-05-14T15:01:00.000000Z"

    changes = state.sync(
        ACCOUNT,
        [
            rest_position("AAPL", "15", "188", "190"),  # changed
            rest_position("NVDA", "2", "900.5", "905.25"),  # new
            # TSLA vanished
        ],
    )
    assert [(t, d.get("symbol"), d.get("quantity")) for t, d in changes] == [
        ("position_update", "AAPL", "15"),
        ("position_update", "NVDA", "2"),
        ("position_update", "TSLA", "0"),
        ("account_update", None, None),
    ]
    aapl, nvda, tsla = (d for _, d in changes[:3])
    assert aapl["openedAt"] == SYNC_ISO  # persisted: opening time kept
    assert aapl["updatedAt"] == later
    assert (aapl["entryPrice"], aapl["unrealizedPnl"]) == ("188.00", "30.00")
    assert (nvda["openedAt"], nvda["marketValue"], nvda["unrealizedPnl"]) == (
        later,
        "1810.50",
        "9.50",
    )
    assert (tsla["side"], tsla["marketValue"], tsla["updatedAt"]) == ("short", "0.00", later)
    assert state.symbols() == {"AAPL", "NVDA"}
    # equity = 100000 + 15*190 + 2*905.25 = 104660.50
    assert changes[3][1]["equity"] == "104660.50"


def test_sync_short_given_as_positive_qty_with_side_short():
    state, _ = make_state()
    changes = state.sync(None, [rest_position("TSLA", "5", "200", "210", side="short")])
    pos = data(changes, "position_update")
    assert (pos["quantity"], pos["side"], pos["marketValue"], pos["unrealizedPnl"]) == (
        "5",
        "short",
        "-1050.00",
        "-50.00",
    )
    assert state.account() is None  # no account given, none known


def test_sync_keeps_the_local_price_when_rest_has_none_and_ignores_zero_qty():
    state, _ = make_state()
    state.apply_trade_update(fill("buy", "10", "100"))
    state.apply_price("AAPL", "104")
    changes = state.sync(
        None,
        [rest_position("AAPL", "10", "100", None), rest_position("MSFT", "0", "300", "310")],
    )
    assert changes == []
    assert position(state, "AAPL")["currentPrice"] == "104.00"
    assert state.symbols() == {"AAPL"}


def test_sync_side_change_gets_a_new_opened_at():
    state, clock = make_state()
    state.sync(None, [rest_position("AAPL", "10", "100", "100")])
    clock.now = SYNC_TIME + timedelta(minutes=1)
    pos = data(state.sync(None, [rest_position("AAPL", "-3", "101", "101")]), "position_update")
    assert (pos["side"], pos["openedAt"]) == ("short", "2024-05-14T15:01:00.000000Z")


def test_sync_after_fills_that_agree_with_the_broker_returns_nothing():
    state, _ = synced_state()
    state.apply_trade_update(copy.deepcopy(FILL_EXAMPLE))
    broker_account = {**ACCOUNT, "cash": "98126.8", "buying_power": "196253.6"}
    # (no lastday_price: a previous close told for the first time would be news on the wire)
    listed = [rest_position("AAPL", "10", "187.32", "187.32", lastday=None)]
    assert state.sync(broker_account, listed) == []


def test_sync_resets_the_day_trading_buying_power_base():
    state, _ = synced_state(multiplier="4")
    state.apply_trade_update(fill("buy", "10", "100"))
    acct = data(
        state.sync(
            {**ACCOUNT, "cash": "99000", "buying_power": "150000", "multiplier": "4"},
            [rest_position("AAPL", "10", "100", "100")],
        ),
        "account_update",
    )
    assert (acct["cash"], acct["buyingPower"]) == ("99000.00", "150000.00")
    acct = data(state.apply_trade_update(fill("buy", "1", "100")), "account_update")
    assert acct["buyingPower"] == "149900.00"  # 150000 - 1 * 100 opened since


def order(order_id, status, updated_at, created_at="2024-05-14T14:00:00Z", **extra):
    raw = copy.deepcopy(FILL_EXAMPLE["order"])
    raw.update(
        id=order_id,
        client_order_id=f"c-{order_id}",
        status=status,
        updated_at=updated_at,
        created_at=created_at,
        submitted_at=created_at,
        filled_at=None,
        filled_qty="0",
        filled_avg_price=None,
        type="limit",
        limit_price="180",
    )
    raw.update(extra)
    return raw


def test_sync_orders_replace_the_open_set():
    state, _ = make_state()
    new_a = order("A", "new", "2024-05-14T14:00:00Z", created_at="2024-05-14T14:00:00Z")
    state.apply_trade_update({"event": "new", "timestamp": "2024-05-14T14:00:00Z", "order": new_a})
    filled = copy.deepcopy(FILL_EXAMPLE)
    state.apply_trade_update(filled)  # order 61e6..., filled at 14:31:02.13
    held_filled = state.orders()[0]

    listed_b = order("B", "accepted", "2024-05-14T14:50:00Z", created_at="2024-05-14T14:50:00Z")
    stale_view = order(
        FILL_EXAMPLE["order"]["id"],
        "new",
        "2024-05-14T14:31:02.000000Z",
        created_at="2024-05-14T14:31:01.998765Z",
    )
    changes = state.sync(None, [], [listed_b, stale_view])

    # B is new -> published; the stale REST view of the filled order is ignored; A is forgotten.
    # (The AAPL position from the fill is absent from REST, so it is closed.)
    assert [(t, d.get("brokerOrderId") or d.get("symbol")) for t, d in changes] == [
        ("order_update", "B"),
        ("position_update", "AAPL"),
    ]
    assert changes[0][1]["status"] == "accepted"
    assert [o["brokerOrderId"] for o in state.orders(open_only=True)] == ["B"]
    assert state.orders() == [changes[0][1], held_filled]  # newest first
    assert state.sync(None, [], [listed_b, stale_view]) == []


# --------------------------------------------------------------------------------------------
# Order events, staleness, idempotency
# --------------------------------------------------------------------------------------------


def test_non_fill_events_only_update_the_order():
    state, _ = synced_state()
    new = order("A", "new", "2024-05-14T14:00:00.5Z")
    changes = state.apply_trade_update(
        {"event": "new", "timestamp": "2024-05-14T14:00:00.5Z", "order": new}
    )
    assert changes == [
        (
            "order_update",
            {
                "orderId": "c-A",
                "brokerOrderId": "A",
                "symbol": "AAPL",
                "side": "buy",
                "type": "limit",
                "status": "new",
                "qty": "10",
                "filledQty": "0",
                "submittedAt": "2024-05-14T14:00:00.000000Z",
                "updatedAt": "2024-05-14T14:00:00.500000Z",
            },
        )
    ]
    assert len(state.orders(open_only=True)) == 1

    canceled = order("A", "canceled", "2024-05-14T14:05:00Z", canceled_at="2024-05-14T14:05:00Z")
    changes = state.apply_trade_update(
        {"event": "canceled", "timestamp": "2024-05-14T14:05:00Z", "order": canceled}
    )
    assert [(t, d["status"]) for t, d in changes] == [("order_update", "canceled")]
    assert state.orders(open_only=True) == []
    assert [o["status"] for o in state.orders()] == ["canceled"]
    assert state.positions() == [] and state.trades() == []


@pytest.mark.parametrize(
    "event", ["pending_new", "accepted", "replaced", "rejected", "expired", "done_for_day"]
)
def test_every_known_event_gives_an_order_update(event):
    state, _ = make_state()
    raw = order("A", event, "2024-05-14T14:00:00Z")
    changes = state.apply_trade_update(
        {"event": event, "timestamp": "2024-05-14T14:00:00Z", "order": raw}
    )
    assert [t for t, _ in changes] == ["order_update"]


def test_stale_order_update_is_ignored():
    state, _ = synced_state()
    state.apply_trade_update(copy.deepcopy(FILL_EXAMPLE))
    before = snapshot(state)

    late_new = copy.deepcopy(FILL_EXAMPLE["order"])
    late_new.update(
        status="new",
        filled_qty="0",
        filled_avg_price=None,
        filled_at=None,
        updated_at="2024-05-14T14:31:02.010000Z",
    )
    assert (
        state.apply_trade_update(
            {"event": "new", "timestamp": "2024-05-14T14:31:02.010Z", "order": late_new}
        )
        == []
    )
    assert snapshot(state) == before
    # a late partial fill of the same order is a different execution: it still counts (only
    # its stale order version is not published), see test_accounting_defects.py
    late_partial = copy.deepcopy(FILL_EXAMPLE)
    late_partial.update(event="partial_fill", execution_id="other-exec", qty="4", position_qty="4")
    late_partial["order"].update(
        status="partially_filled", filled_qty="4", updated_at="2024-05-14T14:31:02.100000Z"
    )
    changes = state.apply_trade_update(late_partial)
    assert [t for t, _ in changes] == ["trade_executed", "position_update", "account_update"]
    assert state.orders()[0]["status"] == "filled"


def test_duplicate_fill_changes_nothing():
    state, _ = synced_state()
    assert state.apply_trade_update(copy.deepcopy(FILL_EXAMPLE)) != []
    before = snapshot(state)
    assert state.apply_trade_update(copy.deepcopy(FILL_EXAMPLE)) == []
    assert snapshot(state) == before
    assert state.positions()[0]["quantity"] == "10"
    assert state.account()["cash"] == "98126.80"
    assert len(state.trades()) == 1


def test_exact_repeat_of_a_non_fill_event_is_ignored():
    state, _ = make_state()
    msg = {
        "event": "new",
        "timestamp": "2024-05-14T14:00:00Z",
        "order": order("A", "new", "2024-05-14T14:00:00Z"),
    }
    assert len(state.apply_trade_update(msg)) == 1
    assert state.apply_trade_update(copy.deepcopy(msg)) == []


def test_fill_without_execution_id_uses_order_id_and_filled_qty():
    state, _ = make_state()
    update = copy.deepcopy(FILL_EXAMPLE)
    del update["execution_id"]
    changes = state.apply_trade_update(update)
    assert data(changes, "trade_executed")["executionId"] == (
        "61e69015-8549-4bfd-b9c3-01e75843f47d:10"
    )
    assert state.apply_trade_update(copy.deepcopy(update)) == []


def test_numbers_as_json_numbers_are_accepted():
    state, _ = make_state()
    update = copy.deepcopy(FILL_EXAMPLE)
    update.update(price=187.32, qty=10, position_qty=10.0)
    pos = data(state.apply_trade_update(update), "position_update")
    assert (pos["quantity"], pos["entryPrice"], pos["marketValue"]) == ("10", "187.32", "1873.20")


def test_limits_on_recent_trades_and_orders():
    state, _ = make_state(max_recent_orders=3, max_recent_trades=2)
    open_order = order("OPEN", "new", "2024-05-14T13:00:00Z", created_at="2024-05-14T13:00:00Z")
    state.apply_trade_update(
        {"event": "new", "timestamp": "2024-05-14T13:00:00Z", "order": open_order}
    )
    for _ in range(4):
        state.apply_trade_update(fill("buy", "1", "100"))
    assert len(state.trades()) == 2
    assert [t["qty"] for t in state.trades()] == ["1", "1"]
    orders = state.orders()
    assert len(orders) == 3
    assert "OPEN" in {o["brokerOrderId"] for o in orders}  # open orders are never dropped
    assert position(state, "AAPL")["quantity"] == "4"


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def _broken(**changes):
    update = copy.deepcopy(FILL_EXAMPLE)
    update["execution_id"] = "another-execution"
    update["order"]["updated_at"] = "2024-05-14T14:40:00Z"
    for key, value in changes.items():
        if key.startswith("order_"):
            update["order"][key[len("order_") :]] = value
        elif value is _DELETE:
            del update[key]
        else:
            update[key] = value
    return update


_DELETE = object()


@pytest.mark.parametrize(
    ("update", "field"),
    [
        (_broken(order=_DELETE), "order"),
        (_broken(order=None), "order"),
        (_broken(order="61e69015"), "order"),
        (_broken(price="abc"), "price"),
        (_broken(price=_DELETE), "price"),
        (_broken(price="NaN"), "price"),
        (_broken(price="-1"), "price"),
        (_broken(qty="0"), "qty"),
        (_broken(position_qty="ten"), "position_qty"),
        (_broken(event="teleported"), "event"),
        (_broken(event=_DELETE), "event"),
        (_broken(timestamp="yesterday"), "timestamp"),
        (_broken(timestamp="2024-05-14T14:31:02"), "timestamp"),  # no offset
        (_broken(order_id=None), "order.id"),
        (_broken(order_symbol=""), "order.symbol"),
        (_broken(order_side="hold"), "order.side"),
        (_broken(order_updated_at="soon"), "order.updated_at"),
        (_broken(order_status=None), "order.status"),
        (_broken(order_type=None, order_order_type=None), "order.type"),
        (_broken(order_filled_qty="lots"), "order.filled_qty"),
        (["not", "a", "dict"], "update"),
    ],
)
def test_bad_trade_update_raises_and_leaves_state_unchanged(update, field):
    state, _ = synced_state()
    state.apply_trade_update(copy.deepcopy(FILL_EXAMPLE))
    before = snapshot(state)
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        state.apply_trade_update(update)
    assert snapshot(state) == before


@pytest.mark.parametrize(
    ("symbol", "price", "at", "field"),
    [
        ("AAPL", "abc", None, "price"),
        ("AAPL", float("nan"), None, "price"),
        ("AAPL", "0", None, "price"),
        ("AAPL", None, None, "price"),
        ("", "100", None, "symbol"),
        ("AAPL", "100", datetime(2024, 5, 14, 15, 0), "at"),  # naive
    ],
)
def test_bad_price_raises_and_leaves_state_unchanged(symbol, price, at, field):
    state, _ = synced_state()
    state.apply_trade_update(copy.deepcopy(FILL_EXAMPLE))
    before = snapshot(state)
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        state.apply_price(symbol, price, at)
    assert snapshot(state) == before


@pytest.mark.parametrize(
    ("account", "positions", "orders", "field"),
    [
        ({**ACCOUNT, "cash": "lots"}, [], None, r"account\.cash"),
        ({**ACCOUNT, "cash": None}, [], None, r"account\.cash"),
        ({**ACCOUNT, "multiplier": "0"}, [], None, r"account\.multiplier"),
        ("account", [], None, "account"),
        (
            ACCOUNT,
            [rest_position("MSFT", "1", "300", "301"), rest_position("NVDA", "x", "1", "1")],
            None,
            r"positions\[1\]\.qty",
        ),
        (
            ACCOUNT,
            [rest_position("MSFT", "1", None, "301")],
            None,
            r"positions\[0\]\.avg_entry_price",
        ),
        (
            ACCOUNT,
            [rest_position("MSFT", "1", "300", "301", side="flat")],
            None,
            r"positions\[0\]\.side",
        ),
        (
            ACCOUNT,
            [rest_position("MSFT", "1", "300", "301", lastday="yesterday")],
            None,
            r"positions\[0\]\.lastday_price",
        ),
        (
            ACCOUNT,
            [rest_position("MSFT", "1", "300", "301", lastday="-1")],
            None,
            r"positions\[0\]\.lastday_price",
        ),
        (
            ACCOUNT,
            [rest_position("MSFT", "1", "300", "301", lastday="NaN")],
            None,
            r"positions\[0\]\.lastday_price",
        ),
        (ACCOUNT, [{"qty": "1"}], None, r"positions\[0\]\.symbol"),
        (ACCOUNT, "AAPL", None, "positions"),
        (ACCOUNT, [], [order("Z", "new", "2024-05-14T14:00:00Z", id=None)], r"orders\[0\]\.id"),
    ],
)
def test_bad_sync_raises_and_leaves_state_unchanged(account, positions, orders, field):
    state, _ = synced_state()
    state.apply_trade_update(copy.deepcopy(FILL_EXAMPLE))
    before = snapshot(state)
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        state.sync(account, positions, orders)
    assert snapshot(state) == before


def test_returned_dicts_are_copies():
    state, _ = synced_state()
    changes = state.apply_trade_update(copy.deepcopy(FILL_EXAMPLE))
    for _, d in changes:
        d["symbol"] = "HACKED"
    state.positions()[0]["quantity"] = "999"
    state.trades()[0]["qty"] = "999"
    state.orders()[0]["status"] = "x"
    assert position(state, "AAPL")["quantity"] == "10"
    assert state.trades()[0]["qty"] == "10"
    assert state.orders()[0]["status"] == "filled"


# --------------------------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("2024-05-14T14:31:02.123456789Z", "2024-05-14T14:31:02.123456Z"),
        ("2024-05-14T14:31:02Z", "2024-05-14T14:31:02.000000Z"),
        ("2024-05-14T10:31:02.5-04:00", "2024-05-14T14:31:02.500000Z"),
        ("2024-05-14T14:31:02.130000+00:00", "2024-05-14T14:31:02.130000Z"),
    ],
)
def test_timestamps(text, wire):
    assert format_timestamp(parse_timestamp(text)) == wire


@pytest.mark.parametrize("bad", ["", "tomorrow", "2024-05-14T14:31:02", None, 1715697062])
def test_bad_timestamps(bad):
    with pytest.raises(ValueError, match="^when"):
        parse_timestamp(bad, field="when")


def test_fill_already_counted_by_a_rest_sync_is_not_counted_twice():
    """Race: the REST sync already shows a fill whose stream event arrives after it.

    The broker's position after the fill (position_qty 10) equals what we already hold, so the
    execution is recorded but neither the position nor the cash moves a second time.
    """
    state, _ = synced_state()
    cash_before = Decimal(state.account()["cash"])
    rest_cash = str(cash_before - 1000)
    state.sync({**ACCOUNT, "cash": rest_cash}, [rest_position("AAPL", "10", "100", "100")])
    assert position(state, "AAPL")["quantity"] == "10"
    changes = state.apply_trade_update(fill("buy", "10", "100", position_qty="10"))
    assert [t for t, _ in changes] == ["order_update", "trade_executed", "position_update"]
    assert data(changes, "trade_executed")["positionQty"] == "10"
    assert position(state, "AAPL")["quantity"] == "10"
    assert position(state, "AAPL")["entryPrice"] == "100.00"
    assert Decimal(state.account()["cash"]) == Decimal(rest_cash)
    assert len(state.trades()) == 1
    # the next fill is counted normally
    state.apply_trade_update(fill("buy", "5", "110", position_qty="15"))
    assert position(state, "AAPL")["quantity"] == "15"
    assert Decimal(state.account()["cash"]) == Decimal(rest_cash) - 550


# --------------------------------------------------------------------------------------------
# Realized P&L (average-cost method) and the trading day: the worked examples of docs/pnl.md
# --------------------------------------------------------------------------------------------


def test_realized_partial_close_then_close():
    """Example 9: long 10 @ 100, sell 4 @ 110 (+40), sell 6 @ 95 (−30)."""
    state, _ = synced_state(multiplier="1")
    state.apply_trade_update(fill("buy", "10", "100"))
    changes = state.apply_trade_update(fill("sell", "4", "110"))
    pos = data(changes, "position_update")
    assert (pos["quantity"], pos["entryPrice"]) == ("6", "100.00")
    assert (pos["realizedPnl"], pos["realizedPnlToday"]) == ("40.00", "40.00")
    assert data(changes, "account_update")["realizedPnlToday"] == "40.00"
    changes = state.apply_trade_update(fill("sell", "6", "95"))
    closed = data(changes, "position_update")
    assert (closed["quantity"], closed["realizedPnl"], closed["realizedPnlToday"]) == (
        "0",
        "10.00",
        "10.00",
    )
    acct = data(changes, "account_update")
    # cash 100000 - 1000 + 440 + 570 = 100010 = start + realized
    assert (acct["cash"], acct["realizedPnlToday"]) == ("100010.00", "10.00")


def test_realized_flip_long_to_short():
    """Example 10: long 10 @ 100, sell 15 @ 120: +200 realized, new short 5 @ 120 has none."""
    state, _ = synced_state(multiplier="1")
    state.apply_trade_update(fill("buy", "10", "100"))
    changes = state.apply_trade_update(fill("sell", "15", "120"))
    pos = data(changes, "position_update")
    assert (pos["quantity"], pos["side"], pos["entryPrice"]) == ("5", "short", "120.00")
    assert (pos["realizedPnl"], pos["realizedPnlToday"]) == ("0.00", "200.00")
    assert data(changes, "account_update")["realizedPnlToday"] == "200.00"


def test_realized_short_cover():
    """Example 11: short 10 @ 50, buy 4 @ 45 (+20), buy 6 @ 52 (−12)."""
    state, _ = synced_state(multiplier="1")
    state.apply_trade_update(fill("sell", "10", "50"))
    pos = data(state.apply_trade_update(fill("buy", "4", "45")), "position_update")
    assert (pos["quantity"], pos["side"], pos["realizedPnl"]) == ("6", "short", "20.00")
    changes = state.apply_trade_update(fill("buy", "6", "52"))
    assert data(changes, "position_update")["realizedPnl"] == "8.00"
    assert data(changes, "account_update")["realizedPnlToday"] == "8.00"


def test_realized_is_exact_across_a_repeating_average():
    """Example 12: A = 300.02 / 3; selling 1 then 2 @ 100.01 realizes exactly 0.01 in all."""
    state, _ = synced_state(multiplier="1")
    state.apply_trade_update(fill("buy", "1", "100"))
    state.apply_trade_update(fill("buy", "2", "100.01"))
    first = data(state.apply_trade_update(fill("sell", "1", "100.01")), "position_update")
    assert first["realizedPnl"] == "0.00"  # 0.00333…
    closed = data(state.apply_trade_update(fill("sell", "2", "100.01")), "position_update")
    assert closed["realizedPnl"] == "0.01"  # 300.03 - 300.02, not 0.00 + 0.01 rounded apart


def test_a_new_broker_trading_day_restarts_realized_today():
    state, clock = make_state()
    state.sync({**ACCOUNT, "multiplier": "1", "balance_asof": "2024-05-13"}, [])
    state.apply_trade_update(fill("buy", "10", "100"))
    state.apply_trade_update(fill("sell", "4", "110"))
    assert state.account()["realizedPnlToday"] == "40.00"
    clock.now = SYNC_TIME + timedelta(hours=20)
    broker = {
        **ACCOUNT,
        "multiplier": "1",
        "balance_asof": "2024-05-14",
        "cash": "99440",
        "last_equity": "100100",
    }
    changes = state.sync(broker, [rest_position("AAPL", "6", "100", "110")])
    pos = data(changes, "position_update")
    assert (pos["realizedPnl"], pos["realizedPnlToday"]) == ("40.00", "0.00")
    acct = data(changes, "account_update")
    assert (acct["realizedPnlToday"], acct["dayPnl"]) == ("0.00", "0.00")
    # the same day again changes nothing
    assert state.sync(broker, [rest_position("AAPL", "6", "100", "110")]) == []


def test_a_sync_without_last_equity_makes_day_pnl_unknown_not_zero():
    state, _ = synced_state(multiplier="1")
    state.apply_trade_update(fill("buy", "10", "100"))
    state.apply_price("AAPL", "101")
    assert state.account()["dayPnl"] == "1010.00"  # last_equity 99000
    broker = {k: v for k, v in ACCOUNT.items() if k != "last_equity"}
    changes = state.sync({**broker, "cash": "99000", "multiplier": "1"}, [])
    acct = data(changes, "account_update")
    assert (acct["dayPnl"], acct["dayPnlPercent"]) == (None, None)


# --------------------------------------------------------------------------------------------
# Day P&L per position (docs/pnl.md, "Day P&L per position")
# --------------------------------------------------------------------------------------------


def day_account(day="2024-05-14", **extra):
    return {**ACCOUNT, "multiplier": "1", "balance_asof": day, **extra}


def test_sync_puts_the_previous_close_and_the_day_pnl_on_the_wire():
    """Held at the close: dayPnl = Q × (P − lastday_price), a short gaining when it falls."""
    state, _ = make_state()
    changes = state.sync(
        day_account(),
        [
            rest_position("AAPL", "10", "150", "190", lastday="185.125"),
            rest_position("TSLA", "-5", "200", "190", lastday="195"),
        ],
    )
    aapl, tsla = (d for t, d in changes if t == "position_update")
    assert (aapl["lastdayPrice"], aapl["dayPnl"]) == ("185.125", "48.75")  # 10 × 4.875
    assert (tsla["lastdayPrice"], tsla["dayPnl"]) == ("195.00", "25.00")  # −5 × (190 − 195)
    # a tick moves the day P&L with the price; the close stays
    tick = data(state.apply_price("AAPL", "186"), "position_update")
    assert (tick["lastdayPrice"], tick["dayPnl"]) == ("185.125", "8.75")


def test_day_pnl_is_null_without_a_previous_close_for_shares_held_at_it():
    state, _ = make_state()
    changes = state.sync(day_account(), [rest_position("AAPL", "10", "150", "190", lastday=None)])
    pos = data(changes, "position_update")
    assert (pos["lastdayPrice"], pos["dayPnl"]) == (None, None)
    # "0" is no previous close either (unknown, not a close at 0)
    changes = state.sync(day_account(), [rest_position("AAPL", "10", "150", "190", lastday="0")])
    assert changes == []


def test_the_previous_close_survives_fills_and_ticks_and_the_day_pnl_follows_them():
    """Held 10 since the close at 110; sell 4 @ 120, buy 3 @ 115, mark 118.

    dayPnl = Q × P − Q0 × L + cash = 9 × 118 − 10 × 110 + (480 − 345) = 97.00, the same as
    (shares held at the close) 6 × (118 − 110) + 4 × (120 − 110) + (bought today) 3 × (118 − 115).
    """
    state, _ = make_state()
    # last_equity = cash + 10 × 110: no other change since the close
    broker = day_account(last_equity="101100")
    state.sync(broker, [rest_position("AAPL", "10", "100", "110", lastday="110")])
    sold = data(state.apply_trade_update(fill("sell", "4", "120")), "position_update")
    assert (sold["lastdayPrice"], sold["dayPnl"]) == ("110.00", "100.00")  # 6×10 + 4×10 at 120
    assert sold["realizedPnlToday"] == "80.00"  # average cost: 4 × (120 − 100), not the day's
    state.apply_trade_update(fill("buy", "3", "115"))
    pos = data(state.apply_price("AAPL", "118"), "position_update")
    assert (pos["quantity"], pos["lastdayPrice"], pos["dayPnl"]) == ("9", "110.00", "97.00")
    # with no cash movements the account's day P&L (equity − last_equity) is the symbols' sum
    assert state.account()["dayPnl"] == "97.00"


def test_a_position_opened_today_needs_no_previous_close():
    """Bought today @ 100, 50 of 100 sold @ 104, mark 99: 50 × 4 + 50 × (99 − 100) = 150."""
    state, _ = synced_state(multiplier="1")
    state.apply_trade_update(fill("buy", "100", "100"))
    state.apply_trade_update(fill("sell", "50", "104"))
    pos = data(state.apply_price("AAPL", "99"), "position_update")
    assert (pos["lastdayPrice"], pos["dayPnl"]) == (None, "150.00")


def test_a_position_closed_today_carries_its_final_day_pnl_and_a_reopened_one_keeps_it():
    """The day P&L is the symbol's: it outlives a position closed earlier today."""
    state, _ = make_state()
    state.sync(day_account(), [rest_position("AAPL", "10", "100", "110", lastday="108")])
    closed = data(state.apply_trade_update(fill("sell", "10", "111")), "position_update")
    assert (closed["quantity"], closed["dayPnl"]) == ("0", "30.00")  # 10 × (111 − 108)
    reopened = data(state.apply_trade_update(fill("buy", "2", "112")), "position_update")
    assert reopened["dayPnl"] == "30.00"  # + 2 × (112 − 112)
    flipped = data(state.apply_trade_update(fill("sell", "5", "113")), "position_update")
    # 30 + 2 × (113 − 112) on the long, the new short −3 @ 113 marked at 113: 32
    assert (flipped["side"], flipped["quantity"], flipped["dayPnl"]) == ("short", "3", "32.00")


def test_a_new_trading_day_replaces_the_previous_close_and_restarts_the_day_pnl():
    state, clock = make_state()
    state.sync(
        day_account("2024-05-13"), [rest_position("AAPL", "10", "100", "110", lastday="108")]
    )
    state.apply_trade_update(fill("buy", "5", "112"))
    assert position(state, "AAPL")["dayPnl"] == "40.00"  # 10 × (112 − 108) + 5 × 0
    clock.now = SYNC_TIME + timedelta(hours=20)
    changes = state.sync(
        day_account("2024-05-14", cash="99440", last_equity="100680"),
        [rest_position("AAPL", "15", "104", "112", lastday="112")],
    )
    pos = data(changes, "position_update")
    assert (pos["lastdayPrice"], pos["dayPnl"]) == ("112.00", "0.00")  # all 15 held at 112
    pos = data(state.apply_price("AAPL", "113"), "position_update")
    assert pos["dayPnl"] == "15.00"


def test_a_sync_without_lastday_price_keeps_the_one_known_today():
    state, _ = make_state()
    state.sync(day_account(), [rest_position("AAPL", "10", "100", "110", lastday="108")])
    assert (
        state.sync(day_account(), [rest_position("AAPL", "10", "100", "110", lastday=None)]) == []
    )
    assert position(state, "AAPL")["lastdayPrice"] == "108.00"


def test_an_execution_the_sync_counted_moves_the_day_cash_once():
    """Held 10 at the close (108). A buy of 5 @ 112 that a later sync already counts."""
    state, _ = make_state()
    state.sync(day_account(), [rest_position("AAPL", "10", "100", "112", lastday="108")])
    buy = fill("buy", "5", "112", position_qty="15")
    order = {**buy["order"], "status": "filled"}
    state.sync(
        day_account(cash="99440"),
        [rest_position("AAPL", "15", "104", "112", lastday="108")],
        [],
        [order],
    )
    # the sync set 15 shares, 10 held at the close; until the buy's execution arrives (its
    # price and cash) the day P&L is off: 15 × 112 − 10 × 108
    assert position(state, "AAPL")["dayPnl"] == "600.00"
    state.apply_trade_update(buy)
    assert position(state, "AAPL")["dayPnl"] == "40.00"  # 10 × 4 + 5 × 0


def test_an_execution_the_first_sync_already_held_is_todays():
    """First sight of the symbol at a sync that counted a buy whose event comes after it."""
    state, _ = make_state()
    buy = fill("buy", "5", "112", position_qty="15")
    order = {**buy["order"], "status": "filled"}
    listed = [rest_position("AAPL", "15", "104", "112", lastday="108")]
    state.sync(day_account(), listed, [], [order])
    assert position(state, "AAPL")["dayPnl"] == "60.00"  # 15 × (112 − 108) until it arrives
    state.apply_trade_update(buy)
    assert position(state, "AAPL")["dayPnl"] == "40.00"  # 10 × (112 − 108) + 5 × 0


def test_an_execution_the_day_starting_sync_already_held_is_the_previous_days():
    state, clock = make_state()
    state.sync(day_account("2024-05-13"), [rest_position("AAPL", "10", "100", "112")])
    buy = fill("buy", "5", "112", position_qty="15")
    order = {**buy["order"], "status": "filled"}
    clock.now = SYNC_TIME + timedelta(hours=20)
    listed = [rest_position("AAPL", "15", "104", "112", lastday="108")]
    state.sync(day_account("2024-05-14"), listed, [], [order])
    state.apply_trade_update(buy)
    assert position(state, "AAPL")["dayPnl"] == "60.00"  # all 15 held at the close (108)
