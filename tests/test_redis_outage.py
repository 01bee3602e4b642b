"""Redis goes away and comes back: events emitted meanwhile wait in the outbox, then are
published in order and replayable (issue 9, "Redis outages").

Runs its own ``redis-server`` on a free port (never the shared one), with its data in the test's
temporary directory so a restart keeps the keys, as a persistent Redis would.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from streaming.broker import Publication
from streaming.redis_broker import RedisBroker
from tests.conftest import (
    REQUIRE_SERVICES,
    Running,
    no_message,
    recv,
    recv_type,
    subscribe,
    wait,
)
from tests.handlers.test_ws import ORDER

pytestmark = pytest.mark.redis


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test's own, stopped and started at will."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--dbfilename",
                "dump.rdb",
            ],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.1):
                    return
            except OSError:
                subprocess.run(["sleep", "0.02"], check=False)
        raise AssertionError("private redis-server did not start")

    def stop_saving(self) -> None:
        """SHUTDOWN SAVE: the keys survive the restart (a persistent Redis)."""
        subprocess.run(
            ["redis-cli", "-p", str(self.port), "shutdown", "save"], check=False, timeout=10
        )
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        if REQUIRE_SERVICES:
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


async def _until(predicate: Any, what: str, seconds: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + wait(seconds)
    while not predicate():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.gen_test(timeout=120)
async def test_events_emitted_while_redis_is_down_are_published_in_order(
    private_redis: PrivateRedis,  # first: torn down after the server
    make_server: Any,
) -> None:
    folio: Running = await make_server(redis_url=private_redis.url, redis_prefix="outage")
    manager = folio.server.manager
    cookie = await folio.login()
    conn = await folio.connect(cookie)
    ack, _ = await subscribe(conn, ["orders"])
    last_seq, epoch = ack["seq"], ack["epoch"]
    alice = await folio.user_id("alice")

    private_redis.stop_saving()
    for i in range(5):  # accepted by the hook while Redis is away
        resp = await folio.push(alice, "order_update", {**ORDER, "orderId": f"out-{i}"})
        assert resp.code == 202
    await _until(lambda: manager.stats()["outbox"]["engineDown"], "the outbox to hold them")
    assert manager.stats()["outbox"]["events"] >= 1

    private_redis.start()
    await _until(lambda: manager.stats()["outbox"]["events"] == 0, "the outbox to drain")
    assert manager.stats()["outbox"]["dropped"] == 0

    # Nothing lost: a client resuming from where it was replays all five, in order.
    again = await folio.connect(cookie)
    ack2, snap = await subscribe(again, ["orders"], lastSeq=last_seq, epoch=epoch)
    assert ack2["data"]["recovered"] is True and snap is None
    replay = [await recv_type(again, "order_update") for _ in range(5)]
    assert [m["data"]["orderId"] for m in replay] == [f"out-{i}" for i in range(5)]
    assert [m["seq"] for m in replay] == list(range(last_seq + 1, last_seq + 6))
    conn.close()
    again.close()


# -- engine notices and the fan-out's reconnect catch-up (issue 9 item 3) ------------------------


async def _orders(conn: Any, ids: list[str], seconds: float = 30.0) -> list[dict[str, Any]]:
    """Read ``order_update`` s until every orderId of ``ids`` arrived; return them in order."""
    got: list[dict[str, Any]] = []
    while {m["data"]["orderId"] for m in got} < set(ids):
        msg = await recv_type(conn, "order_update", seconds)
        if msg["data"]["orderId"] in ids:
            got.append(msg)
    return got


@pytest.mark.gen_test(timeout=180)
async def test_a_subscribed_client_is_told_engine_down_then_ok_and_misses_nothing(
    private_redis: PrivateRedis,
    make_server: Any,
) -> None:
    """``engine_down`` after Redis stops, ``engine_ok`` after it is back; every event arrives."""
    folio: Running = await make_server(
        redis_url=private_redis.url, redis_prefix="notice", heartbeat_interval_s=0.3
    )
    cookie = await folio.login()
    conn = await folio.connect(cookie)
    ack, _ = await subscribe(conn, ["orders"])
    alice = await folio.user_id("alice")
    assert (await folio.push(alice, "order_update", {**ORDER, "orderId": "before"})).code == 202
    (before,) = await _orders(conn, ["before"])

    private_redis.stop_saving()
    down = await recv_type(conn, "notice", 30.0)
    assert (down["data"]["code"], down["data"]["degraded"]) == ("engine_down", True)
    assert (down["seq"], down["epoch"], down["userId"]) == (0, "", alice)
    during = [f"during-{i}" for i in range(3)]
    for order_id in during:
        assert (await folio.push(alice, "order_update", {**ORDER, "orderId": order_id})).code == 202

    private_redis.start()
    # The live socket gets engine_ok and what was published while the fan-out was down (the
    # reconnect catch-up may bring it before the notice), without asking.
    live: list[dict[str, Any]] = []
    ok: dict[str, Any] | None = None
    while ok is None or len(live) < len(during):
        msg = await recv(conn, 60.0)
        assert msg is not None, "closed while waiting for engine_ok and the events"
        if msg["type"] == "notice":
            ok = msg
        elif msg["type"] == "order_update" and msg["data"]["orderId"] in during:
            live.append(msg)
    assert (ok["data"]["code"], ok["data"]["degraded"]) == ("engine_ok", False)
    assert [m["data"]["orderId"] for m in live] == during
    seqs = [before["seq"]] + [m["seq"] for m in live]
    assert seqs == list(range(before["seq"], before["seq"] + 4))
    # ... once each: nothing it already had comes again.
    while not await no_message(conn, 1.0):
        extra = await recv(conn)
        assert extra is not None and extra["type"] != "order_update", extra

    # Replay by lastSeq shows the full sequence, once each.
    again = await folio.connect(cookie)
    ack2, snap = await subscribe(again, ["orders"], lastSeq=ack["seq"], epoch=ack["epoch"])
    assert ack2["data"]["recovered"] is True and snap is None
    replay = await _orders(again, ["before", *during])
    assert [m["data"]["orderId"] for m in replay] == ["before", *during]
    assert [m["seq"] for m in replay] == seqs
    conn.close()
    again.close()


@pytest.mark.gen_test(timeout=180)
async def test_a_client_subscribing_during_the_outage_is_told_at_once(
    private_redis: PrivateRedis,
    make_server: Any,
) -> None:
    folio: Running = await make_server(
        redis_url=private_redis.url, redis_prefix="notice2", heartbeat_interval_s=0.3
    )
    broker = folio.server.manager.broker
    cookie = await folio.login()
    private_redis.stop_saving()
    await _until(lambda: not broker.connected, "the fan-out to notice Redis is gone")

    conn = await folio.connect(cookie)
    await conn.write_message('{"type": "subscribe", "channels": ["orders"]}')
    first = await recv(conn, 10.0)
    assert first is not None and first["type"] == "notice"
    assert first["data"]["code"] == "engine_down"
    # The subscribe itself needs Redis: it fails (1011) and the client reconnects later.
    while (msg := await recv(conn, 30.0)) is not None:
        assert msg["type"] == "notice", msg
    assert conn.close_code == 1011


async def _two_engines(url: str, prefix: str) -> tuple[RedisBroker, RedisBroker, list[Publication]]:
    """A watcher engine recording what its fan-out hands on, and a second one publishing."""
    got: list[Publication] = []
    watcher = RedisBroker(url, prefix=prefix)
    watcher.set_handler(got.append)
    await watcher.start()
    publisher = RedisBroker(url, prefix=prefix)
    await publisher.start()
    await watcher.watch("7")
    return watcher, publisher, got


async def _kill_subscriptions(url: str) -> None:
    """Drop every pub/sub connection of the private Redis (the fan-out's subscription)."""
    admin = aioredis.from_url(url)
    try:
        await admin.client_kill_filter(_type="pubsub", skipme=True)
    finally:
        await admin.aclose()


@pytest.mark.gen_test(timeout=60)
async def test_the_fanout_catches_up_what_was_published_while_its_subscription_was_down(
    private_redis: PrivateRedis,
) -> None:
    """Publications made while the subscription is down are handed on after it, once each."""
    watcher, publisher, got = await _two_engines(private_redis.url, "catchup")
    try:
        await publisher.publish("7", "order_update", {"n": 1})
        await _until(lambda: len(got) == 1, "the first publication")
        await _kill_subscriptions(private_redis.url)
        # The reader waits 0.5 s before it subscribes again: PUBLISH cannot reach it now.
        for n in (2, 3, 4):
            await publisher.publish("7", "order_update", {"n": n})
        await _until(lambda: len(got) >= 4, "the catch-up")
        await publisher.publish("7", "order_update", {"n": 5})  # live again
        await _until(lambda: len(got) >= 5, "the live publication")
        await asyncio.sleep(0.3)  # a duplicate, if any, would arrive meanwhile
        assert [(p.seq, p.data["n"]) for p in got] == [(n, n) for n in range(1, 6)]
        assert len({p.epoch for p in got}) == 1
        assert watcher.connected
    finally:
        await watcher.close()
        await publisher.close()


@pytest.mark.gen_test(timeout=60)
async def test_after_redis_lost_its_keys_the_catch_up_hands_on_the_new_epoch(
    private_redis: PrivateRedis,
) -> None:
    """Redis emptied while the subscription was down: the new epoch's events, from seq 1."""
    watcher, publisher, got = await _two_engines(private_redis.url, "newepoch")
    try:
        await publisher.publish("7", "order_update", {"n": 1})
        await publisher.publish("7", "order_update", {"n": 2})
        await _until(lambda: len(got) == 2, "the first publications")
        await _kill_subscriptions(private_redis.url)
        admin = aioredis.from_url(private_redis.url)
        await admin.flushall()  # the private server only: a restart without persistence
        await admin.aclose()
        await publisher.publish("7", "order_update", {"n": 3})
        await _until(lambda: len(got) >= 3, "the catch-up in the new epoch")
        await asyncio.sleep(0.3)
        assert [(p.seq, p.data["n"]) for p in got] == [(1, 1), (2, 2), (1, 3)]
        assert got[2].epoch != got[0].epoch
    finally:
        await watcher.close()
        await publisher.close()


# -- Redis restarted empty (issue 9 item 3) -------------------------------------------------------


@pytest.mark.gen_test(timeout=180)
async def test_redis_restarted_empty_gives_a_new_epoch_and_the_broker_s_snapshot(
    private_redis: PrivateRedis,
    make_server: Any,
) -> None:
    """Redis comes back with nothing (no dump): a client resuming from its old lastSeq+epoch
    gets ``recovered: false`` and a snapshot equal to the broker's positions, because the
    bridge saves every trader's view again (its marker key is gone) and re-takes its leases."""
    from decimal import Decimal

    folio: Running = await make_server(
        redis_url=private_redis.url, redis_prefix="empty", heartbeat_interval_s=0.3, lease_s=1.5
    )
    sim = folio.server.simulator
    sim.submit_order("DEMO-ALICE", symbol="IBM", qty=Decimal("3"), side="buy")
    cookie = await folio.login()

    def broker_positions() -> dict[str, str]:
        return {
            p["symbol"]: p["qty"]
            for p in sim.account("DEMO-ALICE").positions_json(sim.price, sim.lastday_price)
        }

    async def rest_positions() -> dict[str, str]:
        code, body = await folio.get_json("/api/positions", cookie)
        return {p["symbol"]: p["quantity"] for p in body["positions"]} if code == 200 else {}

    loop = asyncio.get_running_loop()
    end = loop.time() + wait(30)
    while await rest_positions() != broker_positions() or not broker_positions():
        assert loop.time() < end, "the IBM buy never reached the view"
        await asyncio.sleep(0.1)
    conn = await folio.connect(cookie)
    ack, _ = await subscribe(conn, ["positions", "orders"])
    conn.close()

    private_redis.kill()  # no SHUTDOWN SAVE: it restarts empty
    private_redis.start()
    end = loop.time() + wait(30)
    while await rest_positions() != broker_positions():
        assert loop.time() < end, "the views were not saved again after the empty restart"
        await asyncio.sleep(0.1)

    again = await folio.connect(cookie)
    ack2, snap = await subscribe(
        again, ["positions", "orders"], lastSeq=ack["seq"], epoch=ack["epoch"]
    )
    assert ack2["data"]["recovered"] is False and ack2["epoch"] != ack["epoch"]
    assert snap is not None
    got = {p["symbol"]: p["quantity"] for p in snap["data"]["positions"]}
    assert got == broker_positions() == {"IBM": "3"}
    again.close()
