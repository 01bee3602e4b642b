"""Catch-up against the real simulator over HTTP: fills made while no bridge was listening.

An "old bridge" (a raw alpaca-py TradingStream feeding a PortfolioState) publishes some events,
then stops; orders fill, partially fill, get canceled and opened while nobody listens; then
:func:`streaming.catchup.catch_up`, through alpaca-py's TradingClient REST session, must return
every execution exactly once, in order, with the order updates around them, and a second
catch-up from where the first ended must return nothing.
"""

from __future__ import annotations

import asyncio
import functools
from decimal import Decimal
from typing import Any

import pytest
from alpaca.trading.client import TradingClient
from alpaca.trading.stream import TradingStream

from streaming.catchup import CatchUp, CatchUpError, catch_up, fill_key
from streaming.portfolio import PortfolioState, parse_timestamp
from streaming.simulator import Simulator
from tests.simulator.helpers import KEY, SECRET, StreamThread, run, started, wait_until


def client_for(sim: Simulator) -> TradingClient:
    return TradingClient(KEY, SECRET, raw_data=True, url_override=sim.trading_url)


async def run_catch_up(sim: Simulator, **kwargs: Any) -> CatchUp:
    fn = functools.partial(catch_up, client_for(sim), **kwargs)
    return await asyncio.get_running_loop().run_in_executor(None, fn)


async def settled(sim: Simulator, order_id: str, status: str) -> None:
    acct = sim.account(KEY)
    await wait_until(lambda: acct.get_order(order_id).status == status, 10, f"{order_id} {status}")


def test_catch_up_returns_every_missed_execution_once_in_order_then_nothing() -> None:
    async def body() -> None:
        async with started(fill_delay_s=0.3) as h:
            sim = h.sim
            acct = sim.account(KEY)
            for symbol, price in (("AAPL", "100"), ("IBM", "50"), ("MSFT", "30")):
                sim.set_price(symbol, Decimal(price))
            sim.set_price("GOOG", Decimal("200"))
            sim.set_price("AMZN", Decimal("80"))

            # -- the old bridge listens and publishes into its portfolio
            portfolio = PortfolioState(KEY)
            published: list[dict[str, Any]] = []
            stream = TradingStream(KEY, SECRET, raw_data=True, url_override=sim.trading_stream_url)

            async def on_update(message: Any) -> None:
                published.append(message.get("data", message))

            stream.subscribe_trade_updates(on_update)
            thread = StreamThread(stream).start()
            await wait_until(lambda: sim.trading_listeners() >= 1, 10, "stream listening")
            aapl = sim.submit_order(KEY, symbol="AAPL", qty=Decimal(4), side="buy")
            ibm = sim.submit_order(
                KEY, symbol="IBM", qty=Decimal(3), side="buy", type="limit", limit_price=Decimal(1)
            )
            await settled(sim, aapl["id"], "filled")
            await wait_until(lambda: len(published) == 3, 10, "3 events published")
            await thread.stop()
            await thread.join()
            await wait_until(lambda: sim.trading_listeners() == 0, 10, "nobody listening")
            seen: set[str] = set()
            for update in published:
                portfolio.apply_trade_update(update)
                if update["event"] in ("fill", "partial_fill"):
                    seen.add(update["execution_id"])
                    seen.add(fill_key(update["order"]["id"], update["order"]["filled_qty"]))
            since = max(parse_timestamp(u["timestamp"]) for u in published)
            before = len(acct.activities)
            assert before == 1

            # -- nobody listens: fills, a partial fill then cancel, cancels, new orders
            msft = sim.submit_order(KEY, symbol="MSFT", qty=Decimal(12), side="buy")
            await settled(sim, msft["id"], "filled")
            sim.cancel_order(acct, ibm["id"])
            goog = sim.submit_order(
                KEY,
                symbol="GOOG",
                qty=Decimal(10),
                side="buy",
                type="limit",
                limit_price=Decimal(250),
            )
            await settled(sim, goog["id"], "partially_filled")
            sim.cancel_order(acct, goog["id"])
            sell = sim.submit_order(KEY, symbol="AAPL", qty=Decimal(4), side="sell")
            await settled(sim, sell["id"], "filled")
            amzn = sim.submit_order(
                KEY, symbol="AMZN", qty=Decimal(2), side="buy", type="limit", limit_price=Decimal(1)
            )
            missed = acct.activities[before:]
            assert [a.order_id for a in missed] == [msft["id"], msft["id"], goog["id"], sell["id"]]

            # -- the new owner catches up (small pages, so paging is exercised)
            result = await run_catch_up(
                sim, since=since, seen=seen, open_order_ids=[ibm["id"]], page_size=2
            )
            assert [f.execution_id for f in result.fills] == [a.execution_id for a in missed]
            assert [(f.partial, f.qty, f.cum_qty) for f in result.fills] == [
                (True, Decimal(6), Decimal(6)),
                (False, Decimal(6), Decimal(12)),
                (True, Decimal(5), Decimal(5)),
                (False, Decimal(4), Decimal(4)),
            ]
            got = [(e.event, e.order["id"]) for e in result.events]
            assert got == [
                ("new", msft["id"]),
                ("partial_fill", msft["id"]),
                ("fill", msft["id"]),
                ("canceled", ibm["id"]),
                ("new", goog["id"]),
                ("partial_fill", goog["id"]),
                ("canceled", goog["id"]),
                ("new", sell["id"]),
                ("fill", sell["id"]),
                ("new", amzn["id"]),
            ]
            stamps = [e.timestamp for e in result.events]
            assert stamps == sorted(stamps) and stamps[0] > since
            # each fill carries the order as it was right after it
            states = [
                (e.order["status"], e.order["filled_qty"], e.order["filled_avg_price"])
                for e in result.events
                if e.fill is not None
            ]
            assert states == [
                ("partially_filled", "6", "30.00"),  # computed: every fill known
                ("filled", "12", "30.00"),
                ("partially_filled", "5", "200.00"),
                ("filled", "4", "100.00"),
            ]
            assert result.requests >= 4  # 3 activity pages (2+2+0), orders

            # -- the rebuilt trade updates are what the portfolio takes from the stream
            for event in result.events:
                portfolio.apply_trade_update(event.trade_update())
            executed = [t["executionId"] for t in portfolio.trades()]
            assert executed == [a.execution_id for a in acct.activities]  # each exactly once
            qty = {p["symbol"]: p["quantity"] for p in portfolio.positions()}
            assert qty == {"GOOG": "5", "MSFT": "12"}
            assert {s: str(p.qty) for s, p in acct.positions.items()} == qty
            status = {o["brokerOrderId"]: o["status"] for o in portfolio.orders()}
            assert status == {o.id: o.status for o in acct.orders.values()}
            # replaying the catch-up changes nothing (the portfolio de-duplicates too)
            for event in result.events:
                assert portfolio.apply_trade_update(event.trade_update()) == []

            # -- a second catch-up from where the first ended returns nothing
            again = await run_catch_up(
                sim,
                since=result.resume_at,
                seen=result.seen,
                open_order_ids=[amzn["id"]],
            )
            assert again.events == [] and again.fills == []
            assert again.resume_at == result.resume_at

            # -- what happens next is found by the next one
            sim.cancel_order(acct, amzn["id"])
            third = await run_catch_up(
                sim, since=again.resume_at, seen=again.seen, open_order_ids=[amzn["id"]]
            )
            assert [(e.event, e.order["id"]) for e in third.events] == [("canceled", amzn["id"])]

    run(body, timeout=60)


