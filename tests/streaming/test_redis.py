"""Redis engine and ingest against the real Redis server (TEST_REDIS_URL)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import ujson

from streaming.broker import Publication
from streaming.redis_broker import RedisBroker
from streaming.redis_ingest import RedisIngest
from tests.conftest import require_service
from tests.handlers.test_ws import ORDER

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def prefix() -> Iterator[str]:
    """A fresh key prefix on the real Redis; its keys are deleted afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        require_service("Redis", exc)
    name = "t" + secrets.token_hex(4)
    yield name
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def _until(predicate: Any, what: str) -> None:
    for _ in range(300):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_publish_numbers_stores_and_fans_out_to_every_process(prefix: str) -> None:
    """Two brokers (two processes) see every publication once, in seq order, same epoch."""

    async def main() -> None:
        a, b = RedisBroker(REDIS_URL, prefix=prefix), RedisBroker(REDIS_URL, prefix=prefix)
        got_a: list[Publication] = []
        got_b: list[Publication] = []
        a.set_handler(got_a.append)
        b.set_handler(got_b.append)
        await a.start()
        await b.start()
        for broker in (a, b):
            await broker.watch("1")
            await broker.watch("2")
        first = await a.publish("1", "order_update", {"orderId": "x"}, emitted_at=1.0)
        second = await b.publish("1", "order_update", {"orderId": "y"})
        other = await a.publish("2", "order_update", {"orderId": "z"})
        assert (first.seq, second.seq, other.seq) == (1, 2, 1)
        assert first.epoch == second.epoch
        await _until(lambda: len(got_a) == 3 and len(got_b) == 3, "fan-out")
        for got in (got_a, got_b):
            assert [(p.user_id, p.seq, p.data["orderId"]) for p in got] == [
                ("1", 1, "x"),
                ("1", 2, "y"),
                ("2", 1, "z"),
            ]
        assert await a.position("1") == (2, first.epoch)
        assert (await b.position("3"))[0] == 0
        await a.close()
        await b.close()

    run(main())


def test_recover_from_history_and_epoch_change_on_data_loss(prefix: str) -> None:
    """recover() replays from the Redis Stream; lost keys → new epoch, old position refused."""
    import redis.asyncio as aioredis

    async def main() -> None:
        broker = RedisBroker(REDIS_URL, prefix=prefix, history_size=1000)
        await broker.start()
        pubs = [await broker.publish("1", "order_update", {"n": i}) for i in range(5)]
        epoch = pubs[0].epoch
        replay = await broker.recover("1", 2, epoch)
        assert replay is not None
        assert [(p.seq, p.data["n"]) for p in replay] == [(3, 2), (4, 3), (5, 4)]
        assert all(p.epoch == epoch and p.type == "order_update" for p in replay)
        assert await broker.recover("1", 5, epoch) == []
        assert await broker.recover("1", 6, epoch) is None
        assert await broker.recover("1", 2, "other") is None
        # Redis loses the user's keys: a new epoch, seq restarts, the old position is refused
        client = aioredis.from_url(REDIS_URL)
        await client.delete(*broker._keys("1"))
        await client.aclose()
        fresh = await broker.publish("1", "order_update", {"n": 99})
        assert fresh.seq == 1 and fresh.epoch != epoch
        assert await broker.recover("1", 5, epoch) is None
        await broker.close()

    run(main())


def test_recover_refuses_when_history_was_trimmed(prefix: str) -> None:
    """Beyond the history size, recovery is refused (snapshot instead), never partial."""

    async def main() -> None:
        broker = RedisBroker(REDIS_URL, prefix=prefix, history_size=1)
        await broker.start()
        client = broker._redis
        for i in range(300):
            await broker.publish("1", "order_update", {"n": i})
        held = await client.xlen(broker._keys("1")[2])
        assert held < 300  # MAXLEN ~ trimmed it
        seq, epoch = await broker.position("1")
        assert await broker.recover("1", 1, epoch) is None
        tail = await broker.recover("1", seq - 1, epoch)
        assert tail is not None and [p.seq for p in tail] == [seq]
        await broker.close()

    run(main())


