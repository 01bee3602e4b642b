"""Per-account leases and the shared trader views, against the real Redis (TEST_REDIS_URL)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from streaming.broker import BrokerUnavailable
from streaming.leases import AccountLeases
from streaming.memory_broker import MemoryBroker
from streaming.publisher import Publisher
from streaming.pushed import MAX_PUSHED_ORDERS
from streaming.shared import MAX_PUSHED_ITEMS, RedisViews, SharedPortfolio
from tests.streaming.test_redis import REDIS_URL, prefix, run  # noqa: F401 - fixture
from tests.test_redis_outage import PrivateRedis, private_redis  # noqa: F401 - fixture

ACCOUNTS = ["1", "2", "3", "4", "5"]


def test_one_bridge_takes_every_account_then_shares_with_a_second(prefix: str) -> None:  # noqa: F811
    """Alone, a bridge takes all five; a second arrives → the first gives up its surplus."""

    async def main() -> None:
        a = AccountLeases(REDIS_URL, prefix=prefix, lease_s=5, identity="a")
        b = AccountLeases(REDIS_URL, prefix=prefix, lease_s=5, identity="b")
        await a.start()
        await b.start()
        assert await a.renew(ACCOUNTS) == set()
        assert sorted(await a.acquire(ACCOUNTS)) == ACCOUNTS
        assert await b.renew(ACCOUNTS) == set()  # b announces itself: two bridges now
        assert await b.acquire(ACCOUNTS) == []  # nothing free yet
        await a.renew(ACCOUNTS)
        surplus = a.surplus(ACCOUNTS)
        assert len(surplus) == 2  # ceil(5 / 2) = 3 stay with a
        await a.release(surplus)
        taken = await b.acquire(ACCOUNTS)
        assert sorted(taken) == sorted(surplus)
        assert a.owned | b.owned == set(ACCOUNTS) and not a.owned & b.owned
        await a.close()
        await b.close()

    run(main())


def test_a_dead_bridge_s_accounts_are_taken_over_after_the_lease(prefix: str) -> None:  # noqa: F811
    """A bridge that stops renewing (killed) loses its accounts to another within lease_s."""

    async def main() -> None:
        dead = AccountLeases(REDIS_URL, prefix=prefix, lease_s=1.0, identity="dead")
        await dead.start()
        await dead.renew(ACCOUNTS)
        assert sorted(await dead.acquire(ACCOUNTS)) == ACCOUNTS
        # "kill -9": no release, no renewal from now on.
        heir = AccountLeases(REDIS_URL, prefix=prefix, lease_s=1.0, identity="heir")
        await heir.start()
        await heir.renew(ACCOUNTS)
        assert await heir.acquire(ACCOUNTS) == []  # still leased
        await asyncio.sleep(1.3)
        await heir.renew(ACCOUNTS)  # the dead one dropped out of the registry too
        assert heir.bridges_alive == 1
        assert sorted(await heir.acquire(ACCOUNTS)) == ACCOUNTS
        # Back from a long pause, the first learns it lost them all.
        assert await dead.renew(ACCOUNTS) == set(ACCOUNTS)
        assert dead.owned == frozenset()
        await heir.close()
        await dead.close()

    run(main())


def test_an_unlinked_account_is_reported_for_stopping(prefix: str) -> None:  # noqa: F811
    """An account no longer linked is returned by renew (stop it), its lease still held."""

    async def main() -> None:
        a = AccountLeases(REDIS_URL, prefix=prefix, lease_s=5, identity="a")
        await a.start()
        await a.renew(["1", "2"])
        await a.acquire(["1", "2"])
        assert await a.renew(["1"]) == {"2"}
        await a.release(["2"])
        assert a.owned == {"1"}
        await a.close()

    run(main())


def test_leases_count_as_lost_after_a_whole_lease_without_redis(
    tmp_path: Path,
    private_redis: PrivateRedis,  # noqa: F811
) -> None:
    """Redis away for longer than lease_s: every account is reported lost (stop streaming)."""

    async def main() -> None:
        now = [1000.0]
        a = AccountLeases(
            private_redis.url, prefix="t", lease_s=2.0, identity="a", clock=lambda: now[0]
        )
        await a.start()
        await a.renew(ACCOUNTS)
        await a.acquire(ACCOUNTS)
        private_redis.kill()
        now[0] += 1.0
        assert await a.renew(ACCOUNTS) == set()  # within the lease: kept for now
        now[0] += 1.5
        assert await a.renew(ACCOUNTS) == set(ACCOUNTS)
        assert a.owned == frozenset()

    run(main())


def test_views_saved_by_the_bridge_are_read_with_pushed_state_laid_over(prefix: str) -> None:  # noqa: F811
    """The bridge's view comes back as saved; a newer pushed position and order win."""

    async def main() -> None:
        views = RedisViews(REDIS_URL, prefix=prefix)
        await views.start()
        publisher = Publisher(MemoryBroker(), batch_window_ms=0)
        shared = SharedPortfolio(views, publisher)
        empty = await shared.view("7")
        assert empty == {"positions": [], "orders": [], "account": None, "trades": []}
        position = {"symbol": "AAPL", "quantity": "10", "updatedAt": "2026-12-01T14:00:00Z"}
        order = {
            "orderId": "o1",
            "symbol": "AAPL",
            "status": "new",
            "submittedAt": "2026-12-01T14:00:00Z",
            "updatedAt": "2026-12-01T14:00:00Z",
        }
        saved = {"positions": [position], "orders": [order], "account": None, "trades": []}
        await views.save("7", saved)
        assert await shared.view("7") == saved
        newer = {**position, "quantity": "12", "updatedAt": "2026-12-01T14:05:00Z"}
        filled = {**order, "status": "filled", "updatedAt": "2026-12-01T14:05:00Z"}
        await shared.accept_pushed("7", "position_update", newer)
        await shared.accept_pushed("7", "order_update", filled)
        await shared.accept_pushed("7", "trade_executed", {"symbol": "AAPL"})  # not kept
        view = await shared.view("7")
        assert view["positions"] == [newer]
        assert view["orders"] == [filled]
        seq, _ = await publisher.engine.position("7")
        await publisher.wait_idle()
        seq, _ = await publisher.engine.position("7")
        assert seq == 3  # all three relayed
        await views.close()

    run(main())


