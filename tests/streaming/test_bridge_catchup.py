"""The bridge's catch-up gate and its failure path, against the real simulator and alpaca-py.

A fill is published for alice (the ledger's newest), then orders fill while no bridge listens;
then the bridge starts alice with a fills ledger. The REST client is the real one, wrapped so a
test can act at a precise point of the catch-up's reads: make the broker fill an order (its
stream update reaches the bridge while the account is held), or fail the reads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from alpaca.trading.client import TradingClient

from streaming.alpaca_bridge import AlpacaBridge, BridgeAccount, Endpoints
from streaming.broker import BrokerUnavailable, PublishedFills
from streaming.manager import StreamManager
from streaming.memory_broker import MemoryBroker
from streaming.service import PortfolioService
from streaming.simulator import Simulator
from tests.conftest import wait
from tests.simulator.helpers import KEY, SECRET, all_filled, buy, run, started, wait_until

ALICE = "1"


class HookedClient:
    """The real TradingClient, with ``hook(path)`` called (in the executor) before each GET."""

    def __init__(self, inner: TradingClient, hook: Callable[[str], None]) -> None:
        self.inner = inner
        self.hook = hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get(self, path: str, data: dict[str, Any] | None = None) -> Any:
        self.hook(path)
        return self.inner.get(path, data)


class Setup:
    """Simulator + memory engine + service + bridge (with catch-up) for alice."""

    def __init__(self, sim: Simulator, **kwargs: Any) -> None:
        self.sim = sim
        self.loop = asyncio.get_running_loop()
        self.broker = MemoryBroker()
        self.manager = StreamManager(self.broker, batch_window_ms=0)
        self.service = PortfolioService(self.manager.publisher, stale_after_s=300)
        self.bridge = AlpacaBridge(
            self.service,
            [BridgeAccount(ALICE, KEY, SECRET)],
            data_key=KEY,
            data_secret=SECRET,
            endpoints=Endpoints(sim.trading_url, sim.trading_stream_url, sim.data_stream_url),
            sync_interval_s=300,
            calendar_factory=None,
            fills_ledger=self.broker.published_fills,
            catch_up_backoff_s=0.01,
            **kwargs,
        )
        self.hook: Callable[[str], None] = lambda path: None
        client = TradingClient(KEY, SECRET, raw_data=True, url_override=sim.trading_url)
        self.bridge._clients[ALICE] = HookedClient(client, lambda path: self.hook(path))

    async def seed_ledger(self) -> None:
        """Publish one execution for alice, as a previous owner did: the ledger's newest."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        trade = {"executionId": "before", "orderId": "o0", "symbol": "AAPL", "side": "buy"}
        await self.broker.publish(ALICE, "trade_executed", {**trade, "timestamp": now})

    async def fill_unobserved(self, *orders: tuple[str, int]) -> list[dict[str, Any]]:
        """Fill orders at the broker while no bridge listens."""
        placed = [buy(self.sim, symbol, qty) for symbol, qty in orders]
        await all_filled(self.sim, placed, wait(20))
        return placed

    def on_loop(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the test loop from an executor thread (the simulator lives there)."""
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def go() -> None:
            try:
                result.set_result(fn())
            except Exception as exc:
                result.set_exception(exc)

        self.loop.call_soon_threadsafe(go)
        return result.result(wait(10))

    def fill_while_held(self) -> dict[str, Any]:
        """From the executor: the broker fills an order; wait until its fill is held."""
        assert threading.current_thread() is not threading.main_thread()
        order = self.on_loop(lambda: buy(self.sim, "MSFT", 1))
        deadline = self.loop.time() + wait(10)
        while not any(
            d.get("event") == "fill" and d["order"]["id"] == order["id"]
            for d in list(self.bridge._held.get(ALICE, ()))
        ):
            assert self.loop.time() < deadline, "the stream's fill was not held"
            threading.Event().wait(0.02)
        return order

    async def history(self) -> list[Any]:
        await self.manager.wait_idle()
        seq, epoch = await self.broker.position(ALICE)
        pubs = await self.broker.recover(ALICE, 0, epoch)
        assert pubs is not None and len(pubs) == seq
        return pubs

    async def executions(self) -> list[str]:
        return [p.data["executionId"] for p in await self.history() if p.type == "trade_executed"]

    def broker_executions(self, *groups: list[dict[str, Any]] | dict[str, Any]) -> list[str]:
        """Execution ids of these orders, group by group, each group in the broker's fill order."""
        out: list[str] = []
        for group in groups:
            ids = {o["id"] for o in (group if isinstance(group, list) else [group])}
            out += [a.execution_id for a in self.sim.account(KEY).activities if a.order_id in ids]
        return out

    def positions_match(self) -> bool:
        price = self.sim.price
        broker = {p["symbol"]: p["qty"] for p in self.sim.account(KEY).positions_json(price, price)}
        ours = {p["symbol"]: p["quantity"] for p in self.service.positions(ALICE)}
        return ours == broker

    async def close(self) -> None:
        await self.bridge.stop()
        await self.manager.stop()


def prices(sim: Simulator) -> None:
    for symbol, price in (("AAPL", "100"), ("IBM", "50"), ("MSFT", "30")):
        sim.set_price(symbol, Decimal(price))


@pytest.mark.parametrize("when", ["/orders", "/account/activities/FILL"])
def test_a_fill_streamed_during_catch_up_is_published_once_after_the_caught_up_ones(
    when: str,
) -> None:
    """A stream fill held during the catch-up comes after the caught-up fills, exactly once.

    ``/orders``: it fills after the activities were read, so only the stream has it; it is
    released after them. ``/account/activities/FILL``: it fills before, so the catch-up has it
    too; the held copy is dropped.
    """

    async def body() -> None:
        async with started(fill_delay_s=0.05) as h:
            prices(h.sim)
            s = Setup(h.sim)
            try:
                await s.seed_ledger()
                gap = await s.fill_unobserved(("AAPL", 10), ("IBM", 3))
                during: list[dict[str, Any]] = []

                def hook(path: str) -> None:
                    if path == when and not during:
                        during.append(s.fill_while_held())

                s.hook = hook
                await s.bridge.start()
                assert during, "the hook did not run"
                assert ALICE not in s.bridge._held  # live now
                got = await s.executions()
                assert got == ["before", *s.broker_executions(gap, during)]
                assert s.bridge.held_duplicates == (1 if when != "/orders" else 0)
                assert s.bridge.caught_up_fills == len(got) - 1 - (when == "/orders")
                assert s.positions_match()
                # live from now on: a new fill goes straight through
                live = buy(h.sim, "IBM", 1)
                await all_filled(h.sim, [live], wait(20))
                want = ["before", *s.broker_executions(gap, during, live)]
                await wait_until(lambda: len(s.service.trades(ALICE)) == len(want) - 1, wait(10))
                assert await s.executions() == want
            finally:
                await s.close()

    run(body, timeout=wait(60))


def test_catch_up_failing_goes_live_then_publishes_the_gap_when_a_retry_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """REST down during the catch-up: one warning per try, live after the last (the held fill
    published), the gap pending; the retry at the next sync publishes it, each once."""

    async def body() -> None:
        async with started(fill_delay_s=0.05) as h:
            prices(h.sim)
            s = Setup(h.sim, catch_up_attempts=3)
            try:
                await s.seed_ledger()
                gap = await s.fill_unobserved(("AAPL", 10), ("IBM", 3))
                during: list[dict[str, Any]] = []
                failing = [True]

                def hook(path: str) -> None:
                    if path != "/account/activities/FILL" or not failing[0]:
                        return
                    if not during:
                        during.append(s.fill_while_held())
                    raise ConnectionError("broker down")

                s.hook = hook
                with caplog.at_level(logging.WARNING, logger="streaming.alpaca_bridge"):
                    await s.bridge.start()
                lines = [r.getMessage() for r in caplog.records if r.name.endswith("bridge")]
                assert lines[:3] == [
                    f"catch-up of trader 1 failed at catch-up (try {n} of 3): "
                    "ConnectionError: broker down"
                    for n in (1, 2, 3)
                ]
                assert len(lines) == 4 and "streams live without catch-up" in lines[3]
                assert all("\n" not in line for line in lines)
                # live: the held fill is published; the gap is not (yet)
                assert await s.executions() == ["before", *s.broker_executions(during)]
                assert s.bridge.status()["catchUp"]["pending"] == [ALICE]

                failing[0] = False
                await s.bridge._refresh_and_sync()
                got = await s.executions()
                assert got == ["before", *s.broker_executions(during, gap)]
                assert s.bridge.status()["catchUp"]["pending"] == []
                assert s.positions_match()
                await s.bridge._refresh_and_sync()  # nothing pending: nothing again
                assert await s.executions() == got
            finally:
                await s.close()

    run(body, timeout=wait(60))


def test_unreadable_ledger_goes_live_without_catch_up() -> None:
    """The engine cannot be read (Redis down): tries, then live, nothing pending."""

    async def body() -> None:
        async with started(fill_delay_s=0.05) as h:
            prices(h.sim)
            s = Setup(h.sim, catch_up_attempts=2)
            calls: list[str] = []

            async def down(user_id: str) -> PublishedFills:
                calls.append(user_id)
                raise BrokerUnavailable("Redis unreachable: connection refused")

            s.bridge.fills_ledger = down
            try:
                await s.bridge.start()
                assert calls == [ALICE, ALICE]
                assert ALICE not in s.bridge._held
                status = s.bridge.status()["catchUp"]
                assert status["pending"] == [] and status["errors"] == 2
                order = buy(h.sim, "IBM", 1)
                await all_filled(h.sim, [order], wait(20))
                await wait_until(lambda: len(s.service.trades(ALICE)) == 1, wait(10))
                assert await s.executions() == s.broker_executions(order)
            finally:
                await s.close()

    run(body, timeout=wait(60))


def test_fresh_stream_catches_up_nothing_from_before_it() -> None:
    """Nothing ever published for alice: no catch-up (her earlier fills are in the snapshot)."""

    async def body() -> None:
        async with started(fill_delay_s=0.05) as h:
            prices(h.sim)
            s = Setup(h.sim)
            try:
                await s.fill_unobserved(("AAPL", 2))
                reads: list[str] = []
                s.hook = reads.append
                await s.bridge.start()
                assert reads == [] and s.bridge.catch_ups == 0
                assert await s.executions() == []
                assert s.positions_match()
            finally:
                await s.close()

    run(body, timeout=wait(60))
