"""The publisher's batch timer: armed for the earliest due batch, released at its window end."""

from __future__ import annotations

import asyncio
from typing import Any

from streaming.memory_broker import MemoryBroker
from streaming.publisher import Publisher


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pos(symbol: str) -> dict[str, Any]:
    return {"symbol": symbol, "qty": "1"}


def test_the_timer_follows_the_earliest_due_batch() -> None:
    async def main() -> None:
        clock = Clock()
        broker = MemoryBroker()
        published: list[tuple[str, str]] = []
        broker.set_handler(lambda pub: published.append((pub.user_id, pub.type)))
        publisher = Publisher(broker, batch_window_ms=250, clock=clock)
        publisher.start()
        assert publisher._timer is None  # nothing held, nothing armed
        due = {u: publisher.batcher._next_due(u, clock.now) for u in ("a", "b", "c")}
        for user in sorted(due, key=due.__getitem__, reverse=True):  # latest first
            publisher.emit(user, "position_update", pos("AAPL"))
            assert publisher._timer_due == due[user]  # re-armed for the earlier one
        order = sorted(due, key=due.__getitem__)
        for user in order:  # each release happens at that user's window end, in order
            clock.now = due[user]
            publisher._on_timer()
            await publisher.wait_idle()
            assert published[-1] == (user, "batch")
        assert len(published) == 3 and publisher._timer is None  # nothing left to arm
        await publisher.stop()

    asyncio.run(main())


def test_a_batch_is_released_by_the_timer_on_a_real_clock() -> None:
    async def main() -> None:
        broker = MemoryBroker()
        got = asyncio.get_running_loop().create_future()
        broker.set_handler(lambda pub: got.done() or got.set_result(pub.type))
        publisher = Publisher(broker, batch_window_ms=20)
        publisher.start()
        publisher.emit("a", "position_update", pos("AAPL"))
        assert await asyncio.wait_for(got, 5) == "batch"
        await publisher.stop()
        assert publisher._timer is None

    asyncio.run(main())
