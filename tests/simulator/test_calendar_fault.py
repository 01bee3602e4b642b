"""The simulator without a market calendar: one warning line, then a retry (no traceback)."""

import asyncio
import logging
import sys
import types
from typing import Any

import pytest

from streaming.simulator import Simulator, server


def test_a_calendar_that_cannot_load_is_one_line_and_retried(
    caplog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[int] = []

    class Broken:
        def __init__(self) -> None:
            attempts.append(1)
            raise OSError(24, "Too many open files")

    fake = types.ModuleType("streaming.market_calendar")
    fake.MarketCalendar = Broken  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "streaming.market_calendar", fake)
    monkeypatch.setattr(server, "CALENDAR_RETRY_S", 0.1)

    async def main() -> None:
        sim = Simulator(seed=1)
        await sim.start()
        try:
            while len(attempts) < 2:  # tried again after CALENDAR_RETRY_S
                await asyncio.sleep(0.02)
        finally:
            await sim.stop()
        assert sim._close_handle is None  # the retry is cancelled by stop()

    with caplog.at_level(logging.WARNING):
        asyncio.run(asyncio.wait_for(main(), 10))
    lines = [r for r in caplog.records if "no market calendar" in r.getMessage()]
    assert len(lines) >= 2
    assert all(r.exc_info is None for r in lines)  # one line naming the cause, no traceback
    assert "OSError: [Errno 24] Too many open files" in lines[0].getMessage()
    assert "retrying in 0.1 s" in lines[0].getMessage()