def test_pushed_items_are_capped_oldest_first(prefix: str) -> None:  # noqa: F811
    """At most MAX_PUSHED_ITEMS pushed items per trader are kept in Redis."""

    async def main() -> None:
        views = RedisViews(REDIS_URL, prefix=prefix)
        await views.start()
        for i in range(MAX_PUSHED_ITEMS + 3):
            await views.keep_pushed(
                "8", "order_update", {"orderId": f"o{i}", "symbol": "AAPL", "status": "new"}
            )
        assert await views._redis.hlen(f"{prefix}:{{8}}:pushed") == MAX_PUSHED_ITEMS
        assert await views._redis.hexists(f"{prefix}:{{8}}:pushed", "o:o3")
        assert not await views._redis.hexists(f"{prefix}:{{8}}:pushed", "o:o2")
        view = await views.view("8")  # the read keeps the newest MAX_PUSHED_ORDERS orders
        ids = {o["orderId"] for o in view["orders"]}
        last = MAX_PUSHED_ITEMS + 2
        assert ids == {f"o{i}" for i in range(last - MAX_PUSHED_ORDERS + 1, last + 1)}
        await views.close()

    run(main())


def test_views_are_saved_again_when_redis_lost_them(prefix: str) -> None:  # noqa: F811
    """The bridge's marker gone (Redis restarted empty) → every view is saved again."""

    async def main() -> None:
        views = RedisViews(REDIS_URL, prefix=prefix)
        await views.start()
        current: dict[str, Any] = {"positions": [], "orders": [], "account": {"equity": "1"}}
        current["trades"] = []
        assert await views.ensure_marker("bridge-a", {"9": lambda: current}) is True
        assert await views.ensure_marker("bridge-a", {"9": lambda: current}) is False
        await views._redis.delete(f"{prefix}:{{9}}:view", f"{prefix}:marker:bridge-a")
        assert (await views.view("9"))["account"] is None
        assert await views.ensure_marker("bridge-a", {"9": lambda: current}) is True
        assert (await views.view("9"))["account"] == {"equity": "1"}
        await views.close()

    run(main())


def test_unreachable_redis_is_broker_unavailable() -> None:
    """Reads and writes against an unreachable Redis raise BrokerUnavailable (503 upstream)."""

    async def main() -> None:
        views = RedisViews("redis://127.0.0.1:1/0")
        await views.start()
        with pytest.raises(BrokerUnavailable):
            await views.view("1")
        with pytest.raises(BrokerUnavailable):
            await views.save("1", {})
        with pytest.raises(BrokerUnavailable):
            await views.keep_pushed("1", "account_update", {"equity": "1"})
        await views.close()

    run(main())
