"""streaming.service.PortfolioService: broker events → stream events, sync races, staleness."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from streaming.manager import StreamManager
from streaming.memory_broker import MemoryBroker
from streaming.service import PortfolioService
from tests.streaming.test_portfolio import ACCOUNT, FILL_EXAMPLE, rest_position


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[PortfolioService, MemoryBroker, list[Any], Clock]:
    clock = Clock()
    broker = MemoryBroker()
    manager = StreamManager(broker, batch_window_ms=0, clock=clock)
    published: list[Any] = []
    manager.hub.deliver = lambda pub: published.append(pub) or 0  # type: ignore[method-assign]
    service = PortfolioService(manager.publisher, stale_after_s=30, clock=clock)
    return service, broker, published, clock


def test_fill_becomes_stream_events_for_its_trader() -> None:
    """A fill for trader 1 → order_update, trade_executed, position_update, account_update."""

    async def main() -> None:
        service, _, published, _ = make()
        service.on_sync("1", ACCOUNT, [], [])
        await service.publisher.wait_idle()
        published.clear()
        service.on_trade_update("1", copy.deepcopy(FILL_EXAMPLE))
        await service.publisher.wait_idle()
        assert [p.type for p in published] == [
            "order_update",
            "trade_executed",
            "position_update",
            "account_update",
        ]
        assert {p.user_id for p in published} == {"1"}
        assert service.fill_count("1") == 1
        assert service.symbols() == {"AAPL"}

    asyncio.run(main())


def test_sync_that_overlapped_a_fill_is_skipped() -> None:
    """A REST view fetched before a fill must not roll that fill back; the caller retries."""

    async def main() -> None:
        service, _, _, _ = make()
        service.on_sync("1", ACCOUNT, [], [])
        before = service.fill_count("1")
        service.on_trade_update("1", copy.deepcopy(FILL_EXAMPLE))  # arrives during the fetch
        stale_view: list[Any] = []  # fetched before the fill: no position yet
        assert service.on_sync("1", ACCOUNT, stale_view, [], fills_before=before) is False
        assert [p["symbol"] for p in service.current_view("1")["positions"]] == ["AAPL"]
        fresh = [rest_position("AAPL", "10", "187.32", "187.32")]
        assert service.on_sync("1", ACCOUNT, fresh, [], fills_before=service.fill_count("1"))
        await service.publisher.wait_idle()

    asyncio.run(main())


def test_bad_trade_update_is_counted_and_dropped() -> None:
    """A malformed broker message is logged and counted; nothing is published."""

    async def main() -> None:
        service, _, published, _ = make()
        service.add_account("1")
        service.on_trade_update("1", {"event": "fill"})
        service.on_trade_update("9", copy.deepcopy(FILL_EXAMPLE))  # unknown trader
        await service.publisher.wait_idle()
        assert published == []
        assert service.rejected_updates == 1

    asyncio.run(main())


def test_staleness_told_to_every_trader_of_this_feed_only() -> None:
    """30 s of broker silence → one broker_stale status to each trader whose account this
    process streams (connected here or on another web process), none to others; a message →
    broker_ok."""

    async def main() -> None:
        service, _, published, clock = make()
        service.add_account("1")
        service.add_account("2")
        clock.now += 29
        service.check_staleness()
        assert not service.stale
        clock.now += 2
        service.check_staleness()
        service.check_staleness()
        await service.publisher.wait_idle()
        assert sorted((p.user_id, p.data["code"]) for p in published) == [
            ("1", "broker_stale"),
            ("2", "broker_stale"),
        ]
        service.on_price("MSFT", "10")  # any broker message
        await service.publisher.wait_idle()
        assert sorted((p.user_id, p.data["code"]) for p in published[2:]) == [
            ("1", "broker_ok"),
            ("2", "broker_ok"),
        ]
        assert not service.stale
        service.remove_account("2")  # its lease went to another bridge
        clock.now += 31
        service.check_staleness()
        await service.publisher.wait_idle()
        assert [(p.user_id, p.data["code"]) for p in published[4:]] == [("1", "broker_stale")]

    asyncio.run(main())
