"""The engine and the views after Redis restarts: pooled connections died with it.

redis-py 8 reports the first use of each dead pooled connection as "Connection closed by
server" unless ConnectionError is retried; a subscribe answered then failed with a traceback
(seen in tests/test_cluster.py). Runs its own ``redis-server`` (never the shared one).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streaming.publisher import Publisher
from streaming.redis_broker import RedisBroker
from streaming.shared import RedisViews
from tests.test_redis_outage import PrivateRedis, private_redis  # noqa: F401 - the fixture

pytestmark = pytest.mark.redis


@pytest.mark.gen_test(timeout=60)
async def test_first_calls_after_a_restart_do_not_fail(private_redis: PrivateRedis) -> None:  # noqa: F811
    """position/recover and the view read work at once on a Redis restarted with its data."""
    broker = RedisBroker(private_redis.url, prefix="restart")
    views = RedisViews(private_redis.url, prefix="restart")
    await broker.start()
    await views.start()
    try:
        publisher = Publisher(broker, batch_window_ms=0)
        publisher.emit("7", "order_update", {"orderId": "o-1"})
        await publisher.wait_idle()
        seq, epoch = await broker.position("7")
        await views.save("7", {"positions": [], "orders": [], "account": None, "trades": []})
        # several connections in each pool, all to die with the server
        await asyncio.gather(*(broker.position(str(u)) for u in range(6)))
        await asyncio.gather(*(views.view(str(u)) for u in range(6)))

        private_redis.stop_saving()
        private_redis.start()

        results: list[Any] = [await broker.position("7") for _ in range(6)]
        assert results == [(seq, epoch)] * 6
        assert await broker.recover("7", seq, epoch) == []
        assert (await views.view("7"))["orders"] == []
    finally:
        await views.close()
        await broker.close()
