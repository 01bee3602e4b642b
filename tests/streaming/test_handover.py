"""No lost execution across a hand-over (issue 9, item 2), against the real simulator with real
alpaca-py and the real Redis engine.

Bridge A runs in its own process while the simulator fills alice's orders; it is killed with
SIGKILL mid-burst (whatever its outbox held is lost with it); more orders fill while nobody
listens; bridge B (fresh service and manager, same Redis prefix) starts alice, with more fills
arriving while it catches up and after. The engine's history for alice must then hold every
execution the broker made exactly once, in fill order, and B's positions must be the broker's.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from alpaca.trading.client import TradingClient

from streaming.alpaca_bridge import AlpacaBridge, Endpoints
from streaming.broker import Publication
from streaming.manager import StreamManager
from streaming.redis_broker import RedisBroker
from streaming.simulator import Simulator
from tests.conftest import wait
from tests.simulator.helpers import KEY, SECRET, all_filled, buy, call, run, started, wait_until
from tests.streaming.bridge_process import redis_bridge
from tests.streaming.test_redis import REDIS_URL, prefix  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]
ALICE = "1"


def activities(sim: Simulator) -> list[dict[str, Any]]:
    """Every FILL activity of the account, oldest first (the broker's own list)."""
    client = TradingClient(KEY, SECRET, raw_data=True, url_override=sim.trading_url)
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"direction": "asc", "page_size": 100}
    while True:
        page = client.get("/account/activities/FILL", params)
        out.extend(page)
        if len(page) < 100:
            return out
        params = {**params, "page_token": page[-1]["id"]}


async def ledger_size(broker: RedisBroker) -> int:
    return len((await broker.published_fills(ALICE)).ids)


def test_kill_9_the_bridge_of_alice_mid_burst_every_fill_once_in_order(prefix: str) -> None:  # noqa: F811
    """SIGKILL bridge A while orders fill; B catches up: each execution once, in order."""

    async def body() -> None:
        async with started(fill_delay_s=0.05) as h:
            sim = h.sim
            for symbol, price in (("AAPL", "100"), ("IBM", "50"), ("MSFT", "30")):
                sim.set_price(symbol, Decimal(price))
            reader = RedisBroker(REDIS_URL, prefix=prefix)
            await reader.start()
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.streaming.bridge_process",
                sim.trading_url,
                sim.trading_stream_url,
                sim.data_stream_url,
                REDIS_URL,
                prefix,
                ALICE,
                KEY,
                SECRET,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
            )
            bridge_b: AlpacaBridge | None = None
            manager_b: StreamManager | None = None
            broker_b: RedisBroker | None = None
            try:
                assert proc.stdout is not None
                line = await asyncio.wait_for(proc.stdout.readline(), wait(60))
                assert line.strip() == b"ready", line

                # -- A publishes some fills (10 shares execute in two parts at the simulator)
                await all_filled(sim, [buy(sim, "AAPL", 1), buy(sim, "IBM", 10)], wait(20))
                await wait_until_async(lambda: ledger_size(reader), 3, "A published 3 fills")

                # -- a burst; A is killed while it fills
                sim.fill_delay_s = 0.2
                burst = [buy(sim, "MSFT", 2), buy(sim, "AAPL", 10), buy(sim, "IBM", 3)]
                await wait_until(
                    lambda: any(sim.account(KEY).get_order(o["id"]).status != "new" for o in burst),
                    wait(20),
                    "the burst starts filling",
                )
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                published_by_a = await ledger_size(reader)

                # -- nobody listens: more fills
                sim.fill_delay_s = 0.05
                gap = [buy(sim, "MSFT", 10), buy(sim, "AAPL", 4)]
                await all_filled(sim, burst + gap, wait(20))
                missed = len(await call(activities, sim)) - published_by_a

                # -- B takes alice over, with orders filling while it catches up
                endpoints = Endpoints(sim.trading_url, sim.trading_stream_url, sim.data_stream_url)
                broker_b, manager_b, service_b, bridge_b = await redis_bridge(
                    REDIS_URL, prefix, ALICE, KEY, SECRET, endpoints
                )
                sim.fill_delay_s = 0.1
                during = [buy(sim, "IBM", 10), buy(sim, "MSFT", 1)]
                await bridge_b.start()
                live = [buy(sim, "AAPL", 10), buy(sim, "IBM", 2)]
                await all_filled(sim, during + live, wait(20))
                expected = await call(activities, sim)  # the simulator runs on this loop
                await wait_until_async(
                    lambda: ledger_size(reader), len(expected), "B published every fill"
                )
                await manager_b.wait_idle()

                # -- the engine's history: every execution once, in fill order
                seq, epoch = await reader.position(ALICE)
                history = await reader.recover(ALICE, 0, epoch)
                assert history is not None and len(history) == seq
                trades = [p.data for p in history if p.type == "trade_executed"]
                ids = [t["executionId"] for t in trades]
                want = {a["id"].split("::", 1)[1] for a in expected}
                assert len(ids) == len(set(ids)), "an execution was published twice"
                assert set(ids) == want
                assert_fill_order(trades, expected)
                assert 3 <= published_by_a < len(expected)  # some were caught up by B
                assert bridge_b.catch_ups == 1
                # every fill A did not publish was caught up; later ones may have been too
                assert missed <= bridge_b.caught_up_fills <= len(expected) - published_by_a

                # -- B's positions are the broker's
                price = sim.price
                broker_positions = {
                    p["symbol"]: p["qty"] for p in sim.account(KEY).positions_json(price, price)
                }
                ours = {p["symbol"]: p["quantity"] for p in service_b.positions(ALICE)}
                assert ours == broker_positions
                assert_positions_streamed(history, broker_positions)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                if bridge_b is not None:
                    await bridge_b.stop()
                if manager_b is not None:
                    await manager_b.stop()
                if broker_b is not None:
                    await broker_b.close()
                await reader.close()

    run(body, timeout=wait(180))


async def wait_until_async(read: Any, at_least: int, what: str) -> None:
    """Poll an async count until it reaches ``at_least``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait(30)
    while await read() < at_least:
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def assert_fill_order(trades: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Published in broker order: fill times never go back; per order, cum qty only grows."""
    by_id = {a["id"].split("::", 1)[1]: a for a in expected}
    times = [_time(by_id[t["executionId"]]["transaction_time"]) for t in trades]
    assert times == sorted(times), "executions published out of fill order"
    cum: dict[str, Decimal] = {}
    for trade in trades:
        activity = by_id[trade["executionId"]]
        order = activity["order_id"]
        assert Decimal(activity["cum_qty"]) > cum.get(order, Decimal(0))
        cum[order] = Decimal(activity["cum_qty"])


def assert_positions_streamed(history: list[Publication], broker: dict[str, str]) -> None:
    """Folding the streamed position updates gives the broker's positions too."""
    positions: dict[str, str] = {}
    for pub in history:
        if pub.type == "position_update":
            positions[pub.data["symbol"]] = pub.data["quantity"]
    assert {s: q for s, q in positions.items() if q != "0"} == broker


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
