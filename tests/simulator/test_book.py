from datetime import date
from decimal import Decimal

import pytest

from streaming.simulator.book import SimAccount, SimAPIError, parse_order_request
from streaming.simulator.fmt import fmt_price, fmt_qty

SYMS = ["AAPL", "MSFT", "IBM"]
PRICES = {"AAPL": Decimal("100"), "MSFT": Decimal("50"), "IBM": Decimal("10")}


def price_of(sym: str) -> Decimal:
    return PRICES[sym]


def fill(acct: SimAccount, side: str, qty: str, price: str, sym: str = "AAPL") -> Decimal:
    spec = parse_order_request(
        {"symbol": sym, "qty": qty, "side": side, "type": "market", "time_in_force": "day"}, SYMS
    )
    order = acct.create_order(spec, price_of)
    ex = acct.execute(order, order.qty, Decimal(price))
    assert order.status == "filled"
    return ex.position_qty


def test_average_entry_across_buys_and_partial_sell() -> None:
    acct = SimAccount("k", "s", Decimal("100000"))
    fill(acct, "buy", "10", "100")
    fill(acct, "buy", "30", "104")
    pos = acct.positions["AAPL"]
    assert pos.qty == 40
    assert pos.avg_entry_price == Decimal("103")
    assert fill(acct, "sell", "15", "110") == 25
    pos = acct.positions["AAPL"]
    assert pos.avg_entry_price == Decimal("103")  # sells keep the entry price
    assert acct.cash == Decimal("100000") - 1000 - 3120 + 1650
    j = pos.to_json(Decimal("110"), Decimal("100"))
    assert j["qty"] == "25"
    assert j["side"] == "long"
    assert j["avg_entry_price"] == "103.00"
    assert j["market_value"] == "2750.00"
    assert j["cost_basis"] == "2575.00"
    assert j["unrealized_pl"] == "175.00"
    assert Decimal(j["unrealized_plpc"]) == Decimal("0.0679611650")
    assert Decimal(j["change_today"]) == Decimal("0.1")


def test_flip_to_short_and_back() -> None:
    acct = SimAccount("k", "s", Decimal("100000"))
    fill(acct, "buy", "10", "100")
    assert fill(acct, "sell", "15", "90") == -5
    pos = acct.positions["AAPL"]
    assert pos.qty == -5
    assert pos.avg_entry_price == Decimal("90")  # the flip opens at the fill price
    j = pos.to_json(Decimal("80"), Decimal("100"))
    assert j["qty"] == "-5"
    assert j["side"] == "short"
    assert j["market_value"] == "-400.00"
    assert j["cost_basis"] == "-450.00"
    assert j["unrealized_pl"] == "50.00"
    assert Decimal(j["unrealized_plpc"]) == Decimal("0.1111111111")
    # cash: -1000 + 1350
    assert acct.cash == Decimal("100350")
    long_mv, short_mv = acct.market_values(lambda s: Decimal("80"))
    assert (long_mv, short_mv) == (0, Decimal("-400"))
    assert acct.equity(lambda s: Decimal("80")) == Decimal("99950")
    assert fill(acct, "buy", "5", "85") == 0
    assert "AAPL" not in acct.positions
    assert acct.cash == Decimal("100350") - 425


def test_account_json_equity_identity() -> None:
    acct = SimAccount("k", "s", Decimal("50000"))
    fill(acct, "buy", "10", "100")
    fill(acct, "sell", "20", "50", sym="MSFT")
    j = acct.account_json(price_of)
    assert j["cash"] == "50000.00"  # -1000 + 1000
    assert j["long_market_value"] == "1000.00"
    assert j["short_market_value"] == "-1000.00"
    assert j["equity"] == "50000.00"
    assert j["portfolio_value"] == j["equity"]
    assert j["buying_power"] == j["cash"]
    assert j["last_equity"] == "50000.00"
    assert j["multiplier"] == "1"
    assert j["status"] == "ACTIVE"


