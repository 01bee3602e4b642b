"""Differential test: server figures = the broker's own = an exact recomputation from the fills.

A scripted session runs against the bundled simulator through the real bridge (alpaca-py
trading stream, market-data stream and REST client), with REST syncs firing every 0.25 s in
between: buys at several prices, partial sells, a long → short flip, a short and its cover, a
limit order canceled after a partial fill, and a trading-day roll. It runs once for each account
type (cash, Reg T margin, pattern day trader). After every step settles (the server has seen
every execution and every price the broker now marks at), three views must agree to the cent:

* the broker: the simulator's ``GET /v2/account`` and ``GET /v2/positions`` JSON;
* the server: the snapshot/REST view (``PortfolioService.snapshot``) and the state folded from
  every streamed ``position_update``/``account_update``/``batch``;
* an exact-fraction recomputation from the streamed ``trade_executed`` events (average entry,
  realized P&L since open and today, cash).

Each position's day P&L (``dayPnl``) is checked three ways: against the recomputation
(``Q × P − Q0 × lastday_price + the day's cash flow``, with ``Q0`` the broker's quantity at the
roll); for a position with no execution since the roll, against the broker's own
``unrealized_intraday_pl``; and summed over every symbol of the day (closed ones by their last
update) against the broker's ``equity − last_equity`` (no cash moved in or out).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from streaming.alpaca_bridge import AlpacaBridge, BridgeAccount, Endpoints
from streaming.manager import StreamManager
from streaming.memory_broker import MemoryBroker
from streaming.money import fmt_money, fmt_price
from streaming.service import PortfolioService
from streaming.simulator import Simulator
from streaming.simulator.book import SimAccount

KEY, SECRET = "PKDIFF", "diff-secret"
SYMBOLS = ("AAPL", "AMZN", "GOOG", "IBM", "MSFT")


def _dec(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)


class Recomputed:
    """Positions, realized P&L and cash recomputed from the fills with exact fractions."""

    def __init__(self, cash: Decimal) -> None:
        self.cash = Fraction(cash)
        self.qty: dict[str, Fraction] = {}
        self.avg: dict[str, Fraction] = {}
        self.realized: dict[str, Fraction] = {}  # since the position opened
        self.today: dict[str, Fraction] = {}
        self.start: dict[str, Fraction] = {}  # quantity held at the last roll
        self.cash_today: dict[str, Fraction] = {}  # cash each symbol's executions moved today

    def fill(self, trade: dict[str, Any]) -> None:
        symbol, price = trade["symbol"], Fraction(Decimal(trade["price"]))
        q = Fraction(Decimal(trade["qty"])) * (1 if trade["side"] == "buy" else -1)
        self.cash -= q * price
        self.cash_today[symbol] = self.cash_today.get(symbol, Fraction(0)) - q * price
        old = self.qty.get(symbol, Fraction(0))
        avg = self.avg.get(symbol, Fraction(0))
        new = old + q
        if old == 0 or (old > 0) == (q > 0):  # open or add
            self.avg[symbol] = (old * avg + q * price) / new
            if old == 0:
                self.realized[symbol] = Fraction(0)
        else:  # reduce, close or flip
            closed = min(abs(q), abs(old))
            gain = closed * (price - avg) * (1 if old > 0 else -1)
            self.realized[symbol] = self.realized.get(symbol, Fraction(0)) + gain
            self.today[symbol] = self.today.get(symbol, Fraction(0)) + gain
            if new != 0 and (new > 0) != (old > 0):  # flipped: a new position at the price
                self.avg[symbol] = price
                self.realized[symbol] = Fraction(0)
        self.qty[symbol] = new
        if new == 0:
            del self.qty[symbol]

    def roll(self) -> None:
        self.today = {}
        self.start = dict(self.qty)
        self.cash_today = {}

    def day_pnl(self, symbol: str, price: Decimal, lastday: Decimal) -> Fraction:
        """``Q × P − Q0 × L + cash``: value now − value at the last roll + the day's cash."""
        qty = self.qty.get(symbol, Fraction(0))
        start = self.start.get(symbol, Fraction(0))
        cash = self.cash_today.get(symbol, Fraction(0))
        return qty * Fraction(price) - start * Fraction(lastday) + cash