def test_ingest_emits_valid_entries_and_reports_bad_ones(prefix: str) -> None:
    """XADD <prefix>:ingest → emitted once; bad entries land in <prefix>:ingest:rejected."""

    async def main() -> None:
        emitted: list[tuple[str, str, dict[str, Any]]] = []

        async def emit(user_id: str, type_: str, data: dict[str, Any]) -> None:
            emitted.append((user_id, type_, data))

        async def user_exists(user_id: str) -> bool:
            return user_id == "1"

        ingest = RedisIngest(REDIS_URL, emit, user_exists, prefix=prefix)
        await ingest.start()
        client = ingest._redis
        good = {"userId": "1", "type": "order_update", "data": ORDER}
        await client.xadd(f"{prefix}:ingest", {"event": ujson.dumps(good)})
        for bad in (
            "not json",
            ujson.dumps({"userId": "1", "type": "order_update", "data": {**ORDER, "side": "x"}}),
            ujson.dumps({"userId": "7", "type": "order_update", "data": ORDER}),
        ):
            await client.xadd(f"{prefix}:ingest", {"event": bad})
        await _until(lambda: ingest.accepted + ingest.rejected == 4, "ingest")
        assert [(u, t, d["orderId"]) for u, t, d in emitted] == [("1", "order_update", "c-1")]
        rejected = await client.xrange(f"{prefix}:ingest:rejected")
        errors = [fields["error"] for _, fields in rejected]
        assert errors == ["event: not valid JSON", errors[1], "userId: no user 7"]
        assert "data.side" in errors[1]
        pending = await client.xpending(f"{prefix}:ingest", f"{prefix}-servers")
        assert pending["pending"] == 0  # everything acknowledged
        await ingest.stop()

    run(main())


def test_fan_out_reconnects_after_the_subscription_is_killed(prefix: str) -> None:
    """Redis drops the pub/sub connection: the reader resubscribes and delivery resumes."""

    async def main() -> None:
        broker = RedisBroker(REDIS_URL, prefix=prefix)
        got: list[Publication] = []
        broker.set_handler(got.append)
        await broker.start()
        await broker.watch("1")
        await broker.publish("1", "order_update", {"n": 1})
        await _until(lambda: len(got) == 1, "first delivery")
        clients = await broker._redis.client_list(_type="pubsub")
        ours = [c["id"] for c in clients if c.get("name") == f"{prefix}-broker"]
        assert len(ours) == 1
        await broker._redis.execute_command("CLIENT", "KILL", "ID", ours[0])
        await _until(lambda: not broker.connected, "the reader noticing")
        await _until(lambda: broker.connected, "the reader resubscribing")
        await broker.watch("1")  # returns once the resubscription is confirmed
        await broker.publish("1", "order_update", {"n": 2})
        await _until(lambda: len(got) == 2, "delivery after reconnect")
        assert [p.seq for p in got] == [1, 2]
        await broker.close()

    run(main())


