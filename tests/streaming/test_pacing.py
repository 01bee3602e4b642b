"""Time slicing: a long drain of the outbox lets other callbacks run in between."""

from __future__ import annotations

import asyncio

from streaming.manager import StreamManager
from streaming.memory_broker import MemoryBroker
from streaming.pacing import TimeSlicer


def test_pause_only_when_the_slice_is_used_up() -> None:
    now = [0.0]
    slicer = TimeSlicer(0.005, clock=lambda: now[0])

    async def main() -> None:
        slicer.start()
        now[0] = 0.004
        await slicer.pause_if_due()
        assert slicer.yields == 0
        now[0] = 0.006
        await slicer.pause_if_due()
        assert slicer.yields == 1
        now[0] = 0.010  # 4 ms since that yield
        await slicer.pause_if_due()
        assert slicer.yields == 1

    asyncio.run(main())


def test_a_long_flush_lets_the_loop_run_other_callbacks() -> None:
    """Publishing many events whose fan-out takes time: another callback gets turns between
    them instead of waiting for the whole outbox (it would run only once at the end)."""
    import time

    async def main() -> None:
        broker = MemoryBroker()
        manager = StreamManager(broker, batch_window_ms=0)
        delivered: list[int] = []

        def slow_fan_out(pub: object) -> None:  # ~1 ms of socket writes per publication
            end = time.perf_counter() + 0.001
            while time.perf_counter() < end:
                pass
            delivered.append(1)

        broker.set_handler(slow_fan_out)
        ticks: list[int] = []

        async def other_work() -> None:
            while True:
                ticks.append(len(delivered))
                await asyncio.sleep(0)

        other = asyncio.ensure_future(other_work())
        await asyncio.sleep(0)
        for i in range(100):
            manager.emit(str(i), "order_update", {"symbol": "AAPL"})
        await manager.wait_idle()
        other.cancel()
        assert len(delivered) == 100
        during = {t for t in ticks if 0 < t < 100}
        assert len(during) >= 5  # the other task ran many times in the middle of the drain

    asyncio.run(main())