class Session:
    """The simulator, the server side (service + bridge) and what was streamed."""

    def __init__(self, sim: Simulator, multiplier: int) -> None:
        self.sim = sim
        self.multiplier = multiplier
        broker = MemoryBroker()
        manager = StreamManager(broker, batch_window_ms=0)
        self.published: list[Any] = []
        manager.hub.deliver = lambda pub: self.published.append(pub) or (0, [])  # type: ignore[method-assign]
        self.service = PortfolioService(manager.publisher, stale_after_s=30)
        self.manager = manager
        self.bridge = AlpacaBridge(
            self.service,
            [BridgeAccount("1", KEY, SECRET)],
            data_key=KEY,
            data_secret=SECRET,
            endpoints=Endpoints(sim.trading_url, sim.trading_stream_url, sim.data_stream_url),
            sync_interval_s=0.25,
            calendar_factory=None,
        )
        self.recomputed = Recomputed(Decimal(100000))
        self.seen_trades = 0
        self.steps = 0
        self.untouched_checked = 0  # positions compared with the broker's unrealized_intraday_pl
        self.roll_at = 0  # index in published of the first publication after the last roll
        self.closed_today: dict[str, dict[str, Any]] = {}
        self.broker_fills = 0  # executions the simulator published
        self.expected_fills = 0
        publish = sim._publish_trade_update

        def counting(account: SimAccount, msg: dict[str, Any]) -> None:
            if msg["data"]["event"] in ("fill", "partial_fill"):
                self.broker_fills += 1
            publish(account, msg)

        sim._publish_trade_update = counting  # type: ignore[method-assign]

    @property
    def account(self) -> SimAccount:
        return self.sim.account(KEY)

    def executions(self) -> int:
        return sum(
            1 for pub in self.published if pub.type == "trade_executed" and pub.user_id == "1"
        )

    def streamed(self) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
        positions: dict[str, dict[str, Any]] = {}
        account: dict[str, Any] | None = None
        # positions closed since the roll, by their closing update (their day P&L is final)
        self.closed_today: dict[str, dict[str, Any]] = {}
        for index, pub in enumerate(self.published):
            items: list[tuple[str, Any]] = []
            if pub.type == "batch":
                items += [("position_update", p) for p in pub.data.get("positions", [])]
                if pub.data.get("account") is not None:
                    items.append(("account_update", pub.data["account"]))
            else:
                items.append((pub.type, pub.data))
            for type_, data in items:
                if type_ == "position_update":
                    self.closed_today.pop(data["symbol"], None)
                    if data["quantity"] == "0" and index >= self.roll_at:
                        self.closed_today[data["symbol"]] = data
                    if data["quantity"] == "0":
                        positions.pop(data["symbol"], None)
                    else:
                        positions[data["symbol"]] = data
                elif type_ == "account_update":
                    account = data
        return positions, account

    def settled(self) -> bool:
        """The server saw every execution, every mark and the broker's trading day."""
        if self.executions() != self.expected_fills:
            return False
        snap = self.service.current_view("1")
        held = {p["symbol"]: p for p in snap["positions"]}
        if set(held) != set(self.account.positions):
            return False
        for symbol, position in held.items():
            if Decimal(position["currentPrice"]) != self.sim.price(symbol):
                return False
        account = snap["account"]
        broker = self.account.account_json(self.sim.price)
        return (
            account is not None
            and account["cash"] == broker["cash"]
            and (
                account["dayPnl"]
                == fmt_money(Decimal(broker["equity"]) - Decimal(broker["last_equity"]))
            )
        )

    async def step(self, action: Callable[[], Any], fills: int) -> None:
        """Run ``action`` (expected to cause ``fills`` executions), settle, compare everything."""
        self.expected_fills = self.executions() + fills
        action()
        await wait_until(lambda: self.broker_fills >= self.expected_fills, "broker fills")
        await wait_until(self.settled, "server to settle")
        await asyncio.sleep(0.3)  # at least one more REST sync fires before the comparison
        await wait_until(self.settled, "server to settle after a sync")
        self.compare()
        self.steps += 1

    def compare(self) -> None:
        for pub in self.published[self.seen_trades :]:
            if pub.type == "trade_executed":
                self.recomputed.fill(pub.data)
        self.seen_trades = len(self.published)
        price = self.sim.price
        broker_account = self.account.account_json(price)
        lastday = self.sim.lastday_price
        broker_positions = {p["symbol"]: p for p in self.account.positions_json(price, lastday)}
        snap = self.service.current_view("1")
        rest_positions = {p["symbol"]: p for p in snap["positions"]}
        rest_account = snap["account"]
        streamed_positions, streamed_account = self.streamed()
        where = f"step {self.steps} ({self.multiplier}x)"

        assert streamed_positions == rest_positions, where
        assert streamed_account == rest_account, where
        assert set(rest_positions) == set(broker_positions) == set(self.recomputed.qty), where
        for symbol, ours in rest_positions.items():
            theirs = broker_positions[symbol]
            signed = Decimal(ours["quantity"]) * (-1 if ours["side"] == "short" else 1)
            assert signed == Decimal(theirs["qty"]) == _dec(self.recomputed.qty[symbol]), where
            assert ours["entryPrice"] == theirs["avg_entry_price"], (where, symbol)
            assert ours["entryPrice"] == fmt_price(_dec(self.recomputed.avg[symbol])), where
            assert ours["marketValue"] == theirs["market_value"], (where, symbol)
            assert ours["unrealizedPnl"] == theirs["unrealized_pl"], (where, symbol)
            assert ours["currentPrice"] == theirs["current_price"], (where, symbol)
            assert ours["realizedPnl"] == fmt_money(_dec(self.recomputed.realized[symbol])), (
                where,
                symbol,
            )
            today = self.recomputed.today.get(symbol, Fraction(0))
            assert ours["realizedPnlToday"] == fmt_money(_dec(today)), (where, symbol)
            assert ours["lastdayPrice"] == theirs["lastday_price"], (where, symbol)
            day_pnl = self.recomputed.day_pnl(symbol, self.sim.price(symbol), lastday(symbol))
            assert ours["dayPnl"] == fmt_money(_dec(day_pnl)), (where, symbol)
            if symbol not in self.recomputed.cash_today:  # no execution since the roll
                assert ours["dayPnl"] == theirs["unrealized_intraday_pl"], (where, symbol)
                self.untouched_checked += 1
        assert rest_account is not None
        assert rest_account["cash"] == broker_account["cash"], where
        assert rest_account["cash"] == fmt_money(_dec(self.recomputed.cash)), where
        assert rest_account["equity"] == broker_account["equity"], where
        assert rest_account["portfolioValue"] == broker_account["portfolio_value"], where
        assert rest_account["buyingPower"] == broker_account["buying_power"], where
        day = Decimal(broker_account["equity"]) - Decimal(broker_account["last_equity"])
        assert rest_account["dayPnl"] == fmt_money(day), where
        realized_today = sum(self.recomputed.today.values(), Fraction(0))
        assert rest_account["realizedPnlToday"] == fmt_money(_dec(realized_today)), where
        # Σ day P&L of the day's symbols = equity − last_equity (exactly: every price here is
        # whole cents and every quantity whole shares, so nothing was rounded on the wire)
        shown = [p["dayPnl"] for p in rest_positions.values()]
        shown += [p["dayPnl"] for p in self.closed_today.values()]
        assert sum((Decimal(v) for v in shown), Decimal(0)) == day, (where, shown, day)


