"""The bridge syncs right after each market close and open (exchange calendar)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

from streaming.alpaca_bridge import AlpacaBridge
from streaming.market_calendar import MarketCalendar
from tests.streaming.test_service import make


class SoonCalendar:
    """A calendar whose next close is 0.2 s away and whose next open is tomorrow."""

    def __init__(self) -> None:
        self.asked: list[datetime] = []

    def next_close(self, after: datetime) -> datetime:
        self.asked.append(after)
        return after + timedelta(seconds=0.2)

    def next_open(self, after: datetime) -> datetime:
        return after + timedelta(days=1)


def test_a_sync_runs_shortly_after_the_close_and_the_next_one_is_planned() -> None:
    async def main() -> None:
        service, _, _, _ = make()
        calendar = SoonCalendar()
        bridge = AlpacaBridge(
            service, [], data_key="k", data_secret="s", calendar_factory=lambda: calendar
        )
        bridge.boundary_delay_s = 0.1
        syncs: list[float] = []
        bridge._sync_soon = lambda: syncs.append(asyncio.get_running_loop().time())  # type: ignore[method-assign]
        start = asyncio.get_running_loop().time()
        bridge._schedule_boundary()
        while not syncs:
            await asyncio.sleep(0.02)
            assert asyncio.get_running_loop().time() - start < 5, "no boundary sync"
        assert syncs[0] - start >= 0.25  # close (0.2 s) + delay (0.1 s), minus timer slack
        while len(calendar.asked) < 2:  # the next boundary is planned after each one
            await asyncio.sleep(0.02)
        await bridge.stop()
        assert bridge._boundary is None

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_broken_calendar_only_turns_the_boundary_syncs_off(caplog: Any) -> None:
    async def main() -> None:
        service, _, _, _ = make()

        def broken() -> MarketCalendar:
            raise ImportError("exchange_calendars is not installed")

        bridge = AlpacaBridge(service, [], data_key="k", data_secret="s", calendar_factory=broken)
        bridge._schedule_boundary()
        await asyncio.sleep(0.2)
        assert bridge.next_boundary_sync is None
        assert bridge._boundary is not None  # loading it again later (a passing fault)
        await bridge.stop()
        assert bridge._boundary is None

    with caplog.at_level(logging.WARNING):
        asyncio.run(asyncio.wait_for(main(), 10))
    (line,) = [r for r in caplog.records if "no market calendar" in r.getMessage()]
    assert line.exc_info is None  # one line naming the cause, no traceback
    assert "ImportError: exchange_calendars is not installed" in line.getMessage()


def test_nyse_calendar_knows_holidays_and_early_closes() -> None:
    calendar = MarketCalendar()
    # 2026-11-26 is Thanksgiving (closed); the 27th closes early, at 13:00 ET (18:00 UTC).
    wednesday_evening = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
    assert calendar.next_open(wednesday_evening) == datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
    assert calendar.next_close(wednesday_evening) == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    assert calendar.session_after(date(2026, 11, 25)) == date(2026, 11, 27)
    assert calendar.session_after(date(2026, 11, 28)) == date(2026, 11, 30)  # a Saturday
