"""The engines' fills ledger (issue 9, item 2): every published ``trade_executed`` is recorded
with its fill time, atomically with its publication, in both the memory and the Redis engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streaming.broker import Broker, BrokerUnavailable, PublishedFills, fill_record
from streaming.memory_broker import MemoryBroker
from streaming.redis_broker import RedisBroker
from tests.streaming.test_redis import REDIS_URL, prefix  # noqa: F401 - fixture

T0 = datetime(2026, 11, 25, 20, 15, 3, 123456, tzinfo=UTC)


def trade(execution_id: str, at: datetime, **extra: Any) -> dict[str, Any]:
    """A TradeExecuted wire dict."""
    return {
        "executionId": execution_id,
        "orderId": "o-1",
        "brokerOrderId": "b-1",
        "symbol": "AAPL",
        "side": "buy",
        "qty": "1",
        "price": "187.32",
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        **extra,
    }


EngineFactory = Callable[..., Any]


@pytest.fixture(params=["memory", "redis"])
def engine(request: pytest.FixtureRequest) -> EngineFactory:
    """Returns an async context manager factory for a started engine (kwargs to the engine)."""
    if request.param == "memory":

        @asynccontextmanager
        async def memory(**kwargs: Any) -> AsyncIterator[Broker]:
            yield MemoryBroker(**kwargs)

        return memory
    prefix = request.getfixturevalue("prefix")  # noqa: F811

    @asynccontextmanager
    async def redis_engine(**kwargs: Any) -> AsyncIterator[Broker]:
        broker = RedisBroker(REDIS_URL, prefix=prefix, **kwargs)
        await broker.start()
        try:
            yield broker
        finally:
            await broker.close()

    return redis_engine


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_fill_record_takes_execution_id_and_fill_time_of_trade_executed_only() -> None:
    """Only trade_executed with an id and an ISO timestamp is recorded; time in exact ms."""
    assert fill_record("trade_executed", trade("e1", T0)) == (
        "e1",
        (T0 - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1),
    )
    assert fill_record("order_update", trade("e1", T0)) is None
    assert fill_record("trade_executed", trade("", T0)) is None
    assert fill_record("trade_executed", {**trade("e1", T0), "timestamp": "yesterday"}) is None
    assert fill_record("trade_executed", {"executionId": "e1"}) is None
    naive = fill_record("trade_executed", {**trade("e1", T0), "timestamp": "2026-11-25T20:15:03"})
    assert naive is not None and naive[1] == 1795637703000


def test_empty_ledger_before_anything_is_published(engine: EngineFactory) -> None:
    """A user with no publication: no newest fill, no ids, no start."""

    async def main() -> None:
        async with engine() as broker:
            assert await broker.published_fills("1") == PublishedFills(None, frozenset(), None)

    run(main())


def test_published_fills_are_recorded_with_their_time_others_are_not(
    engine: EngineFactory,
) -> None:
    """Every trade_executed is in the ledger, newest = latest fill time; other types only start
    the epoch; other users' fills stay theirs."""

    async def main() -> None:
        async with engine() as broker:
            before = datetime.now(UTC) - timedelta(seconds=1)
            await broker.publish("1", "order_update", {"orderId": "o-1"})
            await broker.publish("1", "trade_executed", trade("e2", T0 + timedelta(seconds=2)))
            # an execution that arrives late (older fill time) does not move `newest` back
            await broker.publish("1", "trade_executed", trade("e1", T0))
            await broker.publish("1", "position_update", {"symbol": "AAPL"})
            await broker.publish("2", "trade_executed", trade("x9", T0 + timedelta(hours=1)))
            got = await broker.published_fills("1")
            assert got.ids == {"e1", "e2"}
            assert got.newest == (T0 + timedelta(seconds=2)).replace(microsecond=123000)
            assert got.started_at is not None
            assert before <= got.started_at <= datetime.now(UTC) + timedelta(seconds=1)
            other = await broker.published_fills("2")
            assert other.ids == {"x9"}

    run(main())


