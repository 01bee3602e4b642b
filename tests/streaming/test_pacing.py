"""Time slicing: a long drain of the outbox lets other callbacks run in between."""

from __future__ import annotations

import asyncio

from streaming.manager import StreamManager
from streaming.memory_broker import MemoryBroker
from streaming.pacing import TimeSlicer
from streaming.session import Session


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
            manager.publisher.emit(str(i), "order_update", {"symbol": "AAPL"})
        await manager.wait_idle()
        other.cancel()
        assert len(delivered) == 100
        during = {t for t in ticks if 0 < t < 100}
        assert len(during) >= 5  # the other task ran many times in the middle of the drain

    asyncio.run(main())


def test_paced_sweep_pings_everyone_and_yields_between() -> None:
    """Heartbeat ticks over many connections ping each once, at most the budget per tick, and
    let others run."""
    import time

    class SlowPing(Session):
        def __init__(self, n: int) -> None:
            super().__init__(self, str(n % 50), f"s{n}")
            self.pings = 0

        def send(self, message: object) -> object:
            raise AssertionError("not expected")

        def ping(self) -> None:  # ~0.1 ms of socket write
            end = time.perf_counter() + 0.0001
            while time.perf_counter() < end:
                pass
            self.pings += 1

        def close(self, code: int, reason: str) -> None:
            raise AssertionError("nobody is silent here")

    async def main() -> None:
        now = [0.0]
        manager = StreamManager(
            MemoryBroker(),
            batch_window_ms=0,
            max_connections_per_user=1000,
            heartbeat_interval_s=15.0,
            heartbeat_timeout_s=30.0,
            clock=lambda: now[0],
        )
        clients = [SlowPing(n) for n in range(500)]
        for c in clients:
            assert manager.connect(c)  # type: ignore[arg-type]
            c.last_seen = 20.0  # answers every ping at once
        now[0] = 20.0  # every first ping is due
        turns: list[int] = []

        async def other_work() -> None:
            while True:
                turns.append(sum(c.pings for c in clients))
                await asyncio.sleep(0)

        other = asyncio.ensure_future(other_work())
        await asyncio.sleep(0)
        await manager.sweep_paced()
        assert manager.ping_budget() == 100  # 500 tabs: the minimum budget per tick
        assert sum(c.pings for c in clients) == 100
        assert len({t for t in turns if 0 < t < 100}) >= 1  # it yielded mid-tick
        for _ in range(4):  # the next ticks ping the others, none twice
            now[0] += manager.heartbeat_tick_s
            await manager.sweep_paced()
        other.cancel()
        assert all(c.pings == 1 for c in clients)
        assert len({t for t in turns if 0 < t < 500}) >= 3

    asyncio.run(main())