def test_targeted_fan_out_delivers_only_watched_users(prefix: str) -> None:
    """A process receives a user's publications only while it watches that user; watch()
    returns once the subscription is live, so a publish right after it is never missed."""

    async def main() -> None:
        a, b = RedisBroker(REDIS_URL, prefix=prefix), RedisBroker(REDIS_URL, prefix=prefix)
        got_a: list[Publication] = []
        got_b: list[Publication] = []
        a.set_handler(got_a.append)
        b.set_handler(got_b.append)
        await a.start()
        await b.start()
        await a.watch("1")
        await b.watch("2")
        for i in range(20):  # watch → publish at once, many times: never missed
            await a.watch(f"x{i}")
            await b.publish(f"x{i}", "order_update", {"n": i})
        await b.publish("1", "order_update", {"n": "a"})
        await a.publish("2", "order_update", {"n": "b"})
        await a.publish("3", "order_update", {"n": "nobody"})
        await _until(lambda: len(got_a) == 21 and len(got_b) == 1, "targeted fan-out")
        assert {p.user_id for p in got_a} == {"1"} | {f"x{i}" for i in range(20)}
        assert [p.user_id for p in got_b] == ["2"]
        # Unwatched: no more deliveries to a for user 1; b starts receiving it.
        a.unwatch("1")
        await b.watch("1")
        await _until(lambda: not a._unsubscribing, "the unsubscribe")
        await a.publish("1", "order_update", {"n": "c"})
        await _until(lambda: len(got_b) == 2, "delivery to the new watcher")
        await asyncio.sleep(0.1)
        assert [p.data["n"] for p in got_a if p.user_id == "1"] == ["a"]
        # unwatch then watch at once (a tab closes as another opens): still subscribed.
        a.unwatch("2")
        await a.watch("2")
        await _until(lambda: not a._unsubscribing, "the skipped unsubscribe")
        await b.publish("2", "order_update", {"n": "d"})
        await _until(lambda: any(p.data["n"] == "d" for p in got_a), "still watched")
        assert a.watched() == frozenset({"2"} | {f"x{i}" for i in range(20)})
        subs = await a._redis.pubsub_channels(f"{prefix}:pub:*")
        assert f"{prefix}:pub:1" in subs  # b's subscription
        numsub = dict(await a._redis.pubsub_numsub(f"{prefix}:pub:1", f"{prefix}:pub:2"))
        assert numsub == {f"{prefix}:pub:1": 1, f"{prefix}:pub:2": 2}
        await a.close()
        await b.close()

    run(main())


def test_connection_slots_are_counted_across_processes_and_expire(prefix: str) -> None:
    """REQ-3 for the whole deployment: slots taken on two engines count together; a released
    slot is free at once; the slots of a process that stops renewing expire after the TTL."""

    async def main() -> None:
        a = RedisBroker(REDIS_URL, prefix=prefix, slot_ttl_s=0.5)
        b = RedisBroker(REDIS_URL, prefix=prefix, slot_ttl_s=0.5)
        await a.start()
        await b.start()
        assert [await a.acquire_slot("1", f"a{i}", 5) for i in range(3)] == [True] * 3
        assert [await b.acquire_slot("1", f"b{i}", 5) for i in range(2)] == [True, True]
        assert await a.acquire_slot("1", "a9", 5) is False  # sixth, wherever it lands
        assert await b.acquire_slot("1", "b9", 5) is False
        assert await b.acquire_slot("2", "b0", 5) is True  # other users are not affected
        assert await a.acquire_slot("1", "a0", 5) is True  # the same slot again: still one
        b.release_slot("1", "b0")
        await _until(lambda: not b._releasing, "the release")
        assert await b.acquire_slot("1", "b5", 5) is True
        # a keeps renewing, b "dies": b's two slots expire, a's three stay.
        for _ in range(4):
            await a.refresh_slots([("1", f"a{i}") for i in range(3)])
            await asyncio.sleep(0.2)
        seconds, micros = await a._redis.time()
        now_ms = seconds * 1000 + micros // 1000
        members = await a._redis.zrangebyscore(a._conns_key("1"), now_ms, "+inf")
        assert sorted(members) == ["a0", "a1", "a2"]  # b's expired (removed at the next acquire)
        assert [await b.acquire_slot("1", f"c{i}", 5) for i in range(3)] == [True, True, False]
        # An expired slot is not resurrected by a late renewal.
        await asyncio.sleep(0.7)
        await a.refresh_slots([("1", "a0")])
        assert await a._redis.zscore(a._conns_key("1"), "a0") is None
        await a.close()
        await b.close()

    run(main())