def test_partial_execution_updates_order() -> None:
    acct = SimAccount("k", "s")
    spec = parse_order_request(
        {"symbol": "AAPL", "qty": 12, "side": "buy", "type": "market", "time_in_force": "day"},
        SYMS,
    )
    order = acct.create_order(spec, price_of)
    ex = acct.execute(order, Decimal(6), Decimal("100"))
    assert ex.event == "partial_fill"
    assert order.status == "partially_filled"
    ex = acct.execute(order, Decimal(6), Decimal("101"))
    assert ex.event == "fill"
    j = order.to_json()
    assert j["filled_qty"] == "12"
    assert j["filled_avg_price"] == "100.50"
    assert j["status"] == "filled"
    assert j["filled_at"] is not None
    with pytest.raises(ValueError):
        acct.execute(order, Decimal(1), Decimal("100"))


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([], "JSON object"),
        ({"qty": "1", "side": "buy", "type": "market", "time_in_force": "day"}, "symbol"),
        (
            {"symbol": "XYZ", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day"},
            "XYZ",
        ),
        ({"symbol": "AAPL", "side": "buy", "type": "market", "time_in_force": "day"}, "qty"),
        (
            {
                "symbol": "AAPL",
                "qty": "-1",
                "side": "buy",
                "type": "market",
                "time_in_force": "day",
            },
            "qty",
        ),
        (
            {
                "symbol": "AAPL",
                "qty": "abc",
                "side": "buy",
                "type": "market",
                "time_in_force": "day",
            },
            "qty",
        ),
        (
            {
                "symbol": "AAPL",
                "qty": "1",
                "side": "hold",
                "type": "market",
                "time_in_force": "day",
            },
            "side",
        ),
        (
            {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "stop", "time_in_force": "day"},
            "type",
        ),
        ({"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market"}, "time_in_force"),
        (
            {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit", "time_in_force": "day"},
            "limit_price",
        ),
    ],
)
def test_validation_errors(body: object, fragment: str) -> None:
    with pytest.raises(SimAPIError) as err:
        parse_order_request(body, SYMS)
    assert err.value.status == 422
    assert err.value.code == 40010001
    assert fragment in err.value.message


def test_buying_power_and_duplicate_client_id() -> None:
    acct = SimAccount("k", "s", Decimal("1000"))
    spec = parse_order_request(
        {"symbol": "AAPL", "qty": "11", "side": "buy", "type": "market", "time_in_force": "day"},
        SYMS,
    )
    with pytest.raises(SimAPIError) as err:
        acct.create_order(spec, price_of)
    assert (err.value.status, err.value.code, err.value.message) == (
        403,
        40310000,
        "insufficient buying power",
    )
    ok = parse_order_request(
        {
            "symbol": "AAPL",
            "qty": "6",
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
            "client_order_id": "c1",
        },
        SYMS,
    )
    acct.create_order(ok, price_of)
    with pytest.raises(SimAPIError) as err:  # 600 held by the open order
        acct.create_order(ok, price_of)
    assert err.value.status == 422
    ok.client_order_id = "c2"
    with pytest.raises(SimAPIError) as err:
        acct.create_order(ok, price_of)
    assert err.value.status == 403


def test_formats() -> None:
    assert fmt_price(Decimal("187.3200")) == "187.32"
    assert fmt_price(Decimal("0.1234")) == "0.1234"
    assert fmt_price(Decimal("103.26454545")) == "103.2645"
    assert fmt_price(Decimal("5")) == "5.00"
    assert fmt_qty(Decimal("10.000")) == "10"
    assert fmt_qty(Decimal("1E+1")) == "10"
    assert fmt_qty(Decimal("-0.50")) == "-0.5"
    assert fmt_qty(Decimal("0.00")) == "0"


def test_intraday_pl_marks_shares_held_at_the_close_from_lastday_price() -> None:
    """Alpaca's ``unrealized_intraday_pl``: held since the close from it, today's from cost."""
    acct = SimAccount("k", "s", Decimal("100000"))
    fill(acct, "buy", "10", "100")
    # opened today: the day's P&L is all of its unrealized P&L, whatever the previous close
    (j,) = acct.positions_json(lambda s: Decimal("104"), lambda s: Decimal("90"))
    assert (j["unrealized_intraday_pl"], j["unrealized_pl"]) == ("40.00", "40.00")
    assert Decimal(j["unrealized_intraday_plpc"]) == Decimal("0.04")
    acct.roll_day(lambda s: Decimal("104"), date(2024, 5, 15))
    # held since the close at 104, mark 101: 10 × (101 − 104); plpc = change_today
    (j,) = acct.positions_json(lambda s: Decimal("101"), lambda s: Decimal("104"))
    assert (j["unrealized_intraday_pl"], j["unrealized_pl"]) == ("-30.00", "10.00")
    assert j["unrealized_intraday_plpc"] == j["change_today"] == "-0.0288461538"
    # buy 5 @ 102 and sell 7 @ 103 (today's 5 first, then 2 held at the close): 8 left, all held
    # at the close; then buy 4 @ 100 today: 8 × (101 − 104) + 4 × (101 − 100) = −20
    fill(acct, "buy", "5", "102")
    fill(acct, "sell", "7", "103")
    fill(acct, "buy", "4", "100")
    (j,) = acct.positions_json(lambda s: Decimal("101"), lambda s: Decimal("104"))
    assert (j["qty"], j["unrealized_intraday_pl"]) == ("12", "-20.00")
    assert j["unrealized_intraday_plpc"] == "-0.0162337662"  # −20 / (8 × 104 + 4 × 100)


def test_intraday_pl_of_a_short_held_at_the_close() -> None:
    acct = SimAccount("k", "s", Decimal("100000"))
    acct.set_position("MSFT", Decimal("-6"), Decimal("55"))  # seeded: held at the close
    (j,) = acct.positions_json(lambda s: Decimal("48"), lambda s: Decimal("50"))
    assert (j["unrealized_intraday_pl"], j["unrealized_pl"]) == ("12.00", "42.00")