def test_ledger_keeps_the_newest_fills_only(engine: EngineFactory) -> None:
    """Past the ledger size the oldest fills (by fill time, not by publication) are dropped."""

    async def main() -> None:
        async with engine(fills_ledger_size=3) as broker:
            order = [4, 0, 3, 1, 2]  # published out of fill-time order
            for n in order:
                await broker.publish("1", "trade_executed", trade(f"e{n}", T0 + timedelta(n)))
            got = await broker.published_fills("1")
            assert got.ids == {"e2", "e3", "e4"}
            assert got.newest == (T0 + timedelta(4)).replace(microsecond=123000)

    run(main())


def test_a_trade_without_timestamp_is_published_but_not_recorded(engine: EngineFactory) -> None:
    """The ledger never blocks a publication: a malformed trade is published, not recorded."""

    async def main() -> None:
        async with engine() as broker:
            pub = await broker.publish("1", "trade_executed", {"executionId": "e1"})
            assert pub.seq == 1
            assert (await broker.published_fills("1")).ids == frozenset()

    run(main())


def test_redis_new_epoch_starts_an_empty_ledger(prefix: str) -> None:  # noqa: F811
    """Redis lost the user's keys (restart without persistence): new epoch, empty ledger."""

    async def main() -> None:
        broker = RedisBroker(REDIS_URL, prefix=prefix)
        await broker.start()
        try:
            first = await broker.publish("1", "trade_executed", trade("e1", T0))
            before = await broker.published_fills("1")
            assert before.ids == {"e1"}
            # Only the epoch key is lost (eviction): the script starts a new epoch and must
            # not keep the old epoch's ledger.
            await broker._redis.delete(broker._keys("1")[1])
            second = await broker.publish("1", "order_update", {"orderId": "o"})
            assert second.epoch != first.epoch and second.seq == 1
            after = await broker.published_fills("1")
            assert after.ids == frozenset() and after.newest is None
            assert after.started_at is not None and before.started_at is not None
            assert after.started_at >= before.started_at
        finally:
            await broker.close()

    run(main())


def test_redis_ledger_is_written_by_the_publish_script_and_shared(prefix: str) -> None:  # noqa: F811
    """Keys share the user's hash tag; a second process reads what the first published."""

    async def main() -> None:
        a, b = (
            RedisBroker(REDIS_URL, prefix=prefix),
            RedisBroker(REDIS_URL, prefix=prefix),
        )
        await a.start()
        await b.start()
        try:
            await a.publish("7", "trade_executed", trade("e1", T0))
            keys = sorted(await a._redis.keys(f"{prefix}:*"))
            assert f"{prefix}:{{7}}:fills" in keys
            assert f"{prefix}:{{7}}:started" in keys
            assert all(k.startswith(f"{prefix}:{{7}}:") for k in keys)
            assert (await b.published_fills("7")).ids == {"e1"}
        finally:
            await a.close()
            await b.close()

    run(main())


def test_redis_unreachable_publishes_and_records_nothing(prefix: str) -> None:  # noqa: F811
    """A publish that cannot reach Redis raises BrokerUnavailable; nothing is recorded."""

    async def main() -> None:
        broker = RedisBroker(REDIS_URL, prefix=prefix)
        await broker.start()
        reader = RedisBroker(REDIS_URL, prefix=prefix)
        await reader.start()
        try:
            real = broker._redis
            import redis.asyncio as aioredis

            dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
            broker._script = dead.register_script("return 1")
            with pytest.raises(BrokerUnavailable):
                await broker.publish("1", "trade_executed", trade("e1", T0))
            broker._redis = dead
            with pytest.raises(BrokerUnavailable):
                await broker.published_fills("1")
            broker._redis = real
            assert await reader.published_fills("1") == PublishedFills(None, frozenset(), None)
            assert (await reader.position("1"))[0] == 0  # not published either
            await dead.aclose()
        finally:
            await broker.close()
            await reader.close()

    run(main())
