"""Margin and pattern-day-trader accounts, and the trading-day roll, over Alpaca's REST API."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient

from streaming.simulator import Simulator
from tests.simulator.helpers import KEY, SECRET, call, run, started, wait_until


def _client(sim: Simulator) -> TradingClient:
    return TradingClient(KEY, SECRET, url_override=sim.trading_url, raw_data=True)


async def _filled(sim: Simulator, symbol: str, qty: str) -> None:
    await wait_until(
        lambda: sim.account(KEY).position_qty(symbol) == Decimal(qty), 5, f"{symbol} {qty}"
    )


async def _order(client: TradingClient, sim: Simulator, side: str, qty: int) -> None:
    before = sim.account(KEY).position_qty("AAPL")
    await call(
        client._request,
        "POST",
        "/orders",
        {"symbol": "AAPL", "qty": str(qty), "side": side, "type": "market", "time_in_force": "day"},
    )
    await _filled(sim, "AAPL", str(before + (qty if side == "buy" else -qty)))


def test_margin_account_buying_power_follows_reg_t() -> None:
    """Alpaca: multiplier 2 → buying_power = max(equity − initial_margin, 0) × 2."""

    async def main() -> None:
        async with started() as h:
            sim = h.sim
            sim._accounts.clear()
            sim.add_account(KEY, SECRET, Decimal(100000), multiplier=2)
            sim.set_price("AAPL", Decimal("187.32"))
            client = _client(sim)
            acct: Any = await call(client.get_account)
            assert (acct["multiplier"], acct["buying_power"]) == ("2", "200000.00")
            await _order(client, sim, "buy", 10)
            acct = await call(client.get_account)
            # 2 × 100000 − 1873.20 (the 198,126.80)
            assert acct["buying_power"] == "198126.80"
            assert acct["initial_margin"] == "936.60"
            sim.set_price("AAPL", Decimal("100"))
            await _order(client, sim, "sell", 20)  # long 10 → short 10
            acct = await call(client.get_account)
            # cash 100000 − 1873.20 + 2000 = 100126.80; equity 100126.80 − 1000 = 99126.80
            assert (acct["cash"], acct["equity"]) == ("100126.80", "99126.80")
            assert acct["buying_power"] == "197253.60"  # 2 × 99126.80 − 1000: a short lowers it

    run(main)


def test_margin_account_can_buy_beyond_its_cash_a_cash_account_cannot() -> None:
    async def main() -> None:
        async with started(cash=Decimal(1000)) as h:
            sim = h.sim
            sim.set_price("AAPL", Decimal("100"))
            client = _client(sim)
            with pytest.raises(APIError, match="insufficient buying power"):
                await call(
                    client._request,
                    "POST",
                    "/orders",
                    {
                        "symbol": "AAPL",
                        "qty": "15",
                        "side": "buy",
                        "type": "market",
                        "time_in_force": "day",
                    },
                )
            sim.add_account("MARGIN", "m-secret", Decimal(1000), multiplier=2)
            margin = TradingClient("MARGIN", "m-secret", url_override=sim.trading_url)
            await call(
                margin._request,
                "POST",
                "/orders",
                {
                    "symbol": "AAPL",
                    "qty": "15",
                    "side": "buy",
                    "type": "market",
                    "time_in_force": "day",
                },
            )
            await wait_until(lambda: sim.account("MARGIN").position_qty("AAPL") == 15, 5)
            assert sim.account("MARGIN").cash == Decimal(-500)

    run(main)


def test_pattern_day_trader_buying_power_and_the_day_roll() -> None:
    async def main() -> None:
        async with started() as h:
            sim = h.sim
            sim._accounts.clear()
            sim.add_account(KEY, SECRET, Decimal(100000), multiplier=4)
            sim.set_price("AAPL", Decimal("100"))
            client = _client(sim)
            acct: Any = await call(client.get_account)
            assert (acct["buying_power"], acct["daytrading_buying_power"]) == (
                "400000.00",
                "400000.00",
            )
            assert acct["pattern_day_trader"] is True
            await _order(client, sim, "buy", 10)
            acct = await call(client.get_account)
            assert acct["buying_power"] == "399000.00"  # 10 × 100 opened today
            sim.set_price("AAPL", Decimal("110"))
            await _order(client, sim, "sell", 4)
            acct = await call(client.get_account)
            assert acct["buying_power"] == "399400.00"  # closing 4 of today's gives 400 back
            day = date.fromisoformat(acct["balance_asof"])

            sim.roll_day()
            acct = await call(client.get_account)
            # equity 100000 − 1000 + 440 + 6 × 110 = 100100; maintenance 30 % of 660 = 198
            assert acct["last_equity"] == "100100.00"
            assert acct["last_maintenance_margin"] == "198.00"
            assert acct["bod_dtbp"] == acct["buying_power"] == "399608.00"  # 4 × (100100 − 198)
            assert date.fromisoformat(acct["balance_asof"]) > day
            await _order(client, sim, "sell", 6)  # yesterday's shares: nothing given back
            acct = await call(client.get_account)
            assert acct["buying_power"] == "399608.00"

    run(main)


def test_accelerated_days_roll_last_equity() -> None:
    async def main() -> None:
        async with started(day_s=0.2) as h:
            sim = h.sim
            sim.set_price("AAPL", Decimal("100"))
            client = _client(sim)
            await _order(client, sim, "buy", 5)
            sim.set_price("AAPL", Decimal("101"))
            day = sim.account(KEY).trading_day
            await wait_until(lambda: sim.account(KEY).trading_day != day, 5)
            acct: Any = await call(client.get_account)
            assert acct["last_equity"] == "100005.00"  # 99500 + 5 × 101 at the roll
            assert date.fromisoformat(acct["balance_asof"]).weekday() < 5

    run(main)


def test_bad_multiplier_is_refused() -> None:
    sim = Simulator()
    with pytest.raises(ValueError, match="multiplier"):
        sim.add_account("K", "S", multiplier=3)
    with pytest.raises(ValueError, match="day_s"):
        Simulator(day_s=0)