async def wait_until(pred: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("multiplier", [1, 2, 4])
def test_every_figure_matches_the_broker_and_the_fills_at_every_step(multiplier: int) -> None:
    async def main() -> None:
        sim = Simulator(
            tick_s=0.05,
            month_s=1.0,
            fill_delay_s=0.05,
            auto_trade=False,
            jitter_bps=0.0,
            day_s=3600,
        )
        sim.add_account(KEY, SECRET, Decimal(100000), multiplier=multiplier)
        await sim.start()
        session = Session(sim, multiplier)
        for symbol, price in zip(
            SYMBOLS, ("187.32", "100.01", "1000.00", "21.659", "50"), strict=True
        ):
            sim.set_price(symbol, Decimal(price).quantize(Decimal("0.01")))
        await session.bridge.start()
        try:
            await wait_until(lambda: sim.trading_listeners(KEY) >= 1, "trading stream")

            def order(symbol: str, qty: int, side: str, **extra: Any) -> Callable[[], Any]:
                return lambda: sim.submit_order(
                    KEY, symbol=symbol, qty=Decimal(qty), side=side, **extra
                )

            def price(symbol: str, value: str) -> Callable[[], Any]:
                return lambda: sim.set_price(symbol, Decimal(value))

            step = session.step
            # buys at several prices (10 splits into two executions at the simulator)
            await step(order("AAPL", 1, "buy"), 1)
            await step(price("AAPL", "187.33"), 0)
            await step(order("AAPL", 10, "buy"), 2)
            await step(order("IBM", 3, "buy"), 1)
            await step(price("AMZN", "100.00"), 0)
            await step(order("AMZN", 1, "buy"), 1)
            await step(price("AMZN", "100.01"), 0)
            # average (100 + 299 × 100.01) / 300 = 100.00996…, shown by the broker as 100.01
            await step(order("AMZN", 299, "buy"), 2)
            await step(price("AMZN", "100.02"), 0)
            # partial sell, then close
            await step(order("AAPL", 4, "sell"), 1)
            await step(price("AAPL", "180.55"), 0)
            await step(order("AAPL", 7, "sell"), 1)
            # long → short flip
            await step(order("IBM", 8, "sell"), 1)
            await step(price("IBM", "20.10"), 0)
            # a short and its cover (partly at a loss)
            await step(order("MSFT", 6, "sell"), 1)
            await step(price("MSFT", "48.75"), 0)
            await step(order("MSFT", 2, "buy"), 1)
            await step(price("MSFT", "51.20"), 0)
            await step(order("MSFT", 4, "buy"), 1)
            # a limit order canceled after a partial fill
            sim.fill_delay_s = 1.0
            limit: dict[str, Any] = {}

            def place_limit() -> None:
                limit.update(
                    sim.submit_order(
                        KEY,
                        symbol="GOOG",
                        qty=Decimal(10),
                        side="buy",
                        type="limit",
                        limit_price=Decimal("990"),
                    )
                )

            await step(place_limit, 0)
            await step(price("GOOG", "989.50"), 1)  # the first half (5) executes
            sim.fill_delay_s = 0.05

            def uncross_and_cancel() -> None:
                sim.set_price("GOOG", Decimal("995"))
                sim.cancel_order(sim.account(KEY), limit["id"])

            await step(uncross_and_cancel, 0)
            assert sim.account(KEY).orders[limit["id"]].status == "canceled"

            # the trading day rolls at the broker
            def roll() -> None:
                sim.roll_day()
                session.recomputed.roll()
                session.roll_at = len(session.published)

            await step(roll, 0)
            await step(order("AMZN", 5, "sell"), 1)
            await step(price("AMZN", "99.37"), 0)
            await step(order("IBM", 5, "buy"), 1)  # cover the flipped short
            assert session.steps == 26
            assert session.untouched_checked >= 4  # positions held across the roll, untouched
            assert session.bridge.syncs >= 20  # REST syncs fired in between
        finally:
            await session.bridge.stop()
            await session.manager.stop()
            await sim.stop()

    asyncio.run(asyncio.wait_for(main(), 120))