def test_fill_keys_alone_de_duplicate_and_overlap_is_removed() -> None:
    async def body() -> None:
        async with started() as h:
            sim = h.sim
            acct = sim.account(KEY)
            sim.set_price("IBM", Decimal("40"))
            order = sim.submit_order(KEY, symbol="IBM", qty=Decimal(10), side="buy")
            await settled(sim, order["id"], "filled")
            first, second = acct.activities
            # the bridge published the partial fill and knows it only by its fill key
            result = await run_catch_up(
                sim,
                since=first.transaction_time,
                seen={fill_key(order["id"], "5")},
                overlap_s=60,
            )
            assert [f.execution_id for f in result.fills] == [second.execution_id]
            assert [e.event for e in result.events] == ["fill"]
            assert result.fills[0].key == fill_key(order["id"], Decimal("10.0"))
            # from before everything with nothing seen: both, and the order's new
            everything = await run_catch_up(
                sim, since=first.transaction_time.replace(year=2000), seen=()
            )
            assert [e.event for e in everything.events] == ["new", "partial_fill", "fill"]

    run(body)


def test_bad_arguments_and_malformed_broker_answers() -> None:
    class Fake:
        def __init__(self, answers: dict[str, Any]) -> None:
            self.answers = answers

        def get(self, path: str, data: dict[str, Any] | None = None) -> Any:
            return self.answers[path.split("/")[1]]

    since = parse_timestamp("2024-05-14T14:00:00Z")
    with pytest.raises(ValueError, match="page_size"):
        catch_up(Fake({}), since=since, page_size=0)
    with pytest.raises(ValueError, match="page_size"):
        catch_up(Fake({}), since=since, page_size=101)
    with pytest.raises(ValueError, match="overlap_s"):
        catch_up(Fake({}), since=since, overlap_s=-1)
    good = {
        "id": "20240514100001000::6f1b1f0e-0000-4000-8000-000000000001",
        "activity_type": "FILL",
        "transaction_time": "2024-05-14T14:00:01Z",
        "type": "fill",
        "price": "10",
        "qty": "1",
        "side": "buy",
        "symbol": "IBM",
        "leaves_qty": "0",
        "cum_qty": "1",
        "order_id": "o-1",
    }
    for change, named in (
        ({"qty": "lots"}, "qty"),
        ({"type": "bust"}, "type"),
        ({"id": "no-separator"}, "id"),
        ({"transaction_time": "yesterday"}, "transaction_time"),
        ({"activity_type": "DIV"}, "activity_type"),
        ({"order_id": None}, "order_id"),
    ):
        with pytest.raises(CatchUpError, match=named):
            catch_up(Fake({"account": [{**good, **change}], "orders": []}), since=since)
    with pytest.raises(CatchUpError, match="JSON array"):
        catch_up(Fake({"account": {"oops": 1}, "orders": []}), since=since)

    # a fill whose order cannot be read (404) is an error, never a silent drop
    class NotFound(Exception):
        status_code = 404

    class Gone(Fake):
        def get(self, path: str, data: dict[str, Any] | None = None) -> Any:
            if path.startswith("/orders/"):
                raise NotFound(path)
            return super().get(path, data)

    with pytest.raises(CatchUpError, match="could not be read"):
        catch_up(Gone({"account": [good], "orders": []}), since=since)
    # paging that never ends is cut off
    with pytest.raises(CatchUpError, match="gave up"):
        catch_up(Fake({"account": [good, good]}), since=since, page_size=2, max_requests=5)
